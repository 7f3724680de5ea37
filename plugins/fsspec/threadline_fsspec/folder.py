"""Agent and provider configs read from TOML or JSON files in a folder (read only).

A deployment keeps its agents in version control and its messages in a database by
stacking this plugin in front of the database store::

    store = await threadline.connect("postgresql://...")
    store.add(AgentConfigFolder("deploy/agents"))      # asked first for agent configs

or, by URL, ``await threadline.store.open_plugin("agents+file:///srv/agents")``.

Layout: every ``*.toml`` / ``*.json`` file directly in the folder is an agent that
every tenant sees; files in a sub-folder named by a tenant's UUID are that tenant's
only (and win over a shared file with the same code). Other sub-folders are an
error, except hidden ones (``.git``) and ones starting with ``_``. A file::

    [agent]
    code = "chat-assistant"          # default: the file name without its extension
    name = "Chat assistant"          # default: the code
    system_prompt = "You are helpful."
    model = "gpt-4o-mini"
    temperature = 0.3
    max_tokens = 512
    window = 4
    response_format = { type = "json_object" }
    custom_params = { top_p = 0.9 }
    enabled = true

    [provider]                       # optional
    name = "openai"
    type = "openai"
    api_base = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"   # or api_key_ref = "env:OPENAI_API_KEY"

JSON files hold the same two objects. Keys are never literal: ``api_key_ref`` must be
an ``env:NAME`` reference, so secrets stay out of version control. Ids default to
UUIDs derived from the tenant and the code (the same in every process) and the
timestamps to the file's modification time, so loading twice gives equal configs.
Invalid TOML or JSON, unknown fields or bad values raise a
:class:`~threadline.errors.ValidationError` naming the file. Files are re-read when
they change.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from threadline.errors import ConfigurationError, ThreadlineError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.ids import check_id
from threadline.models import AgentConfig, AgentRecord, ProviderRecord

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

__all__ = ["NAMESPACE", "AgentConfigFolder"]

NAMESPACE = uuid.UUID("6f1c1a6e-51d0-4d36-9d0c-2f0c7c5e7a11")
"""The namespace of the UUIDv5 ids given to agents and providers that set none."""

_AGENT_FIELDS = frozenset(
    {
        "code",
        "name",
        "system_prompt",
        "model",
        "temperature",
        "max_tokens",
        "window",
        "response_format",
        "custom_params",
        "enabled",
        "version",
        "id",
        "tenant_id",
    }
)
_PROVIDER_FIELDS = frozenset(
    {"name", "type", "api_base", "api_key_ref", "api_key_env", "enabled", "metadata", "id"}
)


class _Entry:
    """One parsed file: its raw tables and where it came from."""

    __slots__ = ("agent", "code", "mtime", "path", "provider", "tenant")

    def __init__(
        self,
        path: str,
        tenant: str | None,
        agent: dict[str, Any],
        provider: dict[str, Any] | None,
        mtime: datetime,
    ) -> None:
        self.path = path
        self.tenant = tenant  # None: shared by every tenant
        self.agent = agent
        self.provider = provider
        self.mtime = mtime
        self.code: str = agent["code"]


class AgentConfigFolder:
    """A read-only store plugin answering ``load_agent_config`` and ``list_agent_configs``.

    :param path: the folder (it must exist).
    :raises ConfigurationError: the folder does not exist.
    :raises ValidationError: a file in it is invalid (checked at once, so a deployment
        fails when it starts, not at the first chat).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(self.path):
            raise ConfigurationError(f"agent config folder {self.path} does not exist")
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[tuple[int, int], _Entry]] = {}
        self._entries()

    def __repr__(self) -> str:
        return f"<AgentConfigFolder {self.path}>"

    # -- reading the folder --------------------------------------------------------------

    def _files(self) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_dir():
                try:
                    tenant = check_id(entry.name, "tenant folder")
                except ValidationError:
                    raise ValidationError(
                        f"{entry.path}: sub-folders of an agent config folder must be named "
                        "by a tenant UUID"
                    ) from None
                for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if inner.is_file() and _is_config(inner.name):
                        out.append((inner.path, tenant))
            elif entry.is_file() and _is_config(entry.name):
                out.append((entry.path, None))
        return out

    def _entries(self) -> list[_Entry]:
        with self._lock:
            files = self._files()
            entries = []
            for path, tenant in files:
                stat = os.stat(path)
                key = (stat.st_mtime_ns, stat.st_size)
                cached = self._parsed.get(path)
                if cached is None or cached[0] != key:
                    cached = (key, _parse(path, tenant, stat.st_mtime_ns))
                    self._parsed[path] = cached
                entries.append(cached[1])
            for stale in set(self._parsed) - {path for path, _ in files}:
                del self._parsed[stale]
        seen: dict[tuple[str | None, str], str] = {}
        for entry in entries:
            other = seen.setdefault((entry.tenant, entry.code), entry.path)
            if other != entry.path:
                raise ValidationError(
                    f"{entry.path}: agent code {entry.code!r} is also defined in {other}"
                )
        return entries

    def _visible(self, tenant_id: str) -> dict[str, _Entry]:
        """The entries a tenant sees, by code: its own over the shared ones."""
        out: dict[str, _Entry] = {}
        for entry in self._entries():
            if entry.tenant is None:
                out.setdefault(entry.code, entry)
            elif entry.tenant == tenant_id:
                out[entry.code] = entry
        return out

    # -- hooks ---------------------------------------------------------------------------

    @hookimpl
    def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        visible = self._visible(tenant_id)
        if code is not None:
            entry = visible.get(code)
            return None if entry is None else _config(entry, tenant_id)
        for entry in visible.values():
            config = _config(entry, tenant_id)
            if config.agent.id == agent_id:
                return config
        return None

    @hookimpl
    def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig] | None:
        """The tenant's agents from files, by code; ``None`` (ask the next store) if none."""
        visible = self._visible(tenant_id)
        if not visible:
            return None
        return [_config(visible[code], tenant_id) for code in sorted(visible)]

    @hookimpl
    def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord] | None:
        """Providers of the tenant's agents from files; ``None`` (ask the next store) if none."""
        found: dict[str, ProviderRecord] = {}
        for entry in self._visible(tenant_id).values():
            provider = _config(entry, tenant_id).provider
            if provider is not None:
                found.setdefault(provider.id, provider)
        if not found:
            return None
        return sorted(found.values(), key=lambda p: (p.name, p.id))

    @hookimpl
    def threadline_close(self) -> None:
        with self._lock:
            self._parsed.clear()


