"""Idempotent writes into a destination that may already hold the rows (copy and import).

Each ``put_*`` writes a row the destination lacks, checks one it holds (different data
under the same id is a :class:`~threadline.errors.ConflictError`, never a merge) and
reports whether it wrote. :class:`MessageWriter` resumes a session's messages after the
destination's last ``seq``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from threadline.errors import ConflictError, StoreError, ValidationError
from threadline.models import AgentConfig, ApiCall, Checkpoint, Message, ProviderRecord, Session
from threadline.store import Store

__all__ = [
    "MessageWriter",
    "after_bulk_load",
    "put_agent",
    "put_api_calls",
    "put_checkpoint",
    "put_provider",
    "put_session",
    "put_updated_at",
]


async def after_bulk_load(dst: Store) -> None:
    """Let each store of ``dst`` that has an ``after_bulk_load()`` coroutine method refresh
    what a bulk write made stale (PostgreSQL: ``ANALYZE`` of the tables it filled)."""
    for plugin in dst.plugins:
        refresh = getattr(plugin, "after_bulk_load", None)
        if callable(refresh):
            await refresh()


def _differs(what: str, a: object, b: object) -> str:
    return f"{what}: destination has {a!r}, source has {b!r}"


async def put_session(dst: Store, session: Session) -> bool:
    """Create ``session`` in ``dst`` or check the one there; True when it was created."""
    existing = await dst.get_session(session.tenant_id, session.id)
    if existing is None:
        await dst.create_session(session)
        return True
    for name in ("user_id", "agent_id", "created_at"):
        if getattr(existing, name) != getattr(session, name):
            raise ConflictError(
                f"session {session.id} exists in the destination with another "
                + _differs(name, getattr(existing, name), getattr(session, name))
            )
    if existing.title != session.title or existing.metadata != session.metadata:
        await dst.update_session(
            attrs.evolve(existing, title=session.title, metadata=session.metadata)
        )
    return False


async def put_updated_at(dst: Store, session: Session) -> None:
    """Give the destination's copy of ``session`` the source's ``updated_at`` (set last:
    appending the session's rows moved it)."""
    stored = await dst.set_session_updated_at(session.tenant_id, session.id, session.updated_at)
    if stored.updated_at != session.updated_at:
        raise StoreError(
            f"session {session.id}: the destination stored updated_at {stored.updated_at} "
            f"for {session.updated_at} (the store plugin does not keep it exactly)"
        )


async def put_provider(
    dst: Store, provider: ProviderRecord, have: dict[str, ProviderRecord]
) -> bool:
    """Save ``provider`` unless ``have`` (the destination's, by id) holds an equal one.

    True when it was written; ``have`` is updated.
    """
    if have.get(provider.id) == provider:
        return False
    have[provider.id] = await dst.save_provider(provider)
    return True


async def put_agent(dst: Store, config: AgentConfig) -> bool:
    """Save ``config`` unless ``dst`` holds an equal one; True when it was written."""
    have = await dst.load_agent_config(tenant_id=config.agent.tenant_id, agent_id=config.agent.id)
    if have == config:
        return False
    await dst.save_agent_config(config)
    return True


_MUTABLE = ("content", "status", "name", "metadata", "tool_calls")
_FIXED = ("role", "tool_call_id", "user_id", "agent_id", "created_at")


class MessageWriter:
    """Appends one session's messages to a destination that may hold a prefix of them.

    Messages must arrive in ``seq`` order from 1. Those at or below the destination's
    count are compared with what it holds (same id, role, ...: else ConflictError; a
    later edit of content or status is applied with ``update_message``); the rest are
    appended with ``save_messages`` and must get the very same ``seq``.
    """

    def __init__(self, dst: Store, session: Session, existing: int) -> None:
        self.dst = dst
        self.tenant_id = session.tenant_id
        self.session_id = session.id
        self.existing = existing
        self.next_seq = 1
        self.written = 0
        self.updated = 0

    async def write(self, batch: Sequence[Message]) -> None:
        """Check the part of ``batch`` the destination holds, append the rest."""
        start = self.next_seq
        for offset, m in enumerate(batch):
            if m.session_id != self.session_id or m.tenant_id != self.tenant_id:
                raise ValidationError(
                    f"message {m.id} does not belong to session {self.session_id}"
                )
            if m.seq != start + offset:
                raise ValidationError(
                    f"session {self.session_id}: message {m.id} has seq {m.seq}, "
                    f"expected {start + offset} (messages must be complete and in order)"
                )
        overlap = max(0, min(len(batch), self.existing - start + 1))
        if overlap:
            await self._check(batch[:overlap], start)
        rest = list(batch[overlap:])
        if rest:
            saved = await self.dst.save_messages(rest)
            for want, got in zip(rest, saved):
                if got.id != want.id or got.seq != want.seq:
                    raise ConflictError(
                        f"session {self.session_id}: the destination stored message {want.id} "
                        f"at seq {got.seq}, the source has it at seq {want.seq} (is something "
                        "else writing to this session?)"
                    )
            self.written += len(rest)
        self.next_seq = start + len(batch)

    async def _check(self, wanted: Sequence[Message], start: int) -> None:
        have = await self.dst.get_messages(
            self.tenant_id, self.session_id, after_seq=start - 1, limit=len(wanted)
        )
        if len(have) != len(wanted):
            raise ConflictError(
                f"session {self.session_id}: the destination's messages changed while copying"
            )
        for want, got in zip(wanted, have):
            if got.id != want.id:
                raise ConflictError(
                    f"session {self.session_id} differs in the destination: message seq "
                    f"{want.seq} is {got.id} there and {want.id} in the source (delete the "
                    "destination session to copy it again)"
                )
            for name in _FIXED:
                if getattr(got, name) != getattr(want, name):
                    raise ConflictError(
                        f"session {self.session_id}, message {want.id} (seq {want.seq}) "
                        + _differs(name, getattr(got, name), getattr(want, name))
                    )
            if any(getattr(got, name) != getattr(want, name) for name in _MUTABLE):
                await self.dst.update_message(want)
                self.updated += 1

    def finish(self) -> None:
        """Raise ConflictError if the destination holds more messages than were written."""
        if self.existing >= self.next_seq:
            raise ConflictError(
                f"session {self.session_id}: the destination holds {self.existing} messages, "
                f"the source {self.next_seq - 1}"
            )


async def put_api_calls(dst: Store, calls: Sequence[ApiCall]) -> None:
    """Save ``calls`` (those the destination lacks) in their order."""
    # One at a time: some stores list API calls in the order they were written.
    for call in calls:
        await dst.save_api_call(call)


async def put_checkpoint(dst: Store, checkpoint: Checkpoint) -> None:
    """Create ``checkpoint``; ConflictError when the destination gives it another version."""
    got = await dst.create_checkpoint(checkpoint)
    if checkpoint.version is not None and got.version != checkpoint.version:
        raise ConflictError(
            f"session {checkpoint.session_id}: checkpoint {checkpoint.id} got version "
            f"{got.version} in the destination, {checkpoint.version} in the source"
        )
