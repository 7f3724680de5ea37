"""The hook specifications: what a threadline plugin may implement.

One module per concern (:mod:`~threadline.hookspecs.registration`, ``lifecycle``,
``sessions``, ``messages``, ``api_calls``, ``checkpoints``, ``retention``, ``configs``,
``live``);
every spec is re-exported here, where pluggy's ``add_hookspecs(threadline.hookspecs)``
finds them, with the markers and the tier tuples.

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

**Activity.** A session's ``updated_at`` is when it was last used; retention
(``delete_sessions_before``) and ``list_sessions`` order by it. These writes move it to now
(never back), in their own transaction: ``save_messages``, ``rewrite_messages`` with
``activity=True``, ``delete_messages`` (when a message goes), ``insert_checkpoint_record``
and ``save_api_call``; ``replace_session`` stores the value it is given. Housekeeping leaves
it as stored: ``rewrite_messages`` with ``activity=False`` (erasure's redaction),
``rewrite_checkpoint_records`` (pruning, erasure) and ``delete_api_calls``.

Every read and write carries ``tenant_id``. A store must scope by it: another
tenant's ids find nothing (reads return ``None``/empty, writes raise
:class:`~threadline.errors.NotFoundError`).
"""

from __future__ import annotations

from threadline.hookspecs import (
    api_calls,
    checkpoints,
    configs,
    lifecycle,
    messages,
    retention,
    sessions,
)
from threadline.hookspecs.api_calls import (
    threadline_delete_api_calls,
    threadline_list_api_calls,
    threadline_save_api_call,
    threadline_summarize_usage,
)
from threadline.hookspecs.checkpoints import (
    threadline_append_checkpoint_state,
    threadline_create_checkpoint,
    threadline_get_checkpoint,
    threadline_get_latest_checkpoint,
    threadline_insert_checkpoint_record,
    threadline_list_checkpoint_records,
    threadline_list_checkpoints,
    threadline_read_checkpoint_head,
    threadline_read_checkpoint_records,
    threadline_rewrite_checkpoint_records,
)
from threadline.hookspecs.configs import (
    threadline_list_agent_configs,
    threadline_list_providers,
    threadline_load_agent_config,
    threadline_save_agent_config,
    threadline_save_provider,
)
from threadline.hookspecs.lifecycle import (
    threadline_close,
    threadline_list_tenants,
    threadline_migrate,
)
from threadline.hookspecs.live import (
    threadline_publish_reply,
    threadline_session_expiry,
    threadline_subscribe_replies,
)
from threadline.hookspecs.markers import hookimpl, hookspec
from threadline.hookspecs.messages import (
    threadline_count_messages,
    threadline_delete_messages,
    threadline_fork_messages,
    threadline_get_messages,
    threadline_interrupt_streaming,
    threadline_load_window,
    threadline_read_message_rows,
    threadline_read_messages,
    threadline_rewrite_messages,
    threadline_save_message,
    threadline_save_messages,
    threadline_update_message,
)
from threadline.hookspecs.registration import (
    threadline_register_commands,
    threadline_register_providers,
    threadline_register_stores,
)
from threadline.hookspecs.retention import (
    threadline_delete_sessions_before,
    threadline_erase_user,
    threadline_prune_checkpoints,
)
from threadline.hookspecs.sessions import (
    threadline_create_session,
    threadline_delete_session,
    threadline_get_session,
    threadline_list_sessions,
    threadline_replace_session,
    threadline_set_session_updated_at,
    threadline_update_session,
)

REQUIRED_HOOKS: tuple[str, ...] = (
    "threadline_create_session",
    "threadline_get_session",
    "threadline_list_sessions",
    "threadline_replace_session",
    "threadline_delete_session",
    "threadline_save_messages",
    "threadline_read_messages",
    "threadline_rewrite_messages",
    "threadline_delete_messages",
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

LIVE_HOOKS: tuple[str, ...] = ("threadline_publish_reply", "threadline_subscribe_replies")
"""The live-replies group (optional, implemented whole): followers get pieces as they stream;
without it they poll the stored row. Not persistence hooks: the facade calls them directly."""

EXPIRY_HOOKS: tuple[str, ...] = ("threadline_session_expiry",)
"""The session-expiry group (optional): stores with a session TTL say when sessions expire."""

SHORTCUT_HOOKS: tuple[str, ...] = (
    "threadline_read_checkpoint_head",
    "threadline_append_checkpoint_state",
)
"""Optional shortcuts, each on its own: the core (or a framework adapter) takes the faster
path a store offers and works without it (a chain read; write records of their own)."""

PERSISTENCE_HOOKS: tuple[str, ...] = tuple(
    sorted(
        name
        for module in (lifecycle, sessions, messages, api_calls, checkpoints, retention, configs)
        for name in vars(module)
        if name.startswith("threadline_")
    )
)
"""Names of the store-contract hooks (everything but the registration hooks)."""

DERIVED_HOOKS: tuple[str, ...] = tuple(
    name
    for name in PERSISTENCE_HOOKS
    if name not in REQUIRED_HOOKS + API_CALL_HOOKS + CONFIG_HOOKS + LIFECYCLE_HOOKS + SHORTCUT_HOOKS
)
"""The derived tier: the core has a default for each, built on the required tier."""

__all__ = [
    "API_CALL_HOOKS",
    "CONFIG_HOOKS",
    "DERIVED_HOOKS",
    "EXPIRY_HOOKS",
    "LIFECYCLE_HOOKS",
    "LIVE_HOOKS",
    "PERSISTENCE_HOOKS",
    "REQUIRED_HOOKS",
    "SHORTCUT_HOOKS",
    "hookimpl",
    "hookspec",
    "threadline_append_checkpoint_state",
    "threadline_close",
    "threadline_count_messages",
    "threadline_create_checkpoint",
    "threadline_create_session",
    "threadline_delete_api_calls",
    "threadline_delete_messages",
    "threadline_delete_session",
    "threadline_delete_sessions_before",
    "threadline_erase_user",
    "threadline_fork_messages",
    "threadline_get_checkpoint",
    "threadline_get_latest_checkpoint",
    "threadline_get_messages",
    "threadline_get_session",
    "threadline_insert_checkpoint_record",
    "threadline_interrupt_streaming",
    "threadline_list_agent_configs",
    "threadline_list_api_calls",
    "threadline_list_checkpoint_records",
    "threadline_list_checkpoints",
    "threadline_list_providers",
    "threadline_list_sessions",
    "threadline_list_tenants",
    "threadline_load_agent_config",
    "threadline_load_window",
    "threadline_migrate",
    "threadline_prune_checkpoints",
    "threadline_publish_reply",
    "threadline_read_checkpoint_head",
    "threadline_read_checkpoint_records",
    "threadline_read_message_rows",
    "threadline_read_messages",
    "threadline_register_commands",
    "threadline_register_providers",
    "threadline_register_stores",
    "threadline_replace_session",
    "threadline_rewrite_checkpoint_records",
    "threadline_rewrite_messages",
    "threadline_save_agent_config",
    "threadline_save_api_call",
    "threadline_save_message",
    "threadline_save_messages",
    "threadline_save_provider",
    "threadline_session_expiry",
    "threadline_set_session_updated_at",
    "threadline_subscribe_replies",
    "threadline_summarize_usage",
    "threadline_update_message",
    "threadline_update_session",
]
