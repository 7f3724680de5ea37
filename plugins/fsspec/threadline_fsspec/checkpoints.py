"""Checkpoint records on files: one file per version, the record hooks of the required tier.

The core's checkpoint log (:mod:`threadline.storekit.log`) encodes histories, keeps the
history cache and plans pruning and erasure; this module keeps the records. A file
``checkpoints/<version>.json`` holds ``{"checkpoint": <fields but the history>,
"history": <the record of threadline.storekit.delta>, "base": <the version the delta
builds on, null for a snapshot>, "depth": n, "tag": t}``. fsspec has no transactions;
the order of writes keeps each operation crash-safe:

* ``insert_checkpoint_record``: the activity in ``head.json``, then the id index
  entry, then the exclusive create of the next version's file (a loser of a race takes
  the next number). A crash leaves at most an index pointing at nothing: absent.
* ``rewrite_checkpoint_records``: rewritten files first, **newest version first**, each
  replaced atomically with its new record and tag: a delta is rewritten before its
  base, and the erase plan names the ``user_id`` of a rewritten delta's first message,
  so every record reads the same whether or not its base is rewritten yet. Pruning's
  rewrites (kept deltas become snapshots) are complete before any file goes. Then the
  deleted files, each before its id index. A crash part way leaves every checkpoint
  readable, and what still holds an erased user's messages for a second run.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from threadline.errors import NotFoundError, StoreError, ValidationError
from threadline.models import Checkpoint, trusted
from threadline.storekit.records import (
    CheckpointRecord,
    RecordRewrite,
    StaleRecordError,
    ancestor,
    id_conflict,
)
from threadline_fsspec import layout
from threadline_fsspec.files import StoreFiles
from threadline_fsspec.records import decode, encode, parse_time

__all__ = ["CheckpointFiles"]

_record_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_header = json.JSONDecoder().raw_decode
_START, _HISTORY, _BASE = '{"checkpoint":', ',"history":', ',"base":'


def _checkpoint(header: dict[str, Any]) -> Checkpoint:
    """The checkpoint (history empty) of a file's header, written from a valid one."""
    return trusted(Checkpoint, **{**header, "history": (),
                                  "created_at": parse_time(header["created_at"])})  # fmt: skip


_TAIL = re.compile(r',"base":(null|[0-9]+),"depth":([0-9]+),"tag":([0-9]+)\}')


def _parse(data: bytes, where: str, full: bool = True) -> tuple[CheckpointRecord, int | None]:
    """A checkpoint file: its record and its base. The history record is cut out of the text
    as it is (the core decodes it): the file's fields are written in the order checkpoint,
    history, base, depth, tag, and only numbers follow the last ``,"base":``. Without
    ``full``, a chain's ancestor: only its ids, record, depth and tag are real."""
    text = data.decode()
    if text.startswith(_START):
        header, end = _header(text, len(_START))
        cut = text.rfind(_BASE)
        tail = _TAIL.fullmatch(text, cut) if cut > end else None
        if tail is not None and text.startswith(_HISTORY, end):
            base, depth, tag = tail.groups()
            history = text[end + len(_HISTORY) : cut]
            if full:
                record = CheckpointRecord(_checkpoint(header), history, int(depth), int(tag))
            else:
                record = ancestor(header["id"], header["parent_id"], header["tenant_id"],
                                  header["session_id"], history, int(depth), int(tag))  # fmt: skip
            return record, (None if base == "null" else int(base))
    doc = decode(data, where)  # the same fields in another order
    header, history = doc["checkpoint"], _record_text(doc["history"])
    return CheckpointRecord(_checkpoint(header), history, doc["depth"], doc["tag"]), doc["base"]


