"""The checkpointer's operations, async, over the public :class:`threadline.Store` facade only.

Every operation here is made of facade calls (sessions, ``create_checkpoint``,
``get_checkpoint``, ``get_latest_checkpoint``, ``list_checkpoints``,
``prune_checkpoints``), so a LangGraph graph can checkpoint to any threadline store,
third-party ones built on the required hooks included.

Deleting some checkpoints of a thread (``delete_for_runs``, ``prune(keep_latest)``) has no
facade call of its own: a record cannot be deleted from the middle of a session. The thread
is **rebuilt** instead: the surviving checkpoints and their writes are appended again under
the thread's next *generation* (record ids derive from it, see
:mod:`threadline_langgraph.ids`), the session's metadata moves to that generation, and
``prune_checkpoints`` keeps exactly the new records. Until the switch readers see the old
generation whole; after it, the new one; a crash in between leaves extra records that the
next rebuild drops. Do not rebuild a thread while a run is writing to it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, CheckpointTuple

from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.ids import check_id, optional_id
from threadline.models import Checkpoint as Record
from threadline.models import Message, Session
from threadline.store import Store
from threadline.storekit.delta import SNAPSHOT_EVERY
from threadline_langgraph.ids import (
    checkpoint_record_id,
    namespace_agent_id,
    session_id_for,
    writes_record_id,
)
from threadline_langgraph.messages import MessageCodec, Refs
from threadline_langgraph.records import (
    CHECKPOINT,
    FOLDED,
    WRITES,
    Where,
    checkpoint_record,
    compact_info,
    lg,
    metadata_of,
    stored_values,
    tuple_of,
    writes_record,
    writes_state,
)

__all__ = ["Threads"]

_APPEND_STATE = "threadline_append_checkpoint_state"
_PAGE = 500
_CACHE_LIMIT = 100_000
_REFS_LIMIT = 256
ANCHOR_SPAN = 8
"""How many messages a run may add before its checkpoints stop sharing one delta base.

