"""The API-call capability group: record, list and delete model-request records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    from threadline.models import ApiCall
    from threadline.usage import UsageQuery, UsageRow


@hookspec
def threadline_save_api_call(api_call: ApiCall) -> ApiCall | None:
    """Record one model request (idempotent by id).

    Tier: API-call group (optional; a store with API calls implements the group).

    A new record is activity: the session's ``updated_at`` moves forward with it.

    :param api_call: the call's outcome, usage and timing.
    :return: the stored record.
    :raises NotFoundError: the session does not exist for this tenant.
    :raises ConflictError: the id is stored in another session (the neutral message).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_api_calls(tenant_id: str, session_id: str) -> Sequence[ApiCall] | None:
    """List a session's API calls, oldest first.

    Tier: API-call group.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :return: the calls (empty for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_delete_api_calls(tenant_id: str, api_call_ids: Sequence[str]) -> int | None:
    """Delete API call records by id (ids not stored for this tenant are skipped).

    Tier: API-call group. The derived ``erase_user`` deletes a user's calls in other
    users' sessions with it.

    :param tenant_id: the caller's tenant.
    :param api_call_ids: the records to delete.
    :return: how many went.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_summarize_usage(tenant_id: str, query: UsageQuery) -> Sequence[UsageRow] | None:
    """Sum a tenant's API calls of a period per group (:mod:`threadline.usage`).

    Tier: derived (the core default walks the tenant's sessions with ``list_sessions`` and
    ``list_api_calls``; a store overrides it to answer from a rollup or an index).

    Percentiles are ``percentile_cont`` (linear between the two nearest values) over the calls
    that recorded a value, and cost is ``sum(prompt * input + completion * output) / 1e6`` with
    the query's prices. The SQLite and PostgreSQL stores answer from a rollup kept by triggers
    (migration 0010): counts, tokens and cost exact, percentiles from log-bucket histograms
    within ``threadline.usage.RELATIVE_ERROR`` (1.97 %).
    :func:`threadline.testing.usage.default_rows` is what an override must return
    (``UsageConformance`` checks it).

    :param tenant_id: the caller's tenant.
    :param query: period (``since <= created_at < until``), grouping and model prices.
    :return: one :class:`~threadline.usage.UsageRow` per group that has calls, in any order.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """
