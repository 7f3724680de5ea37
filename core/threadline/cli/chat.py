"""``threadline chat``: a streamed, persisted conversation in the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import click

from threadline.cli.options import store_option, store_url, tenant_options


@click.command(name="chat")
@click.argument("prompt", required=False)
@store_option
@tenant_options
@click.option("--model", "-m", help="Model name (default: $OPENAI_MODEL or the provider's).")
@click.option("--provider", "-p", help="Provider name (default: openai if configured, else echo).")
@click.option("--system", "-s", "system_prompt", help="System prompt for a new session.")
@click.option("--window", "-w", type=click.IntRange(min=0), help="Sliding window in rounds.")
@click.option("--session", "session_id", help="Continue this session id (it must exist).")
@click.option(
    "--new",
    "new",
    is_flag=True,
    help="Start a new session (with --session: one with that id; an error if it exists).",
)
@click.option("--continue", "-c", "continue_", is_flag=True, help="Continue the latest session.")
def chat_command(
    prompt: str | None,
    store: str | None,
    tenant_id: str,
    user_id: str,
    model: str | None,
    provider: str | None,
    system_prompt: str | None,
    window: int | None,
    session_id: str | None,
    new: bool,
    continue_: bool,
) -> None:
    """Chat with a model; every turn is saved. With PROMPT, one turn; else read lines.

    A new session starts unless --session ID (an existing one) or -c (the latest) says
    which to continue; --session ID --new starts one with that id.
    """
    from threadline.cli.app import run
    from threadline.runtime.agent import AgentBuilder
    from threadline.store import connect

    if continue_ and (session_id is not None or new):
        raise click.UsageError("--continue takes neither --session nor --new")
    # Continuing needs a store that exists; only starting a session may create one.
    creating = not continue_ and (session_id is None or new)

    async def go() -> None:
        url = store_url(store, create=creating)
        db = await connect(url, create=creating)
        try:
            sid = session_id
            if continue_:
                latest = await db.list_sessions(tenant_id, user_id=user_id, limit=1)
                if not latest:
                    raise click.ClickException("no session to continue")
                sid = latest[0].id
            elif sid is not None:
                found = await db.get_session(tenant_id, sid)
                if found is None and not new:
                    raise click.ClickException(
                        f"no session {sid} for this tenant (--new starts one with this id)"
                    )
                if found is not None and new:
                    raise click.ClickException(
                        f"session {sid} exists: leave out --new to continue it"
                    )
            builder = (
                AgentBuilder(system_prompt)
                .with_store(db)
                .with_tenant_id(tenant_id)
                .with_user_id(user_id)
                .with_sliding_window(window)
            )
            if provider:
                builder.with_provider(provider)
            if model:
                builder.with_model(model)
            if sid:
                builder.with_session_id(sid)
            agent = await builder.build()
            click.echo(f"session {agent.session_id}", err=True)
            try:
                prompts: Iterable[str] = [prompt] if prompt is not None else _read_prompts()
                for text in prompts:
                    async for piece in agent.chat_stream(text):
                        click.echo(piece, nl=False)
                    click.echo()
            finally:
                await agent.close()
        finally:
            await db.close()

    run(go())


def _read_prompts() -> Iterator[str]:
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            click.echo("> ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line or line.strip() in {"exit", "quit"}:
            return
        if line.strip():
            yield line.rstrip("\n")