Every checkpoint of one LangGraph run (``invoke``: the input checkpoint, then one per
super-step) stores its history as a delta on the last checkpoint of the previous run
while the run has added at most this many messages, so a chain grows by one record per
run, not one per super-step: threadline writes a full snapshot every
``SNAPSHOT_EVERY`` links, and a chat turn of three checkpoints would otherwise write
one three times as often. The price, the run's first messages repeated in its later
checkpoints, is bounded by this span."""


def _state_appender(store: Store) -> Callable[..., Awaitable[bool]] | None:
    """The store's ``append_checkpoint_state`` when every store of its stack has that
    shortcut hook (``Store.implements``); else ``None``: write records of their own."""
    return store.append_checkpoint_state if store.implements(_APPEND_STATE) else None


def _generation(session: Session) -> int:
    info = session.metadata.get("langgraph")
    value = info.get("generation", 0) if isinstance(info, dict) else 0
    return value if isinstance(value, int) else 0


class Threads:
    """LangGraph threads as threadline sessions of one store (the saver's async core)."""

    def __init__(
        self, store: Store, codec: MessageCodec, *, tenant_id: str, user_id: str | None
    ) -> None:
        self.store = store
        self.codec = codec
        self.tenant_id = tenant_id
        self.user_id = user_id
        self._generations: dict[tuple[str, str], int] = {}
        self._lengths: dict[str, int] = {}  # record id -> history length (written or read)
        self._anchors: dict[str, str] = {}  # record id -> the record its run's deltas use
        self._depths: dict[str, int] = {}  # record id -> links from its snapshot (predicted)
        self._writes_next: dict[str, int] = {}  # record id -> its next write record's n
        self._refs: OrderedDict[str, Refs] = OrderedDict()  # the messages of records written
        self._latest: dict[tuple[str, str, str], str] = {}  # (tenant, session, ns) -> record id
        # Pending writes go into their checkpoint's record where the store can append to it.
        self._append_state = _state_appender(store)
        self._putting: dict[str, asyncio.Event] = {}  # record id -> set once its put ended
        self._unfolded: set[str] = set()  # record ids given write records before their put

    # -- addressing -----------------------------------------------------------------------

    def _ids(self, config: RunnableConfig) -> tuple[str, str, str | None, str]:
        """Tenant, thread, user and namespace of ``config``."""
        configurable = config.get("configurable") or {}
        thread_id = configurable.get("thread_id")
        if thread_id is None or thread_id == "":
            raise ValidationError("a LangGraph config needs configurable['thread_id']")
        tenant_id = configurable.get("tenant_id")
        tenant = check_id(tenant_id, "tenant_id") if tenant_id else self.tenant_id
        user = configurable.get("user_id")
        user_id = self.user_id
        if user is not None:
            try:
                user_id = optional_id(user, "user_id")
            except ValidationError:
                pass  # a user name that is not a UUID stays in the metadata only
        return tenant, str(thread_id), user_id, str(configurable.get("checkpoint_ns") or "")

    async def _where(
        self,
        tenant_id: str,
        thread_id: str,
        ns: str,
        user_id: str | None,
        *,
        create: bool,
        fresh: bool = False,
    ) -> Where | None:
        """The thread's session and generation (created first when ``create``)."""
        sid = session_id_for(tenant_id, thread_id)
        key = (tenant_id, sid)
        generation = None if fresh else self._generations.get(key)
        if generation is None:
            session = await self.store.get_session(tenant_id, sid)
            if session is None:
                if not create:
                    self._generations.pop(key, None)
                    return None
                session = await self.store.create_session(
                    Session(
                        id=sid,
                        tenant_id=tenant_id,
                        user_id=user_id,
                        title=f"LangGraph thread {thread_id}"[:200],
                        metadata={"langgraph": {"thread_id": thread_id, "generation": 0}},
                    )
                )
            generation = self._generations[key] = _generation(session)
        return Where(
            tenant_id=tenant_id,
            thread_id=thread_id,
            session_id=sid,
            generation=generation,
            checkpoint_ns=ns,
            user_id=user_id,
        )

    # -- put ------------------------------------------------------------------------------

    async def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata
    ) -> RunnableConfig:
        tenant, thread_id, user_id, ns = self._ids(config)
        parent = config["configurable"].get("checkpoint_id")
        stored = stored_values(checkpoint)
        for attempt in range(3):
            where = await self._where(
                tenant, thread_id, ns, user_id, create=True, fresh=attempt > 0
            )
            assert where is not None
            record_id = checkpoint_record_id(
                where.session_id, where.generation, ns, checkpoint["id"]
            )
            parent_record = None
            if parent and attempt < 2:
                parent_record = checkpoint_record_id(where.session_id, where.generation, ns, parent)
            base = parent_record
            if attempt == 0 and parent_record is not None and metadata.get("source") != "input":
                values, channel = stored
                length = len(values[channel]) if channel is not None else 0
                base = self._anchor_for(parent_record, length)
            record, refs = checkpoint_record(
                self.codec, where, record_id=record_id, checkpoint=checkpoint,
                metadata=metadata, parent_checkpoint_id=parent, parent_record_id=base,
                folded=self._append_state is not None and record_id not in self._unfolded,
                stored=stored,
            )  # fmt: skip
            # Known before the store call returns: LangGraph may send the pending writes on
            # this checkpoint meanwhile (its puts run in the background), and they refer to
            # the messages the record holds instead of storing them again.
            self._keep_refs(record.id, refs)
            self._writes_next.setdefault(record.id, 0)  # a new id: no write record on it yet
            putting = self._putting[record.id] = asyncio.Event()  # kept: a put_writes waits
            try:
                await self.store.create_checkpoint(record)
                break
            except ConflictError:
                # Put again after its writes went into its record: the record is stored.
                if not await self._stored_with_writes(tenant, record):
                    raise
                break
            except NotFoundError:
                # The session went (deleted elsewhere), the generation moved on, or the
                # parent is not stored: look again; last, store it without a delta base.
                if attempt == 2:
                    raise
            finally:
                putting.set()
                if len(self._putting) > _REFS_LIMIT:  # keep the recent ones and those under way
                    done = [k for k, v in self._putting.items() if v.is_set()]
                    for k in done[: len(done) // 2]:
                        del self._putting[k]
        self._remember(record, base, refs)
        self._latest[(tenant, record.session_id, ns)] = record.id
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                 "checkpoint_id": checkpoint["id"]}}  # fmt: skip

    async def _stored_with_writes(self, tenant_id: str, record: Record) -> bool:
        """Whether ``record`` is stored as it is but for the pending writes appended since."""
        if FOLDED not in record.state:
            return False
        stored = await self.store.get_checkpoint(tenant_id, record.id)
        if stored is None or stored.session_id != record.session_id:
            return False
        state = {**stored.state, FOLDED: []}
        return state == record.state and stored.properties == record.properties

    def _anchor_for(self, parent_record: str, length: int) -> str:
        """The record a new checkpoint's history is a delta on: its parent's anchor while
        the run added at most ``ANCHOR_SPAN`` messages since it, else the parent."""
        anchor = self._anchors.get(parent_record)
        if anchor is not None:
            known = self._lengths.get(anchor)
            if known is not None and 0 <= length - known <= ANCHOR_SPAN:
                return anchor
        return parent_record

    def _keep_refs(self, record_id: str, refs: Refs) -> None:
        self._refs[record_id] = refs
        self._refs.move_to_end(record_id)
        while len(self._refs) > _REFS_LIMIT:
            self._refs.popitem(last=False)

    def _remember(self, record: Record, base: str | None, refs: Refs | None) -> None:
        """Note a record written (``base``: its delta base) or read (``base`` ``None``)."""
        if len(self._lengths) > _CACHE_LIMIT:
            self._latest.clear()
            self._putting = {k: v for k, v in self._putting.items() if not v.is_set()}
            self._unfolded.clear()
            self._writes_next.clear()
            self._lengths.clear()
            self._anchors.clear()
            self._depths.clear()
        length = len(record.history)
        self._lengths[record.id] = length
        if base is not None or refs is not None:
            # Just created here: no write record can exist on it yet (its id is new), so
            # put_writes need not look; a writer elsewhere is told apart by a conflict.
            self._writes_next[record.id] = 0
        if refs is not None:
            self._keep_refs(record.id, refs)
        if base is None:
            if refs is not None:  # written without a base: a snapshot
                self._depths[record.id] = 0
                self._anchors[record.id] = record.id
            return
        # Predict the store's choice (storekit.delta): a snapshot when the base is a chain's
        # last link or shares no message; a snapshot anchors the rest of its run itself.
        base_depth = self._depths.get(base)
        if base_depth is None:
            self._anchors[record.id] = base
            return
        keep = min(length, self._lengths.get(base, 0))
        depth = 0 if keep == 0 or base_depth + 1 >= SNAPSHOT_EVERY else base_depth + 1
        self._depths[record.id] = depth
        self._anchors[record.id] = record.id if depth == 0 else base

    async def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        tenant, thread_id, user_id, ns = self._ids(config)
        checkpoint_id = config["configurable"].get("checkpoint_id")
        if not checkpoint_id:
            raise ValidationError("put_writes needs configurable['checkpoint_id']")
        where = await self._where(tenant, thread_id, ns, user_id, create=True)
        assert where is not None
        record_id = checkpoint_record_id(where.session_id, where.generation, ns, checkpoint_id)
        refs = self._refs.get(record_id)
        if self._append_state is not None and await self._fold(
            tenant, record_id, writes_state(self.codec, writes, task_id, task_path, refs)
        ):
            return
        # Before the checkpoint's put (LangGraph puts in the background), on a record made
        # without the list, or on a store that cannot append: write records. A put of this
        # id here afterwards makes its record without the list, so its readers look for them.
        self._unfolded.add(record_id)
        n = self._writes_next.get(record_id)
        if n is None:
            n = len(await self._writes(tenant, record_id))
        for _ in range(100):
            record = writes_record(
                self.codec, where, record_id=record_id, checkpoint_id=checkpoint_id, n=n,
                writes=writes, task_id=task_id, task_path=task_path,
                refs=refs,
            )  # fmt: skip
            try:
                await self.store.create_checkpoint(record)
                self._writes_next[record_id] = n + 1
                return
            except ConflictError:
                n += 1  # another writer took record n
        raise ConflictError(f"pending writes on checkpoint {checkpoint_id}: too many writers")

    async def _fold(self, tenant_id: str, record_id: str, item: dict[str, Any]) -> bool:
        """Append one ``put_writes`` call to its checkpoint's record: after the put of it
        this saver has under way, if any (``False``: the record is not stored, or was made
        without the list)."""
        assert self._append_state is not None
        for _ in range(2):
            putting = self._putting.get(record_id)
            if putting is not None:
                await putting.wait()
            if await self._append_state(tenant_id, record_id, FOLDED, item):
                return True
            if putting is not None or record_id not in self._putting:
                return False
        return False

    async def _writes(self, tenant_id: str, record_id: str) -> list[Record]:
        """The write records on a checkpoint record, in ``n`` order (indexed reads)."""
        found: list[Record] = []
        while True:
            record = await self.store.get_checkpoint(
                tenant_id, writes_record_id(record_id, len(found))
            )
            if record is None:
                return found
            found.append(record)

    # -- get ------------------------------------------------------------------------------

    async def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        tenant, thread_id, user_id, ns = self._ids(config)
        checkpoint_id = config["configurable"].get("checkpoint_id")
        for attempt in range(2):
            where = await self._where(tenant, thread_id, ns, user_id, create=False,
                                      fresh=attempt > 0)  # fmt: skip
            if where is None:
                return None
            record: Record | None
            # The checkpoint's writes are read together with it (one wait, not two) when
            # its record id is known: named, or the latest this saver wrote or read.
            latest_key = (tenant, where.session_id, ns)
            guess: str | None
            if checkpoint_id:
                guess = checkpoint_record_id(where.session_id, where.generation, ns, checkpoint_id)
                read = self.store.get_checkpoint(tenant, guess)
            else:
                guess = self._latest.get(latest_key)
                read = self.store.get_latest_checkpoint(
                    tenant, where.session_id, agent_id=namespace_agent_id(where.session_id, ns)
                )
            writes: list[Record] | None = None
            if guess is not None and self._append_state is None:
                record, writes = await asyncio.gather(read, self._writes(tenant, guess))
                if record is None or record.id != guess:
                    writes = None
            else:
                record = await read
            if (
                not checkpoint_id
                and record is not None
                and lg(record).get("gen") != where.generation
            ):
                if attempt == 0:
                    continue
                record = self._newest(
                    await self._records(tenant, where.session_id), where.generation, ns
                )
            if record is not None and lg(record).get("kind") == CHECKPOINT:
                self._remember(record, None, None)
                if not checkpoint_id:
                    self._latest[latest_key] = record.id
                if writes is None:
                    # A record made with its writes list holds them all (nothing to read).
                    folded = FOLDED in record.state
                    writes = [] if folded else await self._writes(tenant, record.id)
                return tuple_of(self.codec, record, writes, thread_id)
            if attempt == 0 and self._generations.get((tenant, where.session_id)) is not None:
                continue  # the generation may have moved on in another process
            return None
        return None

    def _newest(self, records: list[Record], generation: int, ns: str) -> Record | None:
        mine = [r for r in records if _is_checkpoint(r, generation, ns)]
        return max(mine, key=lambda r: lg(r)["id"], default=None)

    async def _records(self, tenant_id: str, session_id: str) -> list[Record]:
        return await self.store.list_checkpoints(tenant_id, session_id=session_id)

    # -- list -----------------------------------------------------------------------------

    async def list_tuples(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        if config is not None:
            tenant, thread_id, _user, _ns = self._ids(config)
            configurable = config.get("configurable") or {}
            ns: str | None = configurable.get("checkpoint_ns")
            only_id = configurable.get("checkpoint_id")
            session = await self.store.get_session(tenant, session_id_for(tenant, thread_id))
            sessions = [session] if session is not None else []
        else:
            tenant, ns, only_id = self.tenant_id, None, None
            sessions = await self._langgraph_sessions(tenant)
        before_id = (before or {}).get("configurable", {}).get("checkpoint_id")
        out: list[CheckpointTuple] = []
        for session in sessions:
            records = await self._records(tenant, session.id)
            generation = _generation(session)
            writes = _writes_by_checkpoint(records, generation)
            chosen = [
                r for r in records
                if _is_checkpoint(r, generation, ns)
                and (only_id is None or lg(r)["id"] == only_id)
                and (before_id is None or lg(r)["id"] < before_id)
            ]  # fmt: skip
            chosen.sort(key=lambda r: lg(r)["id"], reverse=True)
            for record in chosen:
                if filter and not _matches(metadata_of(self.codec, record), filter):
                    continue
                thread = _thread_of(session)
                out.append(tuple_of(self.codec, record, writes.get(record.id, []), thread))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    async def _langgraph_sessions(self, tenant_id: str) -> list[Session]:
        """The tenant's sessions that hold LangGraph threads (read by cursor, then used)."""
        return [
            s
            async for s in self.store.iter_sessions(tenant_id, page=_PAGE)
            if isinstance(s.metadata.get("langgraph"), dict)
        ]

    # -- delete, copy, prune ----------------------------------------------------------------

    async def delete_thread(self, thread_id: str) -> None:
        sid = session_id_for(self.tenant_id, str(thread_id))
        self._generations.pop((self.tenant_id, sid), None)
        await self.store.delete_session(self.tenant_id, sid)

    async def copy_thread(self, source: str, target: str) -> None:
        tenant = self.tenant_id
        session = await self.store.get_session(tenant, session_id_for(tenant, str(source)))
        if session is None:
            return
        records = await self._records(tenant, session.id)
        generation = _generation(session)
        current = [r for r in records if lg(r).get("gen") == generation and lg(r)]
        if not current:
            return
        where = await self._where(tenant, str(target), "", session.user_id, create=True)
        assert where is not None
        await self._append(current, where)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        doomed_runs = {str(r) for r in run_ids}
        if not doomed_runs:
            return
        for session in await self._langgraph_sessions(self.tenant_id):
            records = await self._records(self.tenant_id, session.id)
            generation = _generation(session)
            checkpoints = [r for r in records if _is_checkpoint(r, generation, None)]
            keep = {r.id for r in checkpoints if lg(r).get("run_id") not in doomed_runs}
            if len(keep) < len(checkpoints):
                await self._rebuild(session, records, keep)

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValidationError(
                f"prune strategy must be 'keep_latest' or 'delete', got {strategy!r}"
            )
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.delete_thread(thread_id)
                continue
            sid = session_id_for(self.tenant_id, str(thread_id))
            session = await self.store.get_session(self.tenant_id, sid)
            if session is None:
                continue
            records = await self._records(self.tenant_id, sid)
            generation = _generation(session)
            newest: dict[str, Record] = {}
            for r in records:
                if _is_checkpoint(r, generation, None):
                    ns = lg(r)["ns"]
                    if ns not in newest or lg(r)["id"] > lg(newest[ns])["id"]:
                        newest[ns] = r
            keep = {r.id for r in newest.values()}
            if any(r.id not in keep and not _is_writes_of(r, keep) for r in records):
                await self._rebuild(session, records, keep)

    async def _rebuild(self, session: Session, records: list[Record], keep: set[str]) -> None:
        """Keep only the checkpoints ``keep`` (record ids) and their writes (see the module)."""
        tenant = session.tenant_id
        generation = _generation(session)
        self._generations.pop((tenant, session.id), None)
        survivors = [
            r for r in records
            if lg(r).get("gen") == generation and (r.id in keep or _is_writes_of(r, keep))
        ]  # fmt: skip
        if not survivors:
            await self.store.delete_session(tenant, session.id)
            return
        newest = max([generation, *(lg(r).get("gen", 0) for r in records)])
        info = session.metadata.get("langgraph") or {}
        where = Where(
            tenant_id=tenant, thread_id=_thread_of(session),
            session_id=session.id, generation=newest + 1, checkpoint_ns="",
            user_id=session.user_id,
        )  # fmt: skip
        created = await self._append(survivors, where)
        metadata = {**session.metadata, "langgraph": {**info, "generation": newest + 1}}
        await self.store.update_session(attrs.evolve(session, metadata=metadata))
        await self.store.prune_checkpoints(tenant, session.id, keep=created)

    async def _append(self, records: list[Record], where: Where) -> int:
        """Append copies of ``records`` (checkpoints and their writes, version order) to the
        thread ``where`` names; return how many records were written."""
        new_ids: dict[str, str] = {}
        messages: dict[str, Message] = {}
        created = 0
        for r in records:
            info = lg(r)
            ns = info["ns"]
            new_id = checkpoint_record_id(where.session_id, where.generation, ns, info["id"])
            if info.get("kind") == CHECKPOINT:
                new_ids[r.id] = new_id
                history = tuple(_rehome(m, where.session_id, messages) for m in r.history)
                copy = attrs.evolve(
                    r, id=new_id, session_id=where.session_id, version=None,
                    agent_id=namespace_agent_id(where.session_id, ns),
                    parent_id=new_ids.get(r.parent_id or ""), history=history,
                    properties=_moved(r, where.generation),
                )  # fmt: skip
            elif info.get("kind") == WRITES and _owner(r) in new_ids:
                copy = attrs.evolve(
                    r, id=writes_record_id(new_id, info["n"]), session_id=where.session_id,
                    version=None, properties=_moved(r, where.generation),
                )  # fmt: skip
            else:
                continue
            await self.store.create_checkpoint(copy)
            created += 1
        return created


def _rehome(m: Message, session_id: str, seen: dict[str, Message]) -> Message:
    """``m`` in session ``session_id`` (one object per message id, so copies stay deltas)."""
    if m.session_id == session_id:
        return m
    moved = seen.get(m.id)
    if moved is None:
        moved = seen[m.id] = attrs.evolve(m, session_id=session_id)
    return moved


def _moved(record: Record, generation: int) -> dict[str, Any]:
    return {**record.properties, "langgraph": compact_info({**lg(record), "gen": generation})}


def _thread_of(session: Session) -> str:
    """The LangGraph thread id a session holds (its own id for a session made elsewhere)."""
    info = session.metadata.get("langgraph")
    thread = info.get("thread_id") if isinstance(info, dict) else None
    return str(thread) if thread is not None else session.id


def _owner(record: Record) -> str:
    """The id of the checkpoint record a pending-writes record belongs to."""
    info = lg(record)
    return checkpoint_record_id(record.session_id, info["gen"], info["ns"], info["id"])


def _is_checkpoint(record: Record, generation: int, ns: str | None) -> bool:
    info = lg(record)
    return (
        info.get("kind") == CHECKPOINT
        and info.get("gen") == generation
        and (ns is None or info.get("ns") == ns)
    )


def _is_writes_of(record: Record, keep: set[str]) -> bool:
    return lg(record).get("kind") == WRITES and _owner(record) in keep


def _writes_by_checkpoint(records: list[Record], generation: int) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        info = lg(r)
        if info.get("kind") == WRITES and info.get("gen") == generation:
            out.setdefault(_owner(r), []).append(r)
    for group in out.values():
        group.sort(key=lambda r: lg(r)["n"])
    return out


def _matches(metadata: CheckpointMetadata, wanted: dict[str, Any]) -> bool:
    return all(metadata.get(k) == v for k, v in wanted.items())
