"""What a UI server was started with: tenant scope, access token, writes, inverse tools."""

from __future__ import annotations

import ipaddress
import json
import math
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from threadline.errors import ConfigurationError, ValidationError
from threadline.graph.rollback import Inverse
from threadline.ids import check_id

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "MIN_TOKEN_LENGTH",
    "Price",
    "UIConfig",
    "agents_of",
    "is_loopback",
]

DEFAULT_POLL_INTERVAL = 0.25
"""Seconds between two store reads of a live conversation (one indexed range read each)."""
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Price:
    """USD per million prompt and completion tokens of one model."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        if prompt_tokens is None and completion_tokens is None:
            return None
        return (
            (prompt_tokens or 0) * self.prompt + (completion_tokens or 0) * self.completion
        ) / 1e6


def load_prices(path: str | Path) -> dict[str, Price]:
    """Prices from a JSON file ``{"model": {"prompt": USD/1M, "completion": USD/1M}}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read prices from {path}: {exc}") from None
    return parse_prices(data, str(path))


def parse_prices(data: object, where: str = "prices") -> dict[str, Price]:
    """Check and convert a prices mapping (see :func:`load_prices`)."""
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: expected an object of models, got {type(data).__name__}")
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        values: list[float] = []
        for key in ("prompt", "completion"):
            value = entry.get(key) if isinstance(entry, dict) else None
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValidationError(
                    f"{where}: {model!r} needs a number >= 0 for {key!r} (USD per 1M tokens)"
                )
            values.append(float(value))
        prices[str(model)] = Price(*values)
    return prices


def _tenant(value: str | None) -> str | None:
    return None if value is None else check_id(value, "tenant_id")


@attrs.frozen
class UIConfig:
    """A UI server's settings.

    :param tenant_id: the one tenant this server shows; ``None`` = every tenant (the
        explicit admin mode of ``--all-tenants``).
    :param token: required on every request when set (a cookie after the first visit).
    :param read_only: refuse every write (rollback, delete, answers to waiting runs).
    :param inverses: inverse tools by agent id, run by a rollback of that agent's runs.
    :param agents: GraphAgents by agent id (``--agent``): after an answer is recorded on
        the approvals page, a graph run of one of them is continued by the server.
    :param prices: per-model prices for the cost column.
    :param poll_interval: seconds between store reads of a live conversation.
    :param store_label: how the store is named in pages (a redacted URL: no password).
    """

    tenant_id: str | None = attrs.field(converter=_tenant)
    token: str | None = None
    read_only: bool = False
    inverses: Mapping[str, Mapping[str, Inverse]] = attrs.field(factory=dict)
    agents: Mapping[str, Any] = attrs.field(factory=dict)
    prices: Mapping[str, Price] = attrs.field(factory=dict)
    poll_interval: float = DEFAULT_POLL_INTERVAL
    store_label: str = ""
    csrf_token: str = attrs.field(factory=lambda: secrets.token_urlsafe(32))

    def __attrs_post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ValidationError(
                f"the access token must be at least {MIN_TOKEN_LENGTH} characters"
            )
        if not (0.01 <= self.poll_interval <= 60):
            raise ValidationError(
                f"poll interval must be 0.01 to 60 seconds, got {self.poll_interval!r}"
            )

    def allows(self, tenant_id: str) -> bool:
        """Whether pages of ``tenant_id`` may be shown by this server."""
        return self.tenant_id is None or self.tenant_id == tenant_id

    def inverses_for(self, agent_id: str | None) -> Mapping[str, Inverse]:
        """The inverse tools a rollback of ``agent_id``'s checkpoints runs."""
        return self.inverses.get(agent_id or "", {})


def agents_of(agents: Iterable[Any]) -> dict[str, Any]:
    """GraphAgents by agent id (the last one given wins), to continue their runs."""
    found: dict[str, Any] = {}
    for agent in agents:
        inverses_of([agent])  # the same check: a GraphAgent
        found[agent.agent_id] = agent
    return found


def inverses_of(agents: Iterable[Any]) -> dict[str, dict[str, Inverse]]:
    """Inverse tools by agent id from GraphAgents (``agent.agent_id``, ``agent.inverses``)."""
    found: dict[str, dict[str, Inverse]] = {}
    for agent in agents:
        agent_id = getattr(agent, "agent_id", None)
        inverses = getattr(agent, "inverses", None)
        if not isinstance(agent_id, str) or not isinstance(inverses, Mapping):
            raise ConfigurationError(
                f"--agent must name a threadline.graph.GraphAgent, got {type(agent).__name__}"
            )
        found.setdefault(agent_id, {}).update(inverses)
    return found
