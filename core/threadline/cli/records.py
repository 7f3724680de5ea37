"""``threadline sessions`` and ``threadline agents``: look at and manage what is stored."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from threadline.cli.app import with_store
from threadline.cli.options import (
    json_option,
    print_json,
    print_table,
    store_option,
    tenant_options,
)
from threadline.errors import ValidationError
from threadline.models import AgentConfig
from threadline.queries import SessionCursor
from threadline.store import Store

T = TypeVar("T")


@click.group(name="sessions")
def sessions_group() -> None:
    """List, show and delete sessions."""


@sessions_group.command(name="list")
@store_option
@tenant_options
@click.option("--all-users", is_flag=True, help="Every user of the tenant.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--after",
    metavar="CURSOR",
    callback=lambda _ctx, _param, value: _cursor(value),
    help="Continue after this cursor (the 'next:' line of a full page).",
)
@json_option
def sessions_list(
    store: str | None,
    tenant_id: str,
    user_id: str,
    all_users: bool,
    limit: int,
    after: SessionCursor | None,
    as_json: bool,
) -> None:
    """The tenant's sessions, most recently active first.

    A full page ends with a ``next: CURSOR`` line on stderr (stdout stays the table or
    JSON); ``--after CURSOR`` lists the page after it, stable under concurrent inserts.
    """

    async def work(db: Store) -> tuple[list[Any], dict[str, Any]]:
        found = await db.list_sessions(
            tenant_id, user_id=None if all_users else user_id, limit=limit, after=after
        )
        expiry = await db.session_expiry(tenant_id, [s.id for s in found])
        return [(s, await db.count_messages(tenant_id, s.id)) for s in found], expiry

    rows, expiry = with_store(store, work, create=False)
    expiring = any(expiry.values())  # a store with session TTLs (Redis ?ttl=): show them
    if as_json:
        print_json([_session_json(s, n, expiry if expiring else None) for s, n in rows])
    else:
        table: list[tuple[Any, ...]] = [
            (s.id, s.updated_at.strftime("%Y-%m-%d %H:%M:%S"), n, s.title or "") for s, n in rows
        ]
        headers = ["id", "updated (UTC)", "messages", "title"]
        if expiring:
            table = [(*r, _utc(expiry[s.id]) or "never") for r, (s, _) in zip(table, rows)]
            headers.append("expires (UTC)")
        print_table(table, headers)
    if len(rows) == limit:
        click.echo(f"next: {SessionCursor.of(rows[-1][0])}", err=True)


def _utc(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _session_json(session: Any, messages: int, expiry: dict[str, Any] | None) -> Any:
    """A ``sessions list --json`` row; ``expires_at`` (ISO, or null) on stores with TTLs."""
    row = session.to_dict() | {"messages": messages}
    if expiry is not None:
        moment = expiry.get(session.id)
        row["expires_at"] = None if moment is None else moment.isoformat()
    return row


def _cursor(value: str | None) -> SessionCursor | None:
    """``--after``'s cursor; a malformed one is a usage error (one line, exit 2)."""
    try:
        return None if value is None else SessionCursor.parse(value)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="'--after'") from None


@sessions_group.command(name="show")
@click.argument("session_id")
@store_option
@tenant_options
@json_option
def sessions_show(
    session_id: str, store: str | None, tenant_id: str, user_id: str, as_json: bool
) -> None:
    """Print a session's messages."""

    async def work(db: Store) -> Any:
        session = await db.get_session(tenant_id, session_id)
        if session is None:
            raise click.ClickException(f"no session {session_id} for this tenant")
        return session, await db.get_messages(tenant_id, session_id)

    session, messages = with_store(store, work, create=False)
    if as_json:
        print_json(session.to_dict() | {"messages": [m.to_dict() for m in messages]})
        return
    click.echo(f"session {session.id}  {session.title or ''}")
    for m in messages:
        calls = ", ".join(f"{c.name}({json.dumps(c.arguments)})" for c in m.tool_calls)
        extra = f" [{m.status}]" if m.status != "complete" else ""
        body = m.content + (f" -> {calls}" if calls else "")
        click.echo(f"{m.seq:>4} {m.role:<9}{extra} {body}")


