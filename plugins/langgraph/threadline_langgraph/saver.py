"""``ThreadlineSaver``: a LangGraph checkpointer over any threadline store.

Sync and async methods, the extended capabilities (``delete_for_runs``, ``copy_thread``,
``prune``), and constructors that open the store from a URL. The work is in
:class:`threadline_langgraph.threads.Threads`; this module binds it to LangGraph's
interface and to the event loop that owns the store (:mod:`threadline_langgraph.loop`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from threadline.ids import check_id, optional_id
from threadline.store import Store
from threadline_langgraph.ids import DEFAULT_TENANT_ID
from threadline_langgraph.loop import LoopThread, call_on_loop, run_on_loop
from threadline_langgraph.messages import MessageCodec
from threadline_langgraph.threads import Threads

__all__ = ["ThreadlineSaver"]

T = TypeVar("T")


class ThreadlineSaver(BaseCheckpointSaver[int]):
    """A LangGraph ``BaseCheckpointSaver`` storing threads as threadline sessions.

    ``tenant_id`` scopes every thread (``config["configurable"]["tenant_id"]`` overrides it
    per call); ``user_id`` (or a UUID ``configurable["user_id"]``) owns new threads, so
    ``threadline erase-user`` finds them. The store is used on the event loop that owns it:
    the loop running when the saver is made, else the first async call's; sync methods
    hand their work to that loop (or, with none, to a loop thread of the saver's own).
    """

    def __init__(
        self,
        store: Store,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        user_id: str | None = None,
        serde: SerializerProtocol | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.store = store
        self.tenant_id = check_id(tenant_id, "tenant_id")
        self.user_id = optional_id(user_id, "user_id")
        self.threads = Threads(
            store, MessageCodec(self.serde), tenant_id=self.tenant_id, user_id=self.user_id
        )
        self._loop = loop
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._own_loop: LoopThread | None = None

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def from_conn_string(cls, url: str, **kwargs: Any) -> Iterator[ThreadlineSaver]:
        """A saver on the store at ``url`` (``sqlite:///app.db``, ``postgresql://...``,
        ``memory://``, ``file:///dir``), run in a loop thread of its own; closed on exit.

        For sync graphs (``graph.invoke``); its async methods work too, from any loop.
        """
        import threadline

        runner = LoopThread()
        try:
            store = runner.run(threadline.connect(url))
            try:
                yield cls(store, loop=runner.loop, **kwargs)
            finally:
                runner.run(store.close())
        finally:
            runner.stop()

    @classmethod
    @asynccontextmanager
    async def afrom_conn_string(cls, url: str, **kwargs: Any) -> AsyncIterator[ThreadlineSaver]:
        """A saver on the store at ``url``, opened on the running loop; closed on exit."""
        import threadline

        store = await threadline.connect(url)
        try:
            yield cls(store, loop=asyncio.get_running_loop(), **kwargs)
        finally:
            await store.close()

    # -- loops --------------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or (self._loop.is_closed() and self._own_loop is None):
            self._own_loop = LoopThread()
            self._loop = self._own_loop.loop
        return run_on_loop(self._loop, coro)

    async def _arun(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.get_running_loop()
        return await call_on_loop(self._loop, coro)

    def close(self) -> None:
        """Stop the loop thread the saver started for sync calls (the store stays open)."""
        if self._own_loop is not None:
            self._own_loop.stop()
            self._own_loop = None
            self._loop = None

    # -- versions -----------------------------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None = None) -> int:
        """Integer versions (1, 2, ...): a few bytes in every checkpoint, where the string
        versions of LangGraph's database savers take 50 each. A string version (a thread
        written by another saver) continues from its counter."""
        if current is None:
            return 1
        if isinstance(current, int):
            return current + 1
        return int(str(current).split(".")[0]) + 1

    # -- async API ----------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._arun(self.threads.get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._arun(
            self.threads.list_tuples(config, filter=filter, before=before, limit=limit)
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        metadata = get_checkpoint_metadata(config, metadata)
        return await self._arun(self.threads.put(config, checkpoint, metadata))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._arun(self.threads.put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await self._arun(self.threads.delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._arun(self.threads.delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._arun(self.threads.copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._arun(self.threads.prune(thread_ids, strategy))

    # -- sync API -----------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(self.threads.get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._run(
            self.threads.list_tuples(config, filter=filter, before=before, limit=limit)
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        metadata = get_checkpoint_metadata(config, metadata)
        return self._run(self.threads.put(config, checkpoint, metadata))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._run(self.threads.put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run(self.threads.delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(self.threads.delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(self.threads.copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._run(self.threads.prune(thread_ids, strategy))
