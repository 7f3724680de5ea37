"""Helpers shared by the conformance groups."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from threadline.ids import new_id
from threadline.models import Message, Session, ToolCall
from threadline.store import Store, connect


class Conversation:
    """A tenant's session on a store, with shorthands to append messages."""

    def __init__(self, store: Store, session: Session) -> None:
        self.store = store
        self.session = session

    @property
    def tenant_id(self) -> str:
        return self.session.tenant_id

    @property
    def id(self) -> str:
        return self.session.id

    def message(self, role: str, content: str = "", **fields: Any) -> Message:
        return Message(
            session_id=self.session.id,
            tenant_id=self.session.tenant_id,
            user_id=self.session.user_id,
            role=role,  # type: ignore[arg-type]
            content=content,
            **fields,
        )

    async def add(self, role: str, content: str = "", **fields: Any) -> Message:
        return await self.store.save_message(self.message(role, content, **fields))

    async def add_round(self, n: int, *, tool: bool = False) -> list[Message]:
        """A user turn, optionally an assistant tool call with its result, then a reply."""
        out = [await self.add("user", f"question {n}")]
        if tool:
            call = ToolCall(id=f"call-{n}-{new_id()[-6:]}", name="lookup", arguments={"n": n})
            out.append(await self.add("assistant", "", tool_calls=[call]))
            out.append(await self.add("tool", f"result {n}", tool_call_id=call.id, name="lookup"))
        out.append(await self.add("assistant", f"answer {n}"))
        return out

    async def messages(self) -> list[Message]:
        return await self.store.get_messages(self.tenant_id, self.id)


async def new_conversation(
    store: Store, tenant_id: str | None = None, user_id: str | None = None, **fields: Any
) -> Conversation:
    session = Session(tenant_id=tenant_id or new_id(), user_id=user_id or new_id(), **fields)
    return Conversation(store, await store.create_session(session))


def without_seq(message: Message) -> Message:
    return attrs.evolve(message, seq=None)


Reopen = Callable[[Store], Awaitable[Store]]
"""The ``reopen`` fixture: close the given store and open the same one again."""


def optional_fixture(request: pytest.FixtureRequest, name: str, why: str) -> Any:
    """The value of the fixture ``name``, or skip the test: a store without it has no ``why``."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"no `{name}` fixture: {why}")


async def measured(value: int | Awaitable[int]) -> int:
    """A fixture callable's answer, whether it is sync or async."""
    if inspect.isawaitable(value):
        return int(await value)
    return int(value)


async def reopen_by_url(store: Store) -> Store:
    """Close ``store`` and connect to its URL again: a ``reopen`` fixture for a store whose
    URL names where its data lives (a file, a schema, a folder)."""
    if store.url is None:
        raise ValueError("reopen_by_url needs a store opened with threadline.connect(url)")
    await store.close()
    return await connect(store.url)
