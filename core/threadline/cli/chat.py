"""``threadline chat``: a streamed, persisted conversation in the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import click

from threadline.cli.options import store_option, store_url, tenant_options

_LATEST = "-"  # --follow without a session id: the latest session


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
@click.option(
    "--follow",
    "follow",
    is_flag=False,
    flag_value=_LATEST,
    default=None,
    metavar="[SESSION]",
    help="Show the reply streaming in SESSION (default: the latest session) from another "
    "process, or the next one to start; its status goes to stderr.",
)
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
    follow: str | None,
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
    if follow is not None:
        if prompt is not None or session_id is not None or new or continue_:
            raise click.UsageError("--follow takes no PROMPT, --session, --new or --continue")
        run(_follow(store, tenant_id, user_id, None if follow == _LATEST else follow))
        return
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


async def _follow(store: str | None, tenant_id: str, user_id: str, session_id: str | None) -> None:
    """Print a reply as it streams in another process; its final status on stderr."""
    from threadline.store import connect

    db = await connect(store_url(store, create=False))
    try:
        if session_id is None:
            latest = await db.list_sessions(tenant_id, user_id=user_id, limit=1)
            if not latest:
                raise click.ClickException("no session to follow")
            session_id = latest[0].id
        click.echo(f"following session {session_id}", err=True)
        async for update in db.follow_reply(tenant_id, session_id, wait_next=True):
            click.echo(update.text, nl=False)
            if update.status is not None:
                click.echo()
                click.echo(f"reply {update.message_id}: {update.status}", err=True)
    finally:
        await db.close()


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
