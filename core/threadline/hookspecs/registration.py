"""Registration hooks: synchronous, called once when plugins load (schemes, providers, CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    import click


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