@sessions_group.command(name="delete")
@click.argument("session_id")
@store_option
@tenant_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def sessions_delete(
    session_id: str, store: str | None, tenant_id: str, user_id: str, yes: bool, as_json: bool
) -> None:
    """Delete a session with its messages, API calls and checkpoints."""
    if not yes:
        click.confirm(f"Delete session {session_id} and everything in it?", abort=True)
    deleted = with_store(store, lambda db: db.delete_session(tenant_id, session_id), create=False)
    if not deleted:
        raise click.ClickException(f"no session {session_id} for this tenant")
    if as_json:
        print_json({"deleted": session_id})
    else:
        click.echo(f"deleted {session_id}")


def _shown(config: AgentConfig) -> dict[str, Any]:
    """A config as JSON for the terminal: a literal API key is masked (references stay)."""
    data = config.to_dict()
    provider = data.get("provider")
    if provider and provider.get("api_key_ref") and not provider["api_key_ref"].startswith("env:"):
        provider["api_key_ref"] = "***"
    return data


@click.group(name="agents")
def agents_group() -> None:
    """Add, list and show agent configs (agent + provider rows)."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_PREFIXES = ("sk-", "sk_", "sk-proj", "pk-", "rk-", "xai-", "gsk_", "key-", "ghp_", "AIza")


def looks_like_key(value: str) -> bool:
    """True for a value that is probably an API key rather than a variable's name."""
    if value.startswith(_KEY_PREFIXES):
        return True
    return (
        len(value) >= 24
        and any(c.isdigit() for c in value)
        and any(c.islower() for c in value)
        and any(c.isupper() for c in value)
    )


