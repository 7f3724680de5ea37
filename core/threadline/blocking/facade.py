"""Blocking methods generated from async ones, typed from the async signatures.

A blocking class names the async class it drives; every public ``async def`` of that
class becomes a method that runs it on the background loop (:mod:`threadline.blocking.loop`)
and returns its result, and every async iterator method one that returns a
:class:`BlockingIterator`::

    class BlockingStore(BlockingFacade[Store], wraps=Store):
        get_session = blocking(Store.get_session)  # (tenant_id, session_id) -> Session | None

The declared line exists for the type checker (``ParamSpec`` carries the parameters
over); a method the class does not declare is generated anyway when the class is made,
so the blocking class never lacks one of the async class's methods
(:attr:`BlockingFacade.generated` lists those, which a type checker does not see).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import FIRST_COMPLETED
from types import TracebackType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from threadline.blocking.loop import loop_thread, run, start, track, untrack

__all__ = [
    "Blocking",
    "BlockingFacade",
    "BlockingIterator",
    "ClosingFacade",
    "Same",
    "Streaming",
    "blocking",
    "returns_async_iterator",
    "same",
    "streaming",
]

A = TypeVar("A")
P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")
_Reply = concurrent.futures.Future[tuple[bool, Any]]  # answers one next(): (more, item)


class BlockingFacade(Generic[A]):
    """Base of a blocking object: it drives the async object :attr:`target`."""

    wraps: ClassVar[type | None] = None
    generated: ClassVar[tuple[str, ...]] = ()
    """Methods made from the async class that the class body does not declare."""

    def __init__(self, target: A) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"<Blocking{repr(self.target)[1:]}"

    def __init_subclass__(cls, wraps: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if wraps is None:
            return
        cls.wraps = wraps
        made = []
        for name, member in inspect.getmembers(wraps):
            if name.startswith("_") or hasattr(cls, name):
                continue
            if inspect.iscoroutinefunction(member):
                setattr(cls, name, Blocking(member))
            elif returns_async_iterator(member):
                setattr(cls, name, Streaming(member))
            else:
                continue
            made.append(name)
        cls.generated = tuple(made)


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)
F = TypeVar("F", bound="ClosingFacade[Any]")


class ClosingFacade(BlockingFacade[C]):
    """A blocking object that owns something to close (a store, an agent): ``close()``
    and a ``with`` block (the opener registers it with ``track`` to be closed at exit)."""

    def close(self) -> None:
        """Close the async object on the background loop (once; it stops being tracked)."""
        untrack(self.target)
        run(self.target.close())

    def __enter__(self: F) -> F:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def returns_async_iterator(member: object) -> bool:
    """An ``async def`` with ``yield``, or a plain method annotated to return an async
    iterator (``def follow(...) -> AsyncIterator[...]``)."""
    if inspect.isasyncgenfunction(member):
        return True
    if not inspect.isfunction(member):
        return False
    returns = inspect.signature(member).return_annotation
    name = returns if isinstance(returns, str) else getattr(returns, "__name__", "")
    return name.startswith(("AsyncIterator", "AsyncGenerator", "AsyncIterable"))


class Blocking(Generic[P, R]):
    """A method that runs the target's coroutine method on the background loop."""

    def __init__(self, method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> None:
        self.name: str = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Blocking[P, R]: ...

    @overload
    def __get__(self, obj: BlockingFacade[Any], owner: type[Any]) -> Callable[P, R]: ...

    def __get__(
        self, obj: BlockingFacade[Any] | None, owner: type[Any]
    ) -> Blocking[P, R] | Callable[P, R]:
        if obj is None:
            return self
        method = getattr(obj.target, self.name)

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            result: R = run(method(*args, **kwargs))
            return result

        call.__name__ = call.__qualname__ = self.name
        call.__doc__ = self.__doc__
        return call


class Streaming(Generic[P, Y]):
    """A method that returns the target's async iterator as a :class:`BlockingIterator`."""

    def __init__(self, method: Callable[Concatenate[Any, P], AsyncIterator[Y]]) -> None:
        self.name: str = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Streaming[P, Y]: ...

    @overload
    def __get__(
        self, obj: BlockingFacade[Any], owner: type[Any]
    ) -> Callable[P, BlockingIterator[Y]]: ...

    def __get__(
        self, obj: BlockingFacade[Any] | None, owner: type[Any]
    ) -> Streaming[P, Y] | Callable[P, BlockingIterator[Y]]:
        if obj is None:
            return self
        method = getattr(obj.target, self.name)

        def call(*args: P.args, **kwargs: P.kwargs) -> BlockingIterator[Y]:
            return BlockingIterator(method(*args, **kwargs))

        call.__name__ = call.__qualname__ = self.name
        call.__doc__ = self.__doc__
        return call


class Same(Generic[P, R]):
    """A plain (not async) method of the target, called as it is."""

    def __init__(self, method: Callable[Concatenate[Any, P], R]) -> None:
        self.name: str = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Same[P, R]: ...

    @overload
    def __get__(self, obj: BlockingFacade[Any], owner: type[Any]) -> Callable[P, R]: ...

    def __get__(
        self, obj: BlockingFacade[Any] | None, owner: type[Any]
    ) -> Same[P, R] | Callable[P, R]:
        if obj is None:
            return self
        method: Callable[P, R] = getattr(obj.target, self.name)
        return method


def same(method: Callable[Concatenate[Any, P], R]) -> Same[P, R]:
    """Declare a plain method of the async class, passed through to the target."""
    return Same(method)


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Blocking[P, R]:
    """Declare the blocking form of an ``async def`` method (typed from its signature)."""
    return Blocking(method)


def streaming(method: Callable[Concatenate[Any, P], AsyncIterator[Y]]) -> Streaming[P, Y]:
    """Declare the blocking form of a method returning an async iterator."""
    return Streaming(method)


class _Pump(Generic[Y]):
    """The loop side of a :class:`BlockingIterator`: one task reads the async iterator,
    an item per request. It never refers to the iterator, which stays free to be dropped."""

    def __init__(self, source: AsyncIterator[Y]) -> None:
        self.source = source
        self.requests: asyncio.Queue[_Reply | None] = asyncio.Queue()
        self.loop = start()
        self.task: asyncio.Task[None] | None = None
        track(self, self.aclose)  # an iterator still open at exit is closed, not cut off
        self.future = asyncio.run_coroutine_threadsafe(self.drive(), self.loop)

    def ask(self, reply: _Reply | None) -> None:
        self.loop.call_soon_threadsafe(self.requests.put_nowait, reply)

    async def drive(self) -> None:
        self.task = asyncio.current_task()
        try:
            while True:
                reply = await self.requests.get()
                if reply is None:
                    return
                try:
                    item = await self.source.__anext__()
                except StopAsyncIteration:
                    reply.set_result((False, None))
                    return
                except BaseException as exc:
                    reply.set_exception(exc)
                    return
                reply.set_result((True, item))
        finally:
            untrack(self)
            aclose = getattr(self.source, "aclose", None)
            if aclose is not None:
                await aclose()

    async def aclose(self) -> None:
        """Close from the loop (at exit): the async iterator's ``aclose()`` runs in its task."""
        self.requests.put_nowait(None)
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class BlockingIterator(Generic[Y]):
    """An async iterator read from a sync thread, one task on the loop driving it.

    The whole iteration runs in one task (as ``async for`` would), so the async iterator's
    timeouts and cancellation behave as in async code. :meth:`close` (leaving a ``with``
    block, or dropping the iterator) closes it with ``aclose()``: a reply cut short is
    kept as ``cancelled``. Read it from one thread at a time, like any iterator.
    """

    def __init__(self, source: AsyncIterator[Y]) -> None:
        self._source: AsyncIterator[Y] | None = source
        self._pump: _Pump[Y] | None = None
        self._finished = False

    def __iter__(self) -> Iterator[Y]:
        return self

    def __next__(self) -> Y:
        if self._finished:
            raise StopIteration
        if self._pump is None:
            assert self._source is not None
            self._pump, self._source = _Pump(self._source), None
        pump = self._pump
        reply: _Reply = concurrent.futures.Future()
        pump.ask(reply)
        try:
            either: list[concurrent.futures.Future[Any]] = [reply, pump.future]
            concurrent.futures.wait(either, return_when=FIRST_COMPLETED)
            if not reply.done():  # the task ended without answering (closed at exit)
                self._finished = True
                pump.future.result()
                raise StopIteration
            more, item = reply.result()
        except BaseException:
            self.close()
            raise
        if not more:
            self._finished = True
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def close(self, *, wait: bool = True) -> None:
        """Close the async iterator; ``wait``: until its ``aclose()`` has run."""
        self._finished = True
        pump, source = self._pump, self._source
        if pump is None:
            self._source = None
            aclose = getattr(source, "aclose", None)
            if aclose is not None:  # never started: nothing ran, nothing to finish
                aclose().close()
            return
        if pump.future.done() or pump.loop.is_closed():
            return
        pump.ask(None)
        if wait and loop_thread() is not threading.current_thread():
            concurrent.futures.wait([pump.future])

    def __enter__(self) -> BlockingIterator[Y]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._finished:
            with contextlib.suppress(Exception):  # interpreter teardown: the loop is gone
                self.close(wait=False)
