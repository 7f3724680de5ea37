"""The store contract on files: a local directory or any fsspec file system.

The store implements the required tier of the contract, the API-call and config
groups and the lifecycle hooks; the core (:mod:`threadline.storekit`) does the rest
(checkpoint histories, pruning, erasure, session edits) over them. Four derived hooks
are kept where the files answer them with fewer reads (``count_messages``,
``load_window``, ``update_message``, ``interrupt_streaming``: see
:mod:`threadline_fsspec.messages`) and one for atomicity (``delete_sessions_before``).
The store's parts: :mod:`~threadline_fsspec.files` (threads, JSON files, locks),
:mod:`~threadline_fsspec.messages`, :mod:`~threadline_fsspec.checkpoints`,
:mod:`~threadline_fsspec.configs`; the layout is in :mod:`threadline_fsspec.layout`.

fsspec has no transactions. What makes it safe without them:

* **Records are the truth, indexes are checked.** A message lives in a *segment*
  file named by the seq of its first message; a checkpoint in a file named by its
  version; an API call in a file named by its insertion number. Files that point at
  records (the global id indexes, ``head.json``, streaming markers) are written
  *before* the record and verified against it when read, so a crash between the two
  leaves a dangling pointer that counts as absent, never a record that cannot be found.
  Deleting goes the other way: the record first, then what points at it.
* **Numbers are claimed exclusively.** A new segment, checkpoint or API call is
  created with an exclusive create of its numbered name; a writer that loses (on an
  object store shared by several processes) reads what won and takes the next
  number. On local disks writers of a session also hold an ``flock``, so seqs stay
  contiguous and batches stay whole.
* **Every file is replaced atomically** (a temporary file renamed over it locally, a
  whole-object PUT on object stores), so a reader never sees half a file.

The order of writes of each operation of this module (for messages and checkpoints
see their modules):

* ``create_session``: the global id claim, then ``session.json`` (under the session's
  lock, after clearing what a deletion cut short left);
* ``replace_session``: ``head.json``'s activity (when it has one), then ``session.json``;
* ``delete_session``: ``session.json`` first (the session is gone for every reader),
  then the id indexes of its records, then its folder, then its id claim;
* ``save_api_call``: the activity, the id index, then the exclusive create of the
  call's file; ``delete_api_calls``: each file, then its index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from threadline.errors import NotFoundError, ValidationError
from threadline.ids import check_id
from threadline.models import MAX_INT, ApiCall, Session
from threadline.queries import SessionQuery
from threadline.storekit.records import id_conflict
from threadline_fsspec import layout
from threadline_fsspec.checkpoints import CheckpointFiles
from threadline_fsspec.configs import ConfigFiles
from threadline_fsspec.messages import MessageFiles
from threadline_fsspec.records import decode, encode

__all__ = ["FsspecStore"]


class FsspecStore(MessageFiles, CheckpointFiles, ConfigFiles):
    """The threadline store contract on a :class:`~threadline_fsspec.backends.Backend`.

    Open one with ``threadline.connect("file:///dir")`` (or ``s3://bucket/prefix``,
    ``fsspec+memory://name``, ...) or, for any fsspec file system object, with
    :meth:`from_filesystem`.
    """

    @classmethod
    def from_filesystem(cls, fs: Any, root: str, *, lock_timeout: float = 30.0) -> FsspecStore:
        """A store on any fsspec file system object, under folder ``root``."""
        from threadline_fsspec.backends import FsspecBackend, LocalBackend

        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        if "file" in protocols or "local" in protocols:
            return cls(LocalBackend(root), lock_timeout=lock_timeout)
        return cls(FsspecBackend(fs, root), lock_timeout=lock_timeout)

    # -- sessions ------------------------------------------------------------------------

    def _session_owner(self, session_id: str) -> str | None:
        """The tenant whose session holds ``session_id`` now (a claim is checked)."""
        claim = self._hint(layout.id_file("sessions", session_id))
        owner = claim.get("tenant_id") if isinstance(claim, dict) else None
        if not isinstance(owner, str):
            return None
        if self._session_doc(layout.session_dir(owner, session_id)) is None:
            return None  # left by a deletion that did not finish
        return owner

    def create_session(self, session: Session) -> Session:
        data = encode(session.to_dict(), "session")
        claim_path = layout.id_file("sessions", session.id)
        claim = encode({"tenant_id": session.tenant_id}, "claim")
        if not self.backend.create(claim_path, claim):
            owner = self._session_owner(session.id)
            if owner is not None and owner != session.tenant_id:
                raise id_conflict("session", session.id)
            self.backend.write(claim_path, claim)
        sd = layout.session_dir(session.tenant_id, session.id)
        with self.backend.lock(f"{sd}/lock", self.lock_timeout, create_parent=True):
            existing = self._session(session.tenant_id, session.id)
            if existing is not None:
                return existing
            for name in self.backend.listdir(sd):  # left by a deletion cut short
                if name.endswith(".json"):
                    self.backend.delete(f"{sd}/{name}")
                elif name != "lock":
                    self.backend.rmtree(f"{sd}/{name}")
            self.backend.write(f"{sd}/session.json", data)
        return Session.from_dict(decode(data, "session"))

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        return self._session(tenant_id, session_id)

    def list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        found = []
        for name in self.backend.listdir(layout.sessions_dir(tenant_id)):
            try:
                layout.safe_id(name, "session_id")
            except ValidationError:
                continue
            session = self._session(tenant_id, name)
            if session is not None:
                found.append(session)
        return query.page(found)

    def replace_session(self, session: Session) -> Session:
        sd = self._require_session(session.tenant_id, session.id)
        missing = f"session {session.id} not found for this tenant"
        with self._locked(sd, missing):
            stored = self._session(session.tenant_id, session.id)
            if stored is None:
                raise NotFoundError(missing)
            changes = {"title": session.title, "metadata": session.metadata,
                       "updated_at": session.updated_at}  # fmt: skip
            data = encode(attrs.evolve(stored, **changes).to_dict(), "session")
            head = self._hint(f"{sd}/head.json")
            if isinstance(head, dict) and "updated_at" in head:  # the later of the two is read
                head = {**head, "updated_at": session.updated_at.isoformat()}
                self.backend.write(f"{sd}/head.json", encode(head, "head"))
            self.backend.write(f"{sd}/session.json", data)
            return Session.from_dict(decode(data, "session"))

    def delete_session(self, tenant_id: str, session_id: str) -> bool:
        return self._delete_session(tenant_id, session_id, None)

    # Override for atomicity: each session is deleted only if still idle under its lock
    # (the default lists, then deletes: a write in between would not keep the session).
    def delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        gone = 0
        for session in self.list_sessions(tenant_id, SessionQuery(user_id, limit=MAX_INT)):
            if session.updated_at < before and (
                dry_run or self._delete_session(tenant_id, session.id, before)
            ):
                gone += 1
        return gone

    def _delete_session(
        self, tenant_id: str, session_id: str, idle_before: datetime | None
    ) -> bool:
        """Delete a session; with ``idle_before``, only if it is still idle under the lock."""
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return False
        try:
            with self._locked(sd, "gone"):
                if self._session_doc(sd) is None:
                    return False
                if idle_before is not None:
                    now = self._session(tenant_id, session_id)
                    if now is None or now.updated_at >= idle_before:
                        return False
                self._delete_locked(sd, tenant_id, session_id)
        except NotFoundError:
            return False
        self._drop_index("sessions", session_id, tenant_id, None)
        return True

    def _delete_locked(self, sd: str, tenant_id: str, session_id: str) -> None:
        self.backend.delete(f"{sd}/session.json")  # gone for every reader; the rest frees space
        for start in self._numbers(f"{sd}/messages"):
            segment = self._segment(sd, start)
            for message in segment.messages if segment else ():
                self._drop_index("messages", message["id"], tenant_id, session_id)
        for n in self._numbers(f"{sd}/api-calls"):
            doc = self._json(f"{sd}/api-calls/{layout.numbered(n)}")
            if isinstance(doc, dict):
                self._drop_index("api-calls", doc["id"], tenant_id, session_id)
        for version in self._numbers(layout.checkpoints_dir(sd)):
            doc = self._checkpoint_doc(sd, version)
            if doc is not None:
                self._drop_index("checkpoints", doc["checkpoint"]["id"], tenant_id, session_id)
        self.backend.rmtree(sd)

    def list_tenants(self) -> list[str]:
        tenants = []
        for name in self.backend.listdir("tenants"):
            try:
                tenant = check_id(name, "tenant_id")
            except ValidationError:
                continue  # not a tenant folder
            if any(
                self.backend.listdir(f"{layout.tenant_dir(tenant)}/{kind}")
                for kind in ("sessions", "agents", "providers")
            ):
                tenants.append(tenant)
        return sorted(tenants)

    # -- API calls -----------------------------------------------------------------------

    def _find_api_call(self, call_id: str) -> tuple[str, ApiCall] | None:
        """(file, call) of an API call, if the index and the file agree."""
        located = self._entry("api-calls", call_id)
        if located is None:
            return None
        sd, entry = located
        try:
            path = f"{sd}/api-calls/{layout.numbered(int(entry['n']))}"
        except (KeyError, TypeError, ValueError):
            return None
        doc = self._json(path)
        if not isinstance(doc, dict) or doc.get("id") != call_id:
            return None
        return path, ApiCall.from_dict(doc)

    def save_api_call(self, api_call: ApiCall) -> ApiCall:
        tenant_id, session_id = api_call.tenant_id, api_call.session_id
        sd = self._require_session(tenant_id, session_id)
        data = encode(api_call.to_dict(), "api call")
        with self._locked(sd, f"session {session_id} not found for this tenant"):
            self._require_session(tenant_id, session_id)
            found = self._find_api_call(api_call.id)
            if found is not None:
                existing = found[1]
                if existing.session_id != session_id or existing.tenant_id != tenant_id:
                    raise id_conflict("api call", api_call.id)
                return existing
            self._touch(sd)
            while True:
                n = max(self._numbers(f"{sd}/api-calls"), default=0) + 1
                index = {"tenant_id": tenant_id, "session_id": session_id, "n": n}
                self.backend.write(layout.id_file("api-calls", api_call.id), encode(index, "index"))
                if self.backend.create(f"{sd}/api-calls/{layout.numbered(n)}", data):
                    break
        return ApiCall.from_dict(decode(data, "api call"))

    def list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return []
        calls = []
        for n in self._numbers(f"{sd}/api-calls"):
            doc = self._json(f"{sd}/api-calls/{layout.numbered(n)}")
            if isinstance(doc, dict):
                calls.append(ApiCall.from_dict(doc))
        return calls

    def delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        gone = 0
        for call_id in api_call_ids:
            found = self._find_api_call(call_id)
            if found is None or found[1].tenant_id != tenant_id:
                continue
            path, call = found
            sd = layout.session_dir(tenant_id, call.session_id)
            try:
                with self._locked(sd, "gone"):
                    self.backend.delete(path)
                    self._drop_index("api-calls", call_id, tenant_id, call.session_id)
            except NotFoundError:
                continue
            gone += 1
        return gone
