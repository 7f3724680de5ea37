"""The plugin the core registers on itself: the offline ``echo`` provider."""

from __future__ import annotations

from collections.abc import Callable

from threadline.hookspecs import hookimpl
from threadline.runtime.providers import EchoProvider


@hookimpl
def threadline_register_providers(register: Callable[..., None]) -> None:
    register("echo", EchoProvider, "Echoes the last user message; for demos and tests")
