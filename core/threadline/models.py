# mypy: disable-error-code="misc"
# (mypy's attrs plugin cannot follow converter factories such as _id("session_id"))
"""The data model: frozen attrs classes with exact JSON round trips.

Every model validates what a caller gives it (ids, roles, statuses, encodings)
and raises :class:`~threadline.errors.ValidationError`. Stores rebuild models
from their own rows through :func:`trusted`, which skips that validation.

JSON fields (metadata, tool arguments, checkpoint state, input and properties, custom
params, response format) may nest at most :data:`MAX_JSON_DEPTH` (100) containers deep
and their dict keys must be ``str``: deeper values would overflow the stack of every
store's JSON codec, and JSON would silently turn a key ``1`` into ``"1"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, get_args

import attrs

from threadline.errors import ValidationError
from threadline.ids import check_id, new_id, optional_id, utcnow

__all__ = [
    "MAX_INT",
    "MAX_JSON_DEPTH",
    "MESSAGE_ROLES",
    "MESSAGE_STATUSES",
    "AgentConfig",
    "AgentRecord",
    "ApiCall",
    "ApiCallStatus",
    "Checkpoint",
    "Message",
    "MessageStatus",
    "ProviderRecord",
    "Role",
    "Session",
    "ToolCall",
    "check_json",
    "from_json",
    "to_json",
    "trusted",
]

Role = Literal["system", "user", "assistant", "tool"]
MessageStatus = Literal["complete", "streaming", "cancelled", "error", "interrupted"]
ApiCallStatus = Literal["success", "failed", "timeout", "rate_limited", "cancelled"]
MESSAGE_ROLES: frozenset[str] = frozenset(get_args(Role))
MESSAGE_STATUSES: frozenset[str] = frozenset(get_args(MessageStatus))
API_CALL_STATUSES: frozenset[str] = frozenset(get_args(ApiCallStatus))

T = TypeVar("T")


# -- converters and validators ------------------------------------------------------------


def _id(field: str) -> Any:
    return lambda value: check_id(value, field)


def _opt_id(field: str) -> Any:
    return lambda value: optional_id(value, field)


def _utc(value: object) -> datetime:
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"not an ISO 8601 timestamp: {text[:40]!r}") from None
    return check_utc(value, "timestamp")


def check_utc(value: object, field: str) -> datetime:
    """``value`` (an aware datetime) in UTC; ValidationError if it is naive, not a datetime,
    or out of range once moved to UTC (year 1 east of Greenwich)."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{field}: expected a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValidationError(f"{field} must be timezone-aware (UTC); got a naive datetime")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValidationError(f"{field} {value.isoformat()} is out of range in UTC") from None


def check_text(value: object, field: str) -> str:
    """Return ``value`` if it is a str that UTF-8 can encode (no lone surrogates)."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a str, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"{field} is not valid Unicode text (lone surrogate at index {exc.start})"
            ) from None
    return value


def _text(field: str) -> Any:
    return lambda value: check_text(value, field)


def _opt_text(field: str) -> Any:
    return lambda value: None if value is None else check_text(value, field)


MAX_JSON_DEPTH = 100
"""How deep JSON fields may nest containers (``{"a": {}}`` is 2 deep); deeper is refused."""

_CONTAINERS = (dict, list, tuple)


def check_json(value: Any, field: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Return ``value`` if its dicts and lists nest at most ``max_depth`` deep and every
    dict key is a ``str``; raise :class:`ValidationError` naming ``field`` otherwise.

    Other types are left to the store's JSON encoder. Iterative, so a value nested
    10,000 deep (or one that contains itself) is refused, not a ``RecursionError``.
    """
    if not isinstance(value, _CONTAINERS) or not value:
        return value
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValidationError(
                f"{field} is nested more than {max_depth} levels deep "
                "(or contains itself); flatten it"
            )
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    shown = repr(key) if len(repr(key)) <= 40 else repr(key)[:37] + "..."
                    raise ValidationError(
                        f"{field} has a key that is not a str: {shown} "
                        f"({type(key).__name__}); JSON object keys must be str"
                    )
            children: Iterable[Any] = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))
    return value


def _json_value(field: str) -> Any:
    return lambda value: check_json(value, field)


def _mapping(field: str) -> Any:
    def convert(value: object) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValidationError(f"{field} must be a mapping, got {type(value).__name__}")
        return check_json(dict(value), field)  # type: ignore[no-any-return]

    return convert


def _one_of(field: str, allowed: frozenset[str]) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value not in allowed:
            raise ValidationError(f"{field} must be one of {sorted(allowed)}, got {value!r}")

    return check


MAX_INT = 2**63 - 1
"""The largest integer a field may hold: every store keeps it in a signed 64-bit column."""


