"""Package names that import their module on first use, for plugin packages.

A plugin's package is imported whenever plugins load (every ``threadline`` command), so
it must not import its store driver, HTTP client or framework at the top: its public names
are looked up in the module that defines them when first used (PEP 562)::

    __getattr__ = lazy_attributes(__name__, {"PostgresStore": "store"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name in ``where`` is imported from
    ``package.<where[name]>`` when first asked for; any other name is an AttributeError."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)  # next lookups are plain
        return value

    return __getattr__