def _api_key_env(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if not _ENV_NAME.fullmatch(value):
        if looks_like_key(value):
            raise click.BadParameter(
                "takes the NAME of the environment variable that holds the key "
                "(e.g. OPENAI_API_KEY), and the value given looks like a key itself: it was "
                "neither stored nor shown. Export it (export MY_KEY=...) and pass MY_KEY",
                ctx,
                param,
            )
        raise click.BadParameter(
            f"{value!r} is not an environment variable name (letters, digits and _, not "
            "starting with a digit; e.g. OPENAI_API_KEY)",
            ctx,
            param,
        )
    if looks_like_key(value):
        click.echo(
            "warning: --api-key-env looks like a key rather than the name of the variable "
            "holding one; it is stored as the reference env:NAME",
            err=True,
        )
    return value


def _api_base(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL (e.g. https://api.openai.com/v1 or "
            "http://127.0.0.1:11434/v1)",
            ctx,
            param,
        )
    return value


def provider_types() -> list[str]:
    """The provider types an agent may name: the installed providers, and ``openai``."""
    from threadline.plugins import provider_registry

    return sorted(set(provider_registry()) | {"openai"})


def _provider_type(ctx: click.Context, param: click.Parameter, value: str) -> str:
    known = provider_types()
    if value.lower() not in known:
        raise click.BadParameter(
            f"no provider type {value!r}; known: {', '.join(known)}", ctx, param
        )
    return value.lower()


def _prices(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """``MODEL=INPUT,OUTPUT`` (USD per million tokens) as provider ``metadata["prices"]``."""
    prices: dict[str, dict[str, float]] = {}
    for value in values:
        model, _, pair = value.rpartition("=")
        parts = pair.split(",")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if not model.strip() or len(numbers) != 2:
            raise click.BadParameter(
                f"{value!r} is not MODEL=INPUT,OUTPUT (USD per million tokens: gpt-4o=2.5,10)",
                ctx,
                param,
            )
        prices[model] = {"input_per_million": numbers[0], "output_per_million": numbers[1]}
    return prices


@agents_group.command(name="add")
@store_option
@tenant_options
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON file with an AgentConfig ({'agent': {...}, 'provider': {...}}).",
)
@click.option("--code", help="Unique code of the agent in the tenant.")
@click.option("--name", help="Display name (default: the code).")
@click.option("--system-prompt")
@click.option("--model")
@click.option("--temperature", type=float)
@click.option("--max-tokens", type=click.IntRange(min=1))
@click.option("--window", type=click.IntRange(min=1), help="Sliding window in rounds.")
@click.option(
    "--provider-type",
    default="openai",
    show_default=True,
    callback=_provider_type,
    help="An installed provider (see 'threadline plugins'), or openai.",
)
@click.option("--provider-name", help="Provider row name (default: the type).")
@click.option("--api-base", callback=_api_base, help="Base URL of an OpenAI-compatible endpoint.")
@click.option(
    "--api-key-env",
    callback=_api_key_env,
    help="NAME of the environment variable holding the key (stored as env:NAME).",
)
@click.option(
    "--price",
    "prices",
    multiple=True,
    callback=_prices,
    metavar="MODEL=IN,OUT",
    help="A model's price in USD per million input and output tokens (repeatable; "
    "'threadline usage' costs calls with it).",
)
@click.option("--disabled", is_flag=True)
@json_option
def agents_add(
    store: str | None,
    tenant_id: str,
    user_id: str,
    from_file: Path | None,
    code: str | None,
    name: str | None,
    system_prompt: str | None,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    window: int | None,
    provider_type: str,
    provider_name: str | None,
    api_base: str | None,
    api_key_env: str | None,
    prices: dict[str, dict[str, float]],
    disabled: bool,
    as_json: bool,
) -> None:
    """Save an agent config; the API key is stored as a reference, never its value."""
    from threadline.errors import ValidationError
    from threadline.models import AgentConfig, AgentRecord, ProviderRecord

    try:
        if from_file is not None:
            config = AgentConfig.from_dict(json.loads(from_file.read_text(encoding="utf-8")))
            if config.agent.tenant_id != tenant_id:
                raise click.ClickException(
                    f"{from_file} holds an agent of tenant {config.agent.tenant_id}, not of "
                    f"--tenant {tenant_id}"
                )
        else:
            if not code:
                raise click.UsageError("give --code (or --from-file)")
            provider = ProviderRecord(
                tenant_id=tenant_id,
                name=provider_name or provider_type,
                type=provider_type,
                api_base=api_base,
                api_key_ref=f"env:{api_key_env}" if api_key_env else None,
                metadata={"prices": prices} if prices else {},
            )
            config = AgentConfig(
                agent=AgentRecord(
                    tenant_id=tenant_id,
                    code=code,
                    name=name or code,
                    system_prompt=system_prompt,
                    model=model,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    window=window,
                    provider_id=provider.id,
                    enabled=not disabled,
                ),
                provider=provider,
            )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ValidationError) else f"invalid config: {exc}"
        raise click.ClickException(message) from None
    saved = with_store(store, lambda db: db.save_agent_config(config), create=True)
    if as_json:
        print_json(_shown(saved))
    else:
        click.echo(f"saved agent {saved.agent.code} ({saved.agent.id})")


@agents_group.command(name="list")
@store_option
@tenant_options
@json_option
def agents_list(store: str | None, tenant_id: str, user_id: str, as_json: bool) -> None:
    """The tenant's agents, by code."""
    configs = with_store(store, lambda db: db.list_agent_configs(tenant_id), create=False)
    if as_json:
        print_json([_shown(c) for c in configs])
        return
    print_table(
        [
            (
                c.agent.code,
                c.agent.name,
                c.agent.model,
                c.provider.type if c.provider else "",
                "yes" if c.enabled else "no",
            )
            for c in configs
        ],
        ["code", "name", "model", "provider", "enabled"],
    )


@agents_group.command(name="show")
@click.argument("code")
@store_option
@tenant_options
def agents_show(code: str, store: str | None, tenant_id: str, user_id: str) -> None:
    """Print one agent config as JSON."""
    config = with_store(
        store, lambda db: db.load_agent_config(tenant_id=tenant_id, code=code), create=False
    )
    if config is None:
        raise click.ClickException(f"no agent {code!r} in this tenant")
    print_json(_shown(config))
