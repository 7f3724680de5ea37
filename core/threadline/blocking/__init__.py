"""The kernel of the synchronous API: one background event loop, and typed blocking
methods generated from async ones. The blocking store, context and agent built on it are
:mod:`threadline.store.blocking` and :mod:`threadline.runtime.blocking`."""

from threadline.blocking.facade import BlockingFacade, blocking, streaming
from threadline.blocking.loop import RunningLoopError, run, shutdown

__all__ = ["BlockingFacade", "RunningLoopError", "blocking", "run", "shutdown", "streaming"]
