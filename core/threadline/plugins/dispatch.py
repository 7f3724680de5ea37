"""The async dispatch rule for persistence hooks, with the core's defaults for derived hooks.

pluggy calls hook implementations synchronously: a ``firstresult`` hook would hand
back the first coroutine unawaited, and a wrapper cannot surround awaited work.
So threadline calls persistence hooks itself, in pluggy's order (last registered
first, ``tryfirst``/``trylast`` honoured), with one rule:

* **writes** (:func:`call_write`): every implementation is awaited, one after the
  other; the first failure stops the call and is raised, so a sink stacked behind
  the primary store never records what the primary refused. The result is the first
  non-``None`` value returned.
* **reads** (:func:`call_read`): implementations are awaited in order until one returns
  something other than ``None``; that value is the result.

**Derived hooks** (:data:`threadline.hookspecs.DERIVED_HOOKS`) have a core default
(:mod:`threadline.storekit.defaults`) built on the required tier. Who takes part in a
derived hook is decided per stacked store (:func:`participants`), in the same order:

1. the store's own implementation of the hook, if it has one (it overrides the default);
2. else the default bound to *that store's* hooks (:class:`Binding`), if the store
   implements every hook the default needs;
3. else the store does not take part.

Then the write or read rule above applies to the participants. :class:`threadline.Store`
raises :class:`~threadline.errors.ConfigurationError` for a write (or read) with no
participant. So an audit sink implementing only ``threadline_save_messages`` also
receives ``save_message`` through its own primitive, and a config-only store never
receives message traffic.

Implementations may be plain functions or coroutines; each receives only the
arguments it names, as with pluggy.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pluggy

from threadline.errors import ConfigurationError

__all__ = [
    "Binding",
    "Call",
    "call_read",
    "call_write",
    "collect",
    "impl_call",
    "implementations",
    "invoke",
    "participants",
    "read",
    "read_calls",
    "write",
    "write_calls",
]

Call = Callable[[Mapping[str, Any]], Awaitable[Any]]
"""One participant of a hook call: awaited with the call's keyword arguments."""


def implementations(pm: pluggy.PluginManager, hook_name: str) -> list[pluggy.HookImpl]:
    """The implementations of ``hook_name`` in the order pluggy would call them."""
    caller = getattr(pm.hook, hook_name)
    return list(reversed(caller.get_hookimpls()))


async def invoke(impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> Any:
    """Call one implementation with the arguments it names; await it if it is async."""
    result = impl.function(*[kwargs[name] for name in impl.argnames])
    if inspect.isawaitable(result):
        result = await result
    return result


def impl_call(impl: pluggy.HookImpl) -> Call:
    """``impl`` as a :data:`Call`. A coroutine function (every store's hooks) is called
    straight with the arguments it names, its coroutine handed back to be awaited: no
    wrapper frame, no awaitable check (about 1 µs of a call's ~3 µs of dispatch)."""
    fn = impl.function
    names = tuple(impl.argnames)
    if not inspect.iscoroutinefunction(fn):

        async def call(kwargs: Mapping[str, Any]) -> Any:
            return await invoke(impl, kwargs)

        return call
    if not names:
        return lambda kwargs: fn()
    if len(names) == 1:
        (name,) = names
        return lambda kwargs: fn(kwargs[name])
    return lambda kwargs: fn(*[kwargs[n] for n in names])


async def collect(impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> list[Any]:
    """Await every implementation in order (first failure raised); return every result."""
    return [await invoke(impl, kwargs) for impl in impls]


async def write_calls(calls: Sequence[Call], kwargs: Mapping[str, Any]) -> Any:
    """Await every participant in order; raise the first failure; return the first result."""
    if len(calls) == 1:  # the usual stack: one store
        return await calls[0](kwargs)
    first: Any = None
    for call in calls:
        result = await call(kwargs)
        if first is None:
            first = result
    return first


async def read_calls(calls: Sequence[Call], kwargs: Mapping[str, Any]) -> Any:
    """Await participants in order until one returns non-``None``; return that value."""
    if len(calls) == 1:
        return await calls[0](kwargs)
    for call in calls:
        result = await call(kwargs)
        if result is not None:
            return result
    return None


async def write(impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> Any:
    """Await every implementation in order; raise the first failure; return the first result."""
    return await write_calls([impl_call(impl) for impl in impls], kwargs)


async def read(impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> Any:
    """Await implementations in order until one returns non-``None``; return that value."""
    return await read_calls([impl_call(impl) for impl in impls], kwargs)


async def call_write(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """:func:`write` over the implementations of ``hook_name`` registered on ``pm``."""
    return await write(implementations(pm, hook_name), kwargs)


async def call_read(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """:func:`read` over the implementations of ``hook_name`` registered on ``pm``."""
    return await read(implementations(pm, hook_name), kwargs)


# -- derived hooks ----------------------------------------------------------------------------


class Binding:
    """One stacked store's hooks, with the core defaults bound to them where it has none.

    ``state`` holds what a default keeps per store (the checkpoint history cache).
    """

    def __init__(self, pm: pluggy.PluginManager, plugin: object) -> None:
        from threadline.hookspecs import PERSISTENCE_HOOKS

        self.plugin = plugin
        self.state: dict[str, Any] = {}
        self.own: dict[str, pluggy.HookImpl] = {}
        for hook in PERSISTENCE_HOOKS:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin is plugin:
                    self.own[hook] = impl
        self._supports: dict[str, bool] = {}

    def has(self, hook: str) -> bool:
        """True when the store implements ``hook`` or a default for it can be bound."""
        known = self._supports.get(hook)
        if known is None:
            from threadline.storekit.defaults import DEFAULTS

            default = DEFAULTS.get(hook)
            self._supports[hook] = False  # no cycles among the defaults; guard anyway
            known = hook in self.own or (
                default is not None and all(self.has(need) for need in default.needs)
            )
            self._supports[hook] = known
        return known

    async def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on this store: its own implementation, else the bound default."""
        impl = self.own.get(hook)
        if impl is not None:
            return await invoke(impl, kwargs)
        if not self.has(hook):
            raise ConfigurationError(
                f"{self.plugin!r} implements neither {hook} nor what its default needs"
            )
        from threadline.storekit.defaults import DEFAULTS

        return await DEFAULTS[hook].function(self, **kwargs)

    def participant(self, hook: str) -> Call | None:
        """This store's part in a call of ``hook``, or ``None`` when it takes no part."""
        if not self.has(hook):
            return None
        own = self.own.get(hook)
        if own is not None:
            return impl_call(own)

        async def call(kwargs: Mapping[str, Any]) -> Any:
            return await self.call(hook, **kwargs)

        return call

    def priority(self, hook: str) -> int:
        """0 for a ``tryfirst`` implementation, 2 for ``trylast``, else 1 (as pluggy orders)."""
        impl = self.own.get(hook)
        if impl is None:
            return 1
        return 0 if impl.tryfirst else 2 if impl.trylast else 1


def participants(bindings: Sequence[Binding], hook: str) -> list[Call]:
    """Who takes part in derived ``hook``: ``bindings`` in call order (last added first),
    ``tryfirst``/``trylast`` of a store's own implementation honoured as pluggy does."""
    ordered = sorted(bindings, key=lambda b: b.priority(hook))  # stable: keeps stack order
    return [call for b in ordered if (call := b.participant(hook)) is not None]