def _opt_int(field: str, minimum: int = 0) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValidationError(f"{field} must be an int >= {minimum}, got {value!r}")
        if value > MAX_INT:
            raise ValidationError(f"{field} must be at most {MAX_INT}, got {value!r}")

    return check


def _opt_number(field: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValidationError(f"{field} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"{field} must be a finite number, got {value!r}")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ValidationError(f"{field} must be at most {MAX_INT} in size, got {value!r}")

    return check


def _bool(field: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if not isinstance(value, bool):
            raise ValidationError(f"{field} must be a bool, got {value!r}")

    return check


_builders: dict[type, Any] = {}


def _make_builder(cls: type) -> Any:
    # Generated once per class: each slot's own setter called directly (twice as fast as
    # object.__setattr__), no loop, no validation.
    names = [a.name for a in attrs.fields(cls)]
    lines = [f"def build({', '.join(names)}):", "    obj = new(cls)"]
    lines += [f"    set_{name}(obj, {name})" for name in names]
    lines.append("    return obj")
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for name in names:
        scope[f"set_{name}"] = cls.__dict__[name].__set__
    exec("\n".join(lines), scope)
    return scope["build"]


def builder(cls: type[T]) -> Callable[..., T]:
    """The fast constructor :func:`trusted` uses, for stores that call it in a loop."""
    build = _builders.get(cls)
    if build is None:
        build = _builders[cls] = _make_builder(cls)
    return build  # type: ignore[no-any-return]


def trusted(cls: type[T], **values: Any) -> T:
    """Build ``cls`` from already-validated values, skipping converters and validators.

    For stores decoding their own rows on hot read paths; every field must be given.
    """
    return builder(cls)(**values)


# -- models ---------------------------------------------------------------------------------


@attrs.frozen
class ToolCall:
    """A tool call requested by the model: the provider's call id, the tool name, its arguments."""

    id: str = attrs.field(converter=_text("tool call id"))
    name: str = attrs.field(converter=_text("tool name"))
    arguments: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("tool arguments"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(id=data["id"], name=data["name"], arguments=data.get("arguments") or {})


def _tool_calls(value: object) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError("tool_calls must be a sequence of ToolCall")
    return tuple(item if isinstance(item, ToolCall) else ToolCall.from_dict(item) for item in value)


@attrs.frozen
class Message:
    """One message of a session. ``seq`` is assigned by the store when it is saved."""

    session_id: str = attrs.field(converter=_id("session_id"))
    tenant_id: str = attrs.field(converter=_id("tenant_id"))
    role: Role = attrs.field(validator=_one_of("role", MESSAGE_ROLES))
    content: str = attrs.field(default="", converter=_text("content"))
    user_id: str | None = attrs.field(default=None, converter=_opt_id("user_id"))
    agent_id: str | None = attrs.field(default=None, converter=_opt_id("agent_id"))
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tool_calls)
    tool_call_id: str | None = attrs.field(default=None, converter=_opt_text("tool_call_id"))
    name: str | None = attrs.field(default=None, converter=_opt_text("name"))
    status: MessageStatus = attrs.field(
        default="complete", validator=_one_of("status", MESSAGE_STATUSES)
    )
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("metadata"))
    id: str = attrs.field(factory=new_id, converter=_id("message id"))
    seq: int | None = attrs.field(default=None, validator=_opt_int("seq", 1))
    created_at: datetime = attrs.field(factory=utcnow, converter=_utc)

    def __attrs_post_init__(self) -> None:
        if self.role == "tool" and not self.tool_call_id:
            raise ValidationError("a tool message needs the tool_call_id it answers")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "seq": self.seq,
            "role": self.role,
            "content": self.content,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "status": self.status,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        return cls(**_known(cls, data))


@attrs.frozen
class Session:
    """A conversation: messages, API calls and checkpoints hang off it."""

    tenant_id: str = attrs.field(converter=_id("tenant_id"))
    user_id: str | None = attrs.field(default=None, converter=_opt_id("user_id"))
    agent_id: str | None = attrs.field(default=None, converter=_opt_id("agent_id"))
    title: str | None = attrs.field(default=None, converter=_opt_text("title"))
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("metadata"))
    id: str = attrs.field(factory=new_id, converter=_id("session_id"))
    created_at: datetime = attrs.field(factory=utcnow, converter=_utc)
    updated_at: datetime = attrs.field(
        default=attrs.Factory(lambda self: self.created_at, takes_self=True), converter=_utc
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "title": self.title,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        return cls(**_known(cls, data))


@attrs.frozen
class ApiCall:
    """One model request: outcome, token usage and timing."""

    tenant_id: str = attrs.field(converter=_id("tenant_id"))
    session_id: str = attrs.field(converter=_id("session_id"))
    model: str = attrs.field(converter=_text("model"))
    status: ApiCallStatus = attrs.field(validator=_one_of("status", API_CALL_STATUSES))
    user_id: str | None = attrs.field(default=None, converter=_opt_id("user_id"))
    agent_id: str | None = attrs.field(default=None, converter=_opt_id("agent_id"))
    request_message_id: str | None = attrs.field(
        default=None, converter=_opt_id("request_message_id")
    )
    response_message_id: str | None = attrs.field(
        default=None, converter=_opt_id("response_message_id")
    )
    error_message: str | None = attrs.field(default=None, converter=_opt_text("error_message"))
    error_code: str | None = attrs.field(default=None, converter=_opt_text("error_code"))
    prompt_tokens: int | None = attrs.field(default=None, validator=_opt_int("prompt_tokens"))
    completion_tokens: int | None = attrs.field(
        default=None, validator=_opt_int("completion_tokens")
    )
    total_tokens: int | None = attrs.field(default=None, validator=_opt_int("total_tokens"))
    latency_ms: float | None = attrs.field(default=None, validator=_opt_number("latency_ms"))
    time_to_first_token_ms: float | None = attrs.field(
        default=None, validator=_opt_number("time_to_first_token_ms")
    )
    tokens_per_second: float | None = attrs.field(
        default=None, validator=_opt_number("tokens_per_second")
    )
    response_id: str | None = attrs.field(default=None, converter=_opt_text("response_id"))
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("metadata"))
    id: str = attrs.field(factory=new_id, converter=_id("api call id"))
    created_at: datetime = attrs.field(factory=utcnow, converter=_utc)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApiCall:
        return cls(**_known(cls, data))


def _history(value: object) -> tuple[Message, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError("history must be a sequence of Message")
    return tuple(m if isinstance(m, Message) else Message.from_dict(m) for m in value)


@attrs.frozen
class Checkpoint:
    """A resumable point of an agent's run in a session.

    ``node_id`` is the node to run next and ``input`` its input (``input_type``
    names the input's type so it can be rebuilt). ``history`` is the whole message
    history at this point; stores may keep it as a delta on ``parent_id``.
    ``version`` is assigned by the store, unique and increasing per session.
    A ``tombstone`` marks a finished run: the next run of the session starts fresh.
    """

    tenant_id: str = attrs.field(converter=_id("tenant_id"))
    session_id: str = attrs.field(converter=_id("session_id"))
    agent_id: str | None = attrs.field(default=None, converter=_opt_id("agent_id"))
    node_id: str | None = attrs.field(default=None, converter=_opt_text("node_id"))
    input: Any = attrs.field(default=None, converter=_json_value("checkpoint input"))
    input_type: str | None = attrs.field(default=None, converter=_opt_text("input_type"))
    history: tuple[Message, ...] = attrs.field(default=(), converter=_history)
    state: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("checkpoint state"))
    properties: dict[str, Any] = attrs.field(
        factory=dict, converter=_mapping("checkpoint properties")
    )
    tombstone: bool = attrs.field(default=False, validator=_bool("tombstone"))
    parent_id: str | None = attrs.field(default=None, converter=_opt_id("parent_id"))
    version: int | None = attrs.field(default=None, validator=_opt_int("version", 1))
    id: str = attrs.field(factory=new_id, converter=_id("checkpoint id"))
    created_at: datetime = attrs.field(factory=utcnow, converter=_utc)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["history"] = [m.to_dict() for m in self.history]
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(**_known(cls, data))


def _mask_key_ref(value: str | None) -> str:
    if value is None:
        return "None"
    if value.startswith("env:"):
        return repr(value)
    return "'***'"


@attrs.frozen(repr=False)
class ProviderRecord:
    """A model provider row. ``api_key_ref`` is a reference such as ``env:OPENAI_API_KEY``.

    A literal key may be stored if the user insists; it never appears in ``repr``.
    """

    tenant_id: str = attrs.field(converter=_id("tenant_id"))
    name: str = attrs.field(converter=_text("provider name"))
    type: str = attrs.field(default="openai", converter=_text("provider type"))
    api_base: str | None = attrs.field(default=None, converter=_opt_text("api_base"))
    api_key_ref: str | None = attrs.field(default=None, converter=_opt_text("api_key_ref"))
    enabled: bool = attrs.field(default=True, validator=_bool("enabled"))
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("metadata"))
    id: str = attrs.field(factory=new_id, converter=_id("provider id"))
    created_at: datetime = attrs.field(factory=utcnow, converter=_utc)
    updated_at: datetime = attrs.field(
        default=attrs.Factory(lambda self: self.created_at, takes_self=True), converter=_utc
    )

    def __attrs_post_init__(self) -> None:
        if "prices" in self.metadata:  # per-model prices (threadline.usage), checked here
            from threadline.usage import check_prices

            check_prices(self.metadata["prices"])

    def __repr__(self) -> str:
        return (
            f"ProviderRecord(id={self.id!r}, tenant_id={self.tenant_id!r}, name={self.name!r}, "
            f"type={self.type!r}, api_base={self.api_base!r}, "
            f"api_key_ref={_mask_key_ref(self.api_key_ref)}, enabled={self.enabled!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderRecord:
        return cls(**_known(cls, data))


@attrs.frozen
class AgentRecord:
    """An agent row: ``code`` is unique per tenant; ``window`` is the sliding window in rounds."""

    tenant_id: str = attrs.field(converter=_id("tenant_id"))
    code: str = attrs.field(converter=_text("agent code"))
    name: str = attrs.field(converter=_text("agent name"))
    system_prompt: str | None = attrs.field(default=None, converter=_opt_text("system_prompt"))
    model: str | None = attrs.field(default=None, converter=_opt_text("model"))
    temperature: float | None = attrs.field(default=None, validator=_opt_number("temperature"))
    max_tokens: int | None = attrs.field(default=None, validator=_opt_int("max_tokens", 1))
    window: int | None = attrs.field(default=None, validator=_opt_int("window", 1))
    response_format: dict[str, Any] | None = attrs.field(
        default=None, converter=_json_value("response_format")
    )
    custom_params: dict[str, Any] = attrs.field(factory=dict, converter=_mapping("custom_params"))
    provider_id: str | None = attrs.field(default=None, converter=_opt_id("provider_id"))
    enabled: bool = attrs.field(default=True, validator=_bool("enabled"))
    version: int = attrs.field(default=1, validator=_opt_int("version", 1))
    id: str = attrs.field(factory=new_id, converter=_id("agent id"))
    created_at: datetime = attrs.field(factory=utcnow, converter=_utc)
    updated_at: datetime = attrs.field(
        default=attrs.Factory(lambda self: self.created_at, takes_self=True), converter=_utc
    )

    def __attrs_post_init__(self) -> None:
        if not self.code.strip():
            raise ValidationError("agent code must not be empty")

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentRecord:
        return cls(**_known(cls, data))


@attrs.frozen
class AgentConfig:
    """An agent and the provider it runs on, as loaded from a store."""

    agent: AgentRecord
    provider: ProviderRecord | None = None

    def __attrs_post_init__(self) -> None:
        p = self.provider
        if p is not None and p.tenant_id != self.agent.tenant_id:
            raise ValidationError("agent and provider belong to different tenants")
        if p is not None and self.agent.provider_id not in (None, p.id):
            raise ValidationError("agent.provider_id does not name this provider")

    @property
    def enabled(self) -> bool:
        """True when the agent and its provider (if any) are both enabled."""
        return self.agent.enabled and (self.provider is None or self.provider.enabled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.to_dict(),
            "provider": None if self.provider is None else self.provider.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentConfig:
        if not isinstance(data, Mapping):
            raise ValidationError(f"AgentConfig data must be a mapping, got {type(data).__name__}")
        if "agent" not in data:
            raise ValidationError("AgentConfig data has no 'agent'")
        unknown = set(data) - {"agent", "provider"}
        if unknown:
            raise ValidationError(f"unknown AgentConfig field(s): {sorted(unknown)}")
        provider = data.get("provider")
        return cls(
            agent=AgentRecord.from_dict(data["agent"]),
            provider=None if provider is None else ProviderRecord.from_dict(provider),
        )


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{cls.__name__} data must be a mapping")
    fields = attrs.fields(cls)
    unknown = set(data) - {a.name for a in fields}
    if unknown:
        raise ValidationError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
    missing = [a.name for a in fields if a.default is attrs.NOTHING and a.name not in data]
    if missing:
        raise ValidationError(f"{cls.__name__} data lacks required field(s): {missing}")
    return dict(data)


def to_json(obj: Message | Session | ApiCall | Checkpoint | AgentConfig) -> str:
    """Serialise a model to JSON text that :func:`from_json` turns back into an equal model."""
    return json.dumps(obj.to_dict(), ensure_ascii=False, separators=(",", ":"))


def from_json(cls: type[T], text: str | bytes) -> T:
    """Parse JSON text made by :func:`to_json` back into ``cls``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"invalid JSON for {cls.__name__}: {exc}") from None
    except RecursionError:
        raise ValidationError(
            f"invalid JSON for {cls.__name__}: nested more than {MAX_JSON_DEPTH} levels deep"
        ) from None
    return cls.from_dict(data)  # type: ignore[attr-defined, no-any-return]