class CheckpointFiles(StoreFiles):
    """The checkpoint record hooks of :class:`threadline_fsspec.store.FsspecStore`."""

    def _checkpoint_doc(self, sd: str, version: int) -> dict[str, Any] | None:
        doc = self._json(layout.checkpoint_file(sd, version))
        return doc if isinstance(doc, dict) else None

    def _read(self, sd: str, version: int) -> tuple[CheckpointRecord, int | None] | None:
        """The record of version ``version`` and the version it builds on."""
        path = layout.checkpoint_file(sd, version)
        data = self.backend.read(path)
        return None if data is None else _parse(data, path)

    def _locate(self, checkpoint_id: str) -> tuple[str, int, CheckpointRecord, int | None] | None:
        """(session folder, version, record, base) of a checkpoint, if index and file agree."""
        located = self._entry("checkpoints", checkpoint_id)
        if located is None:
            return None
        sd, entry = located
        try:
            version = int(entry["version"])
        except (KeyError, TypeError, ValueError):
            return None
        found = self._read(sd, version)
        if found is None or found[0].id != checkpoint_id:
            return None
        return sd, version, *found

    def insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        c = record.checkpoint
        sd = self._require_session(c.tenant_id, c.session_id)
        header = attrs.asdict(c, recurse=False)
        del header["history"]
        header["created_at"] = c.created_at.isoformat()
        history = json.loads(record.record)
        encode(header, "checkpoint")  # refuse unserialisable input/state before writing
        with self._locked(sd, f"session {c.session_id} not found for this tenant"):
            self._require_session(c.tenant_id, c.session_id)
            located = self._locate(c.id)
            if located is not None:
                if located[0] != sd:
                    raise id_conflict("checkpoint", c.id)
                return located[2]
            base = None
            if c.parent_id is not None:
                parent = self._locate(c.parent_id)
                if parent is None or parent[0] != sd:
                    raise NotFoundError(
                        f"parent checkpoint {c.parent_id} not found in this session"
                    )
                if parent_tag is not None and parent[2].tag != parent_tag:
                    raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten meanwhile")
                base = parent[1] if record.depth else None
            self._touch(sd)  # a graph's progress is the session's activity
            while True:
                version = max(self._numbers(layout.checkpoints_dir(sd)), default=0) + 1
                header["version"] = version
                doc = {"checkpoint": header, "history": history, "base": base,
                       "depth": record.depth, "tag": record.tag}  # fmt: skip
                data = encode(doc, "checkpoint")
                index = {"tenant_id": c.tenant_id, "session_id": c.session_id, "version": version}
                self.backend.write(layout.id_file("checkpoints", c.id), encode(index, "index"))
                if self.backend.create(layout.checkpoint_file(sd, version), data):
                    break
        stored = decode(encode(header, "checkpoint"), "checkpoint")
        return attrs.evolve(record, checkpoint=_checkpoint(stored))

    def read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        located = self._locate(checkpoint_id)
        if located is None or located[2].checkpoint.tenant_id != tenant_id:
            return []
        sd, _, record, base = located
        return self._chain(sd, record, base, chain)

    def _chain(
        self, sd: str, record: CheckpointRecord, base: int | None, chain: bool = True
    ) -> list[CheckpointRecord]:
        """``record`` and, with ``chain``, the records it builds on back to a snapshot."""
        out = [record]
        read = self.backend.reader(layout.checkpoints_dir(sd)) if record.depth else None
        while chain and record.depth and read is not None:
            name = layout.numbered(base or 0)
            data = read(name)
            if data is None:
                raise StoreError(f"checkpoint {base} of {sd} is missing; the store is damaged")
            record, base = _parse(data, name, full=False)
            out.append(record)
        return out

    def _session_records(
        self, sd: str, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        versions = self._numbers(layout.checkpoints_dir(sd))
        out = []
        for version in reversed(versions) if latest else versions:
            found = self._read(sd, version)
            if found is not None and agent_id in (None, found[0].checkpoint.agent_id):
                out.append(found[0])
                if latest:
                    break
        return out

    def list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        if session_id is not None:
            sd = layout.session_dir(tenant_id, session_id)
            if self._session_doc(sd) is None:
                return []
            if latest:  # a restore: the newest record, then its chain
                for version in reversed(self._numbers(layout.checkpoints_dir(sd))):
                    found = self._read(sd, version)
                    if found is not None and agent_id in (None, found[0].checkpoint.agent_id):
                        return self._chain(sd, *found)
                return []
            return self._session_records(sd, agent_id, latest)
        sessions = []
        for name in self.backend.listdir(layout.sessions_dir(tenant_id)):
            try:
                sd = layout.session_dir(tenant_id, name)
            except ValidationError:
                continue  # not a session folder
            doc = self._session_doc(sd)
            if doc is not None:
                sessions.append((parse_time(doc["created_at"]), name, sd))
        records = [
            r for *_, sd in sorted(sessions) for r in self._session_records(sd, agent_id, False)
        ]
        return records[-1:] if latest else records

    def rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        plan: RecordRewrite,
    ) -> int:
        sd = self._require_session(tenant_id, session_id)
        changed = 0
        with self._locked(sd, f"session {session_id} not found for this tenant"):
            self._require_session(tenant_id, session_id)
            tags = {r.id: r.tag for r in self._session_records(sd, None, False)}
            plan.check(tags, session_id)  # written, rewritten or deleted since the plan
            for r in sorted(plan.records, key=lambda r: r.checkpoint.version or 0, reverse=True):
                version = r.checkpoint.version or 0
                doc = self._checkpoint_doc(sd, version)
                if doc is None or doc["checkpoint"].get("id") != r.id:
                    continue
                doc = {**doc, "history": json.loads(r.record), "depth": r.depth, "tag": r.tag,
                       "base": doc["base"] if r.depth else None}  # fmt: skip
                self.backend.write(layout.checkpoint_file(sd, version), encode(doc, "checkpoint"))
                changed += 1
            for checkpoint_id in plan.delete_ids:
                located = self._locate(checkpoint_id)
                if located is None or located[0] != sd:
                    continue
                self.backend.delete(layout.checkpoint_file(sd, located[1]))
                self._drop_index("checkpoints", checkpoint_id, tenant_id, session_id)
                changed += 1
        return changed
