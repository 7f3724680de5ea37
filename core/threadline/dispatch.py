"""The async dispatch rule for persistence hooks.

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

Implementations may be plain functions or coroutines; each receives only the
arguments it names, as with pluggy.
"""

from __future__ import annotations

import inspect
from typing import Any

import pluggy

__all__ = ["call_read", "call_write", "collect", "implementations", "read", "write"]


def implementations(pm: pluggy.PluginManager, hook_name: str) -> list[pluggy.HookImpl]:
    """The implementations of ``hook_name`` in the order pluggy would call them."""
    caller = getattr(pm.hook, hook_name)
    return list(reversed(caller.get_hookimpls()))


async def collect(impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> list[Any]:
    """Await every implementation in order (first failure raised); return every result."""
    results = []
    for impl in impls:
        result = impl.function(*[kwargs[name] for name in impl.argnames])
        if inspect.isawaitable(result):
            result = await result
        results.append(result)
    return results


async def write(impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> Any:
    """Await every implementation in order; raise the first failure; return the first result."""
    first: Any = None
    for impl in impls:
        result = impl.function(*[kwargs[name] for name in impl.argnames])
        if inspect.isawaitable(result):
            result = await result
        if first is None:
            first = result
    return first


async def read(impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> Any:
    """Await implementations in order until one returns non-``None``; return that value."""
    for impl in impls:
        result = impl.function(*[kwargs[name] for name in impl.argnames])
        if inspect.isawaitable(result):
            result = await result
        if result is not None:
            return result
    return None


async def call_write(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """:func:`write` over the implementations of ``hook_name`` registered on ``pm``."""
    return await write(implementations(pm, hook_name), kwargs)


async def call_read(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """:func:`read` over the implementations of ``hook_name`` registered on ``pm``."""
    return await read(implementations(pm, hook_name), kwargs)