def _is_config(name: str) -> bool:
    return name.endswith((".toml", ".json"))


def _parse(path: str, tenant: str | None, mtime_ns: int) -> _Entry:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".toml"):
            doc: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError too
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise ValidationError(f"{path}: invalid {kind}: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("agent"), Mapping):
        raise ValidationError(f"{path}: needs an [agent] table")
    extra = set(doc) - {"agent", "provider"}
    if extra:
        raise ValidationError(f"{path}: unknown top-level key(s) {sorted(extra)}")
    agent = dict(doc["agent"])
    provider = doc.get("provider")
    if provider is not None and not isinstance(provider, Mapping):
        raise ValidationError(f"{path}: [provider] must be a table")
    for table, fields, name in (
        (agent, _AGENT_FIELDS, "agent"),
        (provider, _PROVIDER_FIELDS, "provider"),
    ):
        unknown = set(table or ()) - fields
        if unknown:
            raise ValidationError(f"{path}: unknown [{name}] field(s) {sorted(unknown)}")
    stem = os.path.basename(path).rsplit(".", 1)[0]
    agent.setdefault("code", stem)
    agent.setdefault("name", agent["code"])
    declared = agent.pop("tenant_id", None)
    if declared is not None:
        try:
            declared = check_id(declared, "tenant_id")
        except ValidationError as exc:
            raise ValidationError(f"{path}: {exc}") from None
        if tenant is not None and declared != tenant:
            raise ValidationError(f"{path}: tenant_id {declared} is not its folder's tenant")
        tenant = declared
    if tenant is None and "id" in agent:
        raise ValidationError(f"{path}: only a tenant's own agent may set an id")
    provider_table = None if provider is None else dict(provider)
    if provider_table is not None:
        env = provider_table.pop("api_key_env", None)
        if env is not None:
            if "api_key_ref" in provider_table:
                raise ValidationError(f"{path}: give api_key_env or api_key_ref, not both")
            provider_table["api_key_ref"] = f"env:{env}"
        ref = provider_table.get("api_key_ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("env:")):
            raise ValidationError(
                f"{path}: api_key_ref must be a reference such as env:OPENAI_API_KEY; "
                "keep keys out of files in version control"
            )
        provider_table.setdefault("name", "default")
    mtime = datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc)
    entry = _Entry(path, tenant, agent, provider_table, mtime)
    probe_tenant = tenant or str(NAMESPACE)
    _config(entry, probe_tenant)  # every value checked now, against a placeholder tenant
    return entry


def _config(entry: _Entry, tenant_id: str) -> AgentConfig:
    """The config a tenant gets from a file (ids derived from tenant and code)."""
    try:
        provider = None
        if entry.provider is not None:
            fields = dict(entry.provider)
            fields.setdefault(
                "id", str(uuid.uuid5(NAMESPACE, f"{tenant_id}/provider/{entry.code}"))
            )
            provider = ProviderRecord(
                tenant_id=tenant_id, created_at=entry.mtime, updated_at=entry.mtime, **fields
            )
        fields = dict(entry.agent)
        fields.setdefault("id", str(uuid.uuid5(NAMESPACE, f"{tenant_id}/agent/{entry.code}")))
        agent = AgentRecord(
            tenant_id=tenant_id,
            provider_id=None if provider is None else provider.id,
            created_at=entry.mtime,
            updated_at=entry.mtime,
            **fields,
        )
        return AgentConfig(agent=agent, provider=provider)
    except ThreadlineError as exc:
        raise ValidationError(f"{entry.path}: {exc}") from None
    except TypeError as exc:
        raise ValidationError(f"{entry.path}: {exc}") from None
