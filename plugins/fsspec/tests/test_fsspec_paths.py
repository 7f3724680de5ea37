"""No id or agent code can reach outside the store's root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import threadline
from threadline import AgentConfig, AgentRecord, Message, Session, ValidationError
from threadline.ids import new_id
from threadline.queries import MessageRange, SessionQuery
from threadline_fsspec import layout

HOSTILE_CODES = [
    "../../x",
    "..",
    ".",
    "/etc/passwd",
    "a/b\\c",
    "C:\\Windows",
    "nul\x00byte",
    "Bot",
    "bot",
    "%2E%2E",
    "~" + "0" * 64,
    "é" * 200,  # long: hashed
    " x ",
]


def _outside(tmp_path: Path, root: Path) -> set[Path]:
    return {p for p in tmp_path.rglob("*") if root not in p.parents and p != root}


async def test_hostile_agent_codes_stay_inside_the_root(tmp_path: Path, root: Path) -> None:
    (tmp_path / "x").mkdir()
    before = _outside(tmp_path, root)
    store = await threadline.connect(f"file://{root}")
    tenant = new_id()
    saved = {}
    for code in HOSTILE_CODES:
        config = AgentConfig(agent=AgentRecord(tenant_id=tenant, code=code, name=code))
        saved[code] = await store.save_agent_config(config)
    for code in HOSTILE_CODES:
        assert await store.load_agent_config(tenant_id=tenant, code=code) == saved[code]
    listed = await store.list_agent_configs(tenant)
    assert sorted(c.agent.code for c in listed) == sorted(HOSTILE_CODES)
    await store.close()
    assert _outside(tmp_path, root) == before
    names = [p.name for p in (root / "tenants" / tenant / "agents").iterdir()]
    assert len(names) == len(HOSTILE_CODES)  # Bot and bot apart, even on case-folding disks
    assert len({n.lower() for n in names}) == len(names)
    assert all(not n.startswith(".") and "/" not in n and len(n) < 200 for n in names)


def test_encoded_names_are_safe_and_distinct() -> None:
    encoded = [layout.encode_name(c) for c in HOSTILE_CODES]
    assert len(set(encoded)) == len(HOSTILE_CODES)
    assert layout.encode_name("chat-assistant") == "chat-assistant"
    assert layout.encode_name("../../x") == "%2E%2E%2F%2E%2E%2Fx"
    for name in encoded:
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-%ABCDEF~")
    with pytest.raises(ValidationError):
        layout.encode_name("")


@pytest.mark.parametrize(
    "bad", ["../../etc", "..", "", "not-a-uuid", "ABCDEF00-0000-0000-0000-000000000000", "a/b"]
)
async def test_ids_that_are_not_canonical_uuids_are_refused_by_the_hooks(
    tmp_path: Path, root: Path, bad: str
) -> None:
    """Hooks called directly (not through Store, which canonicalises ids) check them too."""
    store = await threadline.connect(f"file://{root}")
    plugin: Any = store.primary
    before = _outside(tmp_path, root)
    ok = new_id()
    # Positional, in the hook spec's order, as the dispatch calls them.
    calls = [
        plugin.threadline_get_session(bad, ok),
        plugin.threadline_get_session(ok, bad),
        plugin.threadline_read_messages(ok, bad, MessageRange()),
        plugin.threadline_load_window(bad, ok, 2),
        plugin.threadline_list_sessions(bad, SessionQuery(limit=5)),
        plugin.threadline_read_checkpoint_records(ok, bad, True),
        plugin.threadline_delete_session(bad, ok),
        plugin.threadline_list_agent_configs(bad),
    ]
    for call in calls:
        with pytest.raises(ValidationError):
            await call
    await store.close()
    assert _outside(tmp_path, root) == before


async def test_ids_through_the_store_api_are_validated(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    for bad in ("../../x", "not-a-uuid", "\x00"):
        with pytest.raises(ValidationError):
            await store.get_session(new_id(), bad)
        with pytest.raises(ValidationError):
            await store.load_agent_config(tenant_id=bad, code="x")
        with pytest.raises(ValidationError):
            Message(session_id=bad, tenant_id=new_id(), role="user")
        with pytest.raises(ValidationError):
            Session(id=bad, tenant_id=new_id())
    await store.close()
    assert not (root / "tenants").exists()  # nothing was written for any of them
