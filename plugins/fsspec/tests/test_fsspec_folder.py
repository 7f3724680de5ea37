"""Agent configs from TOML/JSON files, stacked in front of another store."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import attrs
import pytest

import threadline
from threadline import AgentConfig, AgentRecord, ConfigurationError, ValidationError
from threadline.ids import new_id
from threadline.store import open_plugin
from threadline_fsspec import AgentConfigFolder

CHAT = textwrap.dedent(
    """
    [agent]
    code = "chat-assistant"
    name = "Chat assistant"
    system_prompt = "You are helpful."
    model = "gpt-4o-mini"
    temperature = 0.3
    max_tokens = 512
    window = 4
    response_format = { type = "json_object" }
    custom_params = { top_p = 0.9 }

    [provider]
    name = "openai"
    type = "openai"
    api_base = "http://127.0.0.1:8000/v1"
    api_key_env = "OPENAI_API_KEY"
    """
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "agents"
    path.mkdir()
    (path / "chat.toml").write_text(CHAT, encoding="utf-8")
    (path / "summariser.json").write_text(
        json.dumps({"agent": {"name": "Summariser", "model": "gpt-4.1", "enabled": False}}),
        encoding="utf-8",
    )
    (path / "README.md").write_text("not a config", encoding="utf-8")
    return path


async def test_stacked_in_front_of_a_memory_store(folder: Path) -> None:
    memory = pytest.importorskip("threadline_memory")
    store = threadline.Store(memory.MemoryStore())
    store.add(AgentConfigFolder(folder))
    tenant = new_id()
    config = await store.load_agent_config(tenant_id=tenant, code="chat-assistant")
    assert config is not None and config.provider is not None
    assert (config.agent.tenant_id, config.agent.model, config.agent.window) == (
        tenant,
        "gpt-4o-mini",
        4,
    )
    assert config.agent.response_format == {"type": "json_object"}
    assert config.provider.api_key_ref == "env:OPENAI_API_KEY"
    assert config.agent.provider_id == config.provider.id
    # the database still answers for agents the folder does not have
    saved = await store.save_agent_config(
        AgentConfig(agent=AgentRecord(tenant_id=tenant, code="db-only", name="From the DB"))
    )
    assert await store.load_agent_config(tenant_id=tenant, code="db-only") == saved
    await store.close()


async def test_stacked_in_front_of_a_file_store(folder: Path, root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    store.add(await open_plugin(f"agents+file://{folder}"))
    tenant = new_id()
    by_code = await store.load_agent_config(tenant_id=tenant, code="chat-assistant")
    assert by_code is not None
    # ids are derived from tenant and code: stable across loads and processes
    again = await store.load_agent_config(tenant_id=tenant, agent_id=by_code.agent.id)
    assert again == by_code
    other_tenant = await store.load_agent_config(tenant_id=new_id(), code="chat-assistant")
    assert other_tenant is not None and other_tenant.agent.id != by_code.agent.id
    summariser = await store.load_agent_config(tenant_id=tenant, code="summariser")
    assert summariser is not None and summariser.provider is None
    assert summariser.agent.name == "Summariser" and not summariser.enabled
    listed = await store.list_agent_configs(tenant)
    assert [c.agent.code for c in listed] == ["chat-assistant", "summariser"]
    assert await store.load_agent_config(tenant_id=tenant, code="missing") is None
    await store.close()


async def test_tenant_folders_override_shared_files(folder: Path) -> None:
    tenant = new_id()
    (folder / tenant).mkdir()
    (folder / tenant / "chat.toml").write_text(
        CHAT.replace("gpt-4o-mini", "gpt-4.1-private"), encoding="utf-8"
    )
    plugin = AgentConfigFolder(folder)
    mine = plugin.threadline_load_agent_config(
        tenant_id=tenant, code="chat-assistant", agent_id=None
    )
    theirs = plugin.threadline_load_agent_config(
        tenant_id=new_id(), code="chat-assistant", agent_id=None
    )
    assert mine is not None and mine.agent.model == "gpt-4.1-private"
    assert theirs is not None and theirs.agent.model == "gpt-4o-mini"


def test_a_changed_file_is_read_again(folder: Path) -> None:
    plugin = AgentConfigFolder(folder)
    tenant = new_id()
    first = plugin.threadline_load_agent_config(
        tenant_id=tenant, code="chat-assistant", agent_id=None
    )
    path = folder / "chat.toml"
    path.write_text(CHAT.replace("temperature = 0.3", "temperature = 0.9"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    second = plugin.threadline_load_agent_config(
        tenant_id=tenant, code="chat-assistant", agent_id=None
    )
    assert first is not None and second is not None
    assert (first.agent.temperature, second.agent.temperature) == (0.3, 0.9)
    assert attrs.evolve(second.agent, temperature=0.3, updated_at=first.agent.updated_at,
                        created_at=first.agent.created_at) == first.agent  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("broken.toml", "[agent\nname = 'x'", "invalid TOML"),
        ("broken.json", '{"agent": {', "invalid JSON"),
        ("typo.toml", "[agent]\nnmae = 'x'", r"unknown \[agent\] field"),
        ("bad.toml", "[agent]\ntemperature = 'hot'", "temperature"),
        ("key.toml", "[agent]\n[provider]\napi_key_ref = 'sk-live-123'", "env:"),
        ("noagent.json", '{"provider": {}}', r"\[agent\]"),
    ],
)
def test_invalid_files_are_a_validation_error_naming_the_file(
    folder: Path, name: str, text: str, message: str
) -> None:
    (folder / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError, match=message) as info:
        AgentConfigFolder(folder)
    assert name in str(info.value)
    assert "sk-live-123" not in str(info.value)


def test_a_file_broken_later_is_reported_on_load(folder: Path) -> None:
    plugin = AgentConfigFolder(folder)
    (folder / "late.toml").write_text("[agent]\nmax_tokens = -1", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"late\.toml"):
        plugin.threadline_load_agent_config(tenant_id=new_id(), code="late", agent_id=None)


def test_duplicate_codes_and_bad_folders_are_refused(folder: Path, tmp_path: Path) -> None:
    (folder / "again.toml").write_text(CHAT, encoding="utf-8")
    with pytest.raises(ValidationError, match="also defined"):
        AgentConfigFolder(folder)
    (folder / "again.toml").unlink()
    (folder / "not-a-tenant").mkdir()
    with pytest.raises(ValidationError, match="tenant UUID"):
        AgentConfigFolder(folder)
    with pytest.raises(ConfigurationError):
        AgentConfigFolder(tmp_path / "missing")
