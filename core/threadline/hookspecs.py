"""The hook specifications: what a threadline plugin may implement.

Two kinds of hooks live here.

*Registration hooks* are synchronous and called once, when plugins load from the
``threadline`` entry-point group: they register URL schemes, providers and CLI
commands.

*Persistence hooks* are the store contract. A store object implements them as
methods decorated with :data:`threadline.hookimpl`, sync or ``async``. The
runtime registers the stores a user configured on a store's own plugin manager
and calls them with the dispatch rule of :mod:`threadline.plugins.dispatch`: writes are
awaited on every implementation in order and the first failure is raised; reads
are awaited in order until one returns something other than ``None``.

Every read and write carries ``tenant_id``. A store must scope by it: another
tenant's ids find nothing (reads return ``None``/empty, writes raise
:class:`~threadline.errors.NotFoundError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from threadline.models import (
        AgentConfig,
        ApiCall,
        Checkpoint,
        Message,
        ProviderRecord,
        Session,
    )
    from threadline.storekit.records import CheckpointRecord

hookspec = pluggy.HookspecMarker("threadline")
hookimpl = pluggy.HookimplMarker("threadline")

# -- registration hooks ------------------------------------------------------------------


@hookspec
def threadline_register_stores(register: Callable[..., None]) -> None:
    """Register store factories by URL scheme.

    Call ``register(scheme, factory, description=...)`` once per scheme. ``factory``
    is ``async def factory(url: threadline.StoreURL, *, create: bool) -> object`` and
    returns a store object implementing the persistence hooks below. With
    ``create=False`` it creates nothing: a store that does not exist raises
    :class:`threadline.errors.StoreNotFoundError` naming the redacted URL. A factory
    without ``create`` is only called for ``create=True`` (``connect(url, create=False)``
    refuses it with ``ConfigurationError``).

    :param register: the callback that records a scheme and its factory.
    """


@hookspec
def threadline_register_providers(register: Callable[..., None]) -> None:
    """Register model providers by name.

    Call ``register(name, factory, description=...)``. ``factory(**options)`` returns a
    :class:`threadline.runtime.providers.Provider`.

    :param register: the callback that records a provider name and its factory.
    """


@hookspec
def threadline_register_commands(cli: click.Group) -> None:
    """Add commands to the ``threadline`` command line.

    :param cli: the root :class:`click.Group`; add commands with ``@cli.command()``.
    """


# -- persistence hooks: lifecycle ---------------------------------------------------------


@hookspec
def threadline_migrate() -> Sequence[str] | None:
    """Bring the store's schema up to date; safe to call again and from several processes.

    Tier: lifecycle (optional: a store without a schema leaves it out).

    :return: the names of the migrations applied by this call (empty when up to date).
    """


@hookspec
def threadline_list_tenants() -> Sequence[str] | None:
    """List every tenant that owns a session, an agent or a provider in this store.

    Tier: required.

    For operators moving or auditing a whole store (``threadline copy``); an application's
    own reads are always scoped to one tenant.

    :return: the tenant ids, sorted.
    """


@hookspec
def threadline_close() -> None:
    """Release connections, threads and files. Called once by ``Store.close()``.

    Tier: lifecycle (optional).
    """


# -- persistence hooks: sessions ----------------------------------------------------------


@hookspec
def threadline_create_session(session: Session) -> Session | None:
    """Create a session. A session with the same id and tenant already stored is not an error.

    Tier: required.

    :param session: the session to store; its ``id`` is client-generated.
    :return: the stored session.
    :raises ConflictError: another tenant's session holds the id, with the neutral
        message of every id conflict (``"session id ... cannot be used here: use a new
        id"``), never naming the holder.
    """


@hookspec
def threadline_get_session(tenant_id: str, session_id: str) -> Session | None:
    """Read one session.

    Tier: required.

    :param tenant_id: the caller's tenant.
    :param session_id: the session to read.
    :return: the session, or ``None`` if it does not exist for this tenant.
    """


@hookspec
def threadline_list_sessions(
    tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
) -> Sequence[Session] | None:
    """List a tenant's sessions, most recently updated first.

    Tier: required.

    :param tenant_id: the caller's tenant.
    :param user_id: only this user's sessions when given.
    :param agent_id: only this agent's sessions when given.
    :param limit: at most this many sessions.
    :param offset: skip this many first (for paging).
    :return: the sessions, newest ``updated_at`` first.
    """


@hookspec
def threadline_update_session(session: Session) -> Session | None:
    """Replace a session's title and metadata (and bump ``updated_at``).

    Tier: derived (default: ``get_session`` + ``replace_session`` with a new ``updated_at``).

    :param session: the session with its new title and metadata.
    :return: the stored session.
    :raises NotFoundError: no such session for this tenant.
    """


@hookspec
def threadline_set_session_updated_at(
    tenant_id: str, session_id: str, updated_at: datetime
) -> Session | None:
    """Set a session's ``updated_at`` to exactly ``updated_at``, earlier or later.

    Tier: derived (default: ``get_session`` + ``replace_session``).

    Stores own ``updated_at``: every write that belongs to the session moves it to now,
    never back (see ``threadline_create_checkpoint``); copy and import
    call this last, after a session's rows, so the copy keeps the source's value.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param updated_at: the new value (aware, UTC).
    :return: the stored session.
    :raises NotFoundError: no such session for this tenant.
    """


@hookspec
def threadline_delete_session(tenant_id: str, session_id: str) -> bool | None:
    """Delete a session with its messages, API calls and checkpoints.

    Tier: required.

    :param tenant_id: the caller's tenant.
    :param session_id: the session to delete.
    :return: ``True`` if a session was deleted, ``False`` if there was none.
    """


# -- persistence hooks: messages ----------------------------------------------------------


@hookspec
def threadline_save_message(message: Message) -> Message | None:
    """Append one message to its session, assigning the next ``seq`` atomically.

    Tier: derived (default: ``save_messages([message])``).

    Saving a message whose id is already stored in the same session is an idempotent
    retry: the stored message comes back and nothing is duplicated.

    :param message: the message; its ``seq`` is ignored.
    :return: the stored message with its ``seq``.
    :raises NotFoundError: the session does not exist for the message's tenant.
    :raises ConflictError: the id is stored in another session (of this tenant or
        another: the same neutral message either way).
    """


@hookspec
def threadline_save_messages(messages: Sequence[Message]) -> Sequence[Message] | None:
    """Append several messages of one session in one transaction, seqs in list order.

    Tier: required.

    :param messages: messages of a single session, in order.
    :return: the stored messages with their ``seq``.
    :raises NotFoundError: the session does not exist for the messages' tenant.
    """


@hookspec
def threadline_update_message(message: Message) -> Message | None:
    """Replace the content, tool calls, status and metadata of a stored message.

    Tier: derived (default: ``read_messages`` at its seq + ``rewrite_messages``).

    Used to flush a streaming reply and record how it ended. ``seq`` never changes.
    Activity: the session's ``updated_at`` moves forward in the same transaction.

    :param message: the message with its new content; matched by id and tenant.
    :return: the stored message.
    :raises NotFoundError: no such message for this tenant.
    """


@hookspec
def threadline_get_messages(
    tenant_id: str, session_id: str, after_seq: int, limit: int | None
) -> Sequence[Message] | None:
    """Read a session's messages in ``seq`` order.

    Tier: derived (default: ``read_messages`` forwards).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param after_seq: only messages with a larger ``seq``.
    :param limit: at most this many (``None``: all).
    :return: the messages, oldest first (empty for an unknown session).
    """


@hookspec
def threadline_load_window(
    tenant_id: str, session_id: str, last_rounds: int | None
) -> Sequence[Message] | None:
    """Read the sliding window of a session (:func:`threadline.storekit.window.select_window`).

    Tier: derived (default: backwards ``read_messages`` pages, then the system messages).

    The system messages first, then the last ``last_rounds`` rounds (a round starts at a
    user message), never a tool result without its call. Stores answer from an index:
    the cost must not grow with the session's length.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param last_rounds: rounds to keep; ``None`` for the whole history.
    :return: the window, oldest first.
    """


@hookspec
def threadline_count_messages(tenant_id: str, session_id: str) -> int | None:
    """Count a session's messages.

    Tier: derived (default: the last message's seq, one backwards ``read_messages``).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :return: the number of messages (0 for an unknown session).
    """


@hookspec
def threadline_interrupt_streaming(tenant_id: str, session_id: str) -> int | None:
    """Mark messages left ``streaming`` (by a crashed process) as ``interrupted``.

    Tier: derived (default: ``read_messages`` + ``rewrite_messages``).

    When a message changes, the session's ``updated_at`` moves forward (activity).

    :param tenant_id: the caller's tenant.
    :param session_id: the session being opened.
    :return: how many messages changed.
    """


# -- persistence hooks: API calls --------------------------------------------------------


@hookspec
def threadline_save_api_call(api_call: ApiCall) -> ApiCall | None:
    """Record one model request (idempotent by id).

    Tier: API-call group (optional; a store with API calls implements the group).

    A new record is activity: the session's ``updated_at`` moves forward with it.

    :param api_call: the call's outcome, usage and timing.
    :return: the stored record.
    :raises NotFoundError: the session does not exist for this tenant.
    :raises ConflictError: the id is stored in another session (the neutral message).
    """


@hookspec
def threadline_list_api_calls(tenant_id: str, session_id: str) -> Sequence[ApiCall] | None:
    """List a session's API calls, oldest first.

    Tier: API-call group.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :return: the calls (empty for an unknown session).
    """


# -- persistence hooks: checkpoints ------------------------------------------------------


@hookspec
def threadline_create_checkpoint(checkpoint: Checkpoint) -> Checkpoint | None:
    """Store a checkpoint, assigning the next per-session ``version`` atomically.

    Tier: derived (default: the store kit's checkpoint log over ``insert_checkpoint_record``).

    Every write that belongs to a session is activity, and a checkpoint (a tombstone or a
    rollback too) is one: the session's ``updated_at`` moves to now, never back, in the
    same transaction where the store has one, so ``list_sessions`` and
    ``delete_sessions_before`` see a running graph as active. A checkpoint needs its
    session row: none exists outside one.

    :param checkpoint: the checkpoint; its ``version`` is ignored.
    :return: the stored checkpoint with its ``version``.
    :raises NotFoundError: the session does not exist for this tenant.
    :raises ConflictError: the id is already stored with different content, or by
        another tenant (the same neutral message either way).
    """


@hookspec
def threadline_get_checkpoint(tenant_id: str, checkpoint_id: str) -> Checkpoint | None:
    """Read one checkpoint with its whole history.

    Tier: derived (default: ``read_checkpoint_records`` chain).

    :param tenant_id: the caller's tenant.
    :param checkpoint_id: the checkpoint.
    :return: the checkpoint, or ``None``.
    """


@hookspec
def threadline_list_checkpoints(
    tenant_id: str, session_id: str | None, agent_id: str | None
) -> Sequence[Checkpoint] | None:
    """List checkpoints by ascending version (sessions in creation order).

    Tier: derived (default: ``list_checkpoint_records``, histories decoded once per record).

    :param tenant_id: the caller's tenant.
    :param session_id: only this session's checkpoints when given.
    :param agent_id: only this agent's checkpoints when given.
    :return: the checkpoints, with their histories.
    """


@hookspec
def threadline_get_latest_checkpoint(
    tenant_id: str, session_id: str, agent_id: str | None
) -> Checkpoint | None:
    """Read the checkpoint with the highest version in a session (tombstones included).

    Tier: derived (default: ``list_checkpoint_records(latest=True)`` + its chain).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param agent_id: only this agent's checkpoints when given.
    :return: the latest checkpoint, or ``None``.
    """


# -- persistence hooks: retention ------------------------------------------------------


@hookspec
def threadline_erase_user(tenant_id: str, user_id: str, dry_run: bool) -> Mapping[str, int] | None:
    """Erase everything a user owns in one tenant (a right-to-erasure request).

    Tier: derived (default: sessions, messages, API calls and the erase-rewrite plan over
    the record hooks; not one transaction).

    Deletes the user's sessions with their messages, API calls and checkpoints. Rows
    carrying the ``user_id`` in *other* users' sessions of the tenant go as well:

    - messages are redacted in place with :func:`threadline.storekit.erasure.redact`:
      ``content`` ``""``, ``tool_calls`` ``()``, ``metadata`` ``{}``, ``name`` and
      ``user_id`` ``None``; ``id``, ``role``, ``seq``, ``status`` and ``tool_call_id``
      are kept, so seqs stay contiguous, counts stay true and a tool result still pairs
      with its call;
    - API calls with that ``user_id`` are deleted;
    - checkpoint histories are redacted the same way: every checkpoint that held one
      of the user's messages reads back with the same history, the user's messages
      redacted (stores with incremental records rewrite only the records holding them,
      see :func:`threadline.storekit.erasure.redact_record`). A checkpoint's ``input`` and
      ``state`` are the run's own values and are left as they are.

    Everything happens in one transaction where the store has them. Other tenants, and
    other users' own rows, keep everything. A second run finds nothing (redacted
    messages no longer carry the ``user_id``). A graph run still going in another
    process holds its history in memory and may write it again with its next checkpoint:
    erase a user once their runs have stopped.

    :param tenant_id: the tenant the user belongs to.
    :param user_id: the user whose sessions go and whose messages elsewhere are redacted.
    :param dry_run: count what would go and change nothing.
    :return: how many rows of each kind went (or would go): ``sessions``, ``messages``
        (in the user's sessions), ``messages_redacted`` (in other users' sessions),
        ``api_calls`` (in the user's sessions and elsewhere), ``checkpoints`` (in the
        user's sessions) and ``checkpoints_redacted`` (checkpoints of other users'
        sessions whose history held the user's messages).
    """


@hookspec
def threadline_prune_checkpoints(
    tenant_id: str, session_id: str, keep: int, dry_run: bool
) -> int | None:
    """Delete a session's older checkpoints, keeping the newest ``keep`` versions whole.

    Tier: derived (default: the prune plan + ``rewrite_checkpoint_records``).

    Every kept checkpoint reads back exactly as before: one stored as a delta on a
    checkpoint that goes is rewritten first as a snapshot of its history (its
    ``parent_id`` stays as recorded). The latest checkpoint (a tombstone included) is
    always kept. Other sessions and tenants are never touched. Housekeeping, not
    activity: the session's ``updated_at`` stays as it is.

    :param tenant_id: the caller's tenant.
    :param session_id: the session whose checkpoints are pruned.
    :param keep: how many of the newest versions to keep (at least 1).
    :param dry_run: count what would go and delete nothing.
    :return: how many checkpoints went (or would go); 0 for an unknown session.
    """


@hookspec
def threadline_delete_sessions_before(
    tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
) -> int | None:
    """Delete a tenant's sessions last updated before a moment, with everything in them.

    Tier: derived (default: ``list_sessions`` pages + ``delete_session``).

    ``updated_at`` is the session's last activity (any write that belongs to it,
    checkpoints and API calls included), so a session written to inside the window stays.

    :param tenant_id: the caller's tenant.
    :param before: sessions whose ``updated_at`` is earlier than this (aware) moment go.
    :param user_id: only this user's sessions when given.
    :param dry_run: count what would go and delete nothing.
    :return: how many sessions went (or would go).
    """


# -- persistence hooks: agent configs ----------------------------------------------------


@hookspec
def threadline_save_agent_config(config: AgentConfig) -> AgentConfig | None:
    """Insert or replace an agent and its provider (matched by id).

    Tier: config group (optional; a store with configs implements the group).

    :param config: the agent row and its provider row.
    :return: the stored config.
    :raises ConflictError: the agent code is taken by another agent of the tenant, or
        another tenant holds the agent or provider id (the neutral id-conflict message).
    """


@hookspec
def threadline_load_agent_config(
    tenant_id: str, code: str | None, agent_id: str | None
) -> AgentConfig | None:
    """Load an agent and its provider by code or by id, disabled ones included.

    Tier: config group.

    :param tenant_id: the caller's tenant.
    :param code: the agent's code (unique per tenant), or ``None``.
    :param agent_id: the agent's id, or ``None``.
    :return: the config, or ``None`` if this tenant has no such agent.
    """


@hookspec
def threadline_list_agent_configs(tenant_id: str) -> Sequence[AgentConfig] | None:
    """List a tenant's agents with their providers, ordered by code.

    Tier: config group.

    :param tenant_id: the caller's tenant.
    :return: the configs.
    """


@hookspec
def threadline_save_provider(provider: ProviderRecord) -> ProviderRecord | None:
    """Insert or replace a provider (matched by id), whether or not an agent uses it.

    Tier: config group.

    :param provider: the provider row to store.
    :return: the stored provider.
    :raises ConflictError: another tenant's provider holds the id (the neutral
        id-conflict message, never naming the holder).
    """


@hookspec
def threadline_list_providers(tenant_id: str) -> Sequence[ProviderRecord] | None:
    """List a tenant's providers, those no agent uses included, ordered by name, then id.

    Tier: config group.

    :param tenant_id: the caller's tenant.
    :return: the providers.
    """


# -- persistence hooks: the required primitives new in the two-tier contract ---------------


@hookspec
def threadline_replace_session(session: Session) -> Session | None:
    """Store a session's ``title``, ``metadata`` and ``updated_at`` exactly as given.

    Tier: required. The derived ``update_session`` and ``set_session_updated_at`` are
    built on it; the other fields stay as stored.

    :param session: the session with its new values; matched by id and tenant.
    :return: the stored session.
    :raises NotFoundError: no such session for this tenant.
    """


@hookspec
def threadline_read_messages(
    tenant_id: str,
    session_id: str,
    after_seq: int,
    before_seq: int | None,
    limit: int | None,
    newest_first: bool,
    role: str | None,
) -> Sequence[Message] | None:
    """Read a session's messages with ``after_seq < seq < before_seq``, from an index.

    Tier: required. The derived ``get_messages``, ``count_messages``, ``load_window`` and
    ``interrupt_streaming`` are built on it: its cost must follow ``limit``, not the
    session's length (a window is read backwards from the end, a page at a time).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param after_seq: only messages with a larger ``seq`` (0: from the first).
    :param before_seq: only messages with a smaller ``seq`` (``None``: to the last).
    :param limit: at most this many (``None``: all in the range).
    :param newest_first: ``True`` to take (and return) the highest seqs first.
    :param role: only messages of this role when given (``"system"`` for a window's head).
    :return: the messages in the order asked (empty for an unknown session).
    """


@hookspec
def threadline_rewrite_messages(tenant_id: str, messages: Sequence[Message]) -> int | None:
    """Replace stored messages' ``content``, ``tool_calls``, ``status``, ``name``, ``metadata``
    and ``user_id`` with the given ones, all or nothing.

    Tier: required. ``id``, ``session_id``, ``role``, ``seq``, ``agent_id``,
    ``tool_call_id`` and ``created_at`` stay as stored. The derived ``update_message``,
    ``interrupt_streaming`` and ``erase_user`` (redaction) are built on it.

    :param tenant_id: the caller's tenant; every message must carry it.
    :param messages: the messages with their new values, matched by id.
    :return: how many messages were rewritten.
    :raises NotFoundError: a message is not stored for this tenant (nothing changes).
    """


@hookspec
def threadline_delete_api_calls(tenant_id: str, api_call_ids: Sequence[str]) -> int | None:
    """Delete API call records by id (ids not stored for this tenant are skipped).

    Tier: API-call group. The derived ``erase_user`` deletes a user's calls in other
    users' sessions with it.

    :param tenant_id: the caller's tenant.
    :param api_call_ids: the records to delete.
    :return: how many went.
    """


@hookspec
def threadline_insert_checkpoint_record(
    record: CheckpointRecord, parent_tag: int | None
) -> CheckpointRecord | None:
    """Insert a checkpoint record, assigning the next per-session ``version`` atomically.

    Tier: required. The derived ``create_checkpoint`` encodes the history
    (:mod:`threadline.storekit.log`); the store only keeps the record. When
    ``record.checkpoint.id`` is stored already the stored record comes back unchanged
    (the core compares it with the retry). Moves the session's ``updated_at`` to now.

    :param record: the checkpoint (``history`` empty, ``version`` ignored), its encoded
        history record, depth and write tag.
    :param parent_tag: the write tag of the parent's record the delta was computed
        against (``None`` without a parent).
    :return: the stored record with its ``version``.
    :raises NotFoundError: the session, or the parent in this session, does not exist.
    :raises StaleRecordError: the parent's record no longer carries ``parent_tag``
        (rewritten meanwhile); nothing is stored and the core computes the delta again.
    """


@hookspec
def threadline_read_checkpoint_records(
    tenant_id: str, checkpoint_id: str, chain: bool
) -> Sequence[CheckpointRecord] | None:
    """Read a checkpoint's record, and with ``chain`` its ancestors back to a snapshot.

    Tier: required. SQL stores answer the chain with one recursive query.

    :param tenant_id: the caller's tenant.
    :param checkpoint_id: the checkpoint.
    :param chain: also every record the checkpoint's history builds on (``depth`` links).
    :return: the record first, then its parent's, ... (empty when there is none).
    """


@hookspec
def threadline_list_checkpoint_records(
    tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
) -> Sequence[CheckpointRecord] | None:
    """List checkpoint records by ascending version (sessions in creation order, then id).

    Tier: required.

    :param tenant_id: the caller's tenant.
    :param session_id: only this session's records when given.
    :param agent_id: only this agent's records when given.
    :param latest: only the one with the highest version (``session_id`` is given then).
    :return: the records (empty for an unknown session).
    """


@hookspec
def threadline_rewrite_checkpoint_records(
    tenant_id: str,
    session_id: str,
    records: Sequence[CheckpointRecord],
    delete_ids: Sequence[str],
) -> int | None:
    """Replace some records' history, depth and tag, and delete others, in one transaction.

    Tier: required. The derived ``prune_checkpoints`` and ``erase_user`` plan the
    rewrite (:mod:`threadline.storekit.log`); the store applies it whole.

    :param tenant_id: the caller's tenant.
    :param session_id: the session every record belongs to.
    :param records: records with their new ``record``, ``depth`` and ``tag``, by id.
    :param delete_ids: checkpoints to delete.
    :return: how many records were rewritten or deleted.
    """


REQUIRED_HOOKS: tuple[str, ...] = (
    "threadline_create_session",
    "threadline_get_session",
    "threadline_list_sessions",
    "threadline_replace_session",
    "threadline_delete_session",
    "threadline_save_messages",
    "threadline_read_messages",
    "threadline_rewrite_messages",
    "threadline_insert_checkpoint_record",
    "threadline_read_checkpoint_records",
    "threadline_list_checkpoint_records",
    "threadline_rewrite_checkpoint_records",
    "threadline_list_tenants",
)
"""The required tier: what a message-and-checkpoint store implements."""

API_CALL_HOOKS: tuple[str, ...] = (
    "threadline_save_api_call",
    "threadline_list_api_calls",
    "threadline_delete_api_calls",
)
"""The API-call capability group (optional, implemented whole)."""

CONFIG_HOOKS: tuple[str, ...] = (
    "threadline_save_agent_config",
    "threadline_load_agent_config",
    "threadline_list_agent_configs",
    "threadline_save_provider",
    "threadline_list_providers",
)
"""The agent/provider config capability group (optional, implemented whole)."""

LIFECYCLE_HOOKS: tuple[str, ...] = ("threadline_migrate", "threadline_close")
"""Optional lifecycle hooks."""

PERSISTENCE_HOOKS: tuple[str, ...] = tuple(
    name
    for name in dir()
    if name.startswith("threadline_") and not name.startswith("threadline_register_")
)
"""Names of the store-contract hooks (everything but the registration hooks)."""

DERIVED_HOOKS: tuple[str, ...] = tuple(
    name
    for name in PERSISTENCE_HOOKS
    if name not in REQUIRED_HOOKS + API_CALL_HOOKS + CONFIG_HOOKS + LIFECYCLE_HOOKS
)
"""The derived tier: the core has a default for each, built on the required tier."""

__all__ = [
    "API_CALL_HOOKS",
    "CONFIG_HOOKS",
    "DERIVED_HOOKS",
    "LIFECYCLE_HOOKS",
    "PERSISTENCE_HOOKS",
    "REQUIRED_HOOKS",
    "hookimpl",
    "hookspec",
]
