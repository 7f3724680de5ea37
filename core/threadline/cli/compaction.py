"""``threadline sessions compact``: summarize a session's older rounds into a stored summary."""

from __future__ import annotations

import os

import click

from threadline.cli.app import with_store
from threadline.cli.options import json_option, print_json, store_option, tenant_options
from threadline.errors import ConfigurationError, NotFoundError
from threadline.models import Message
from threadline.store import Store

__all__ = ["compact_command"]


@click.command(name="compact")
@click.argument("session_id")
@store_option
@tenant_options
@click.option(
    "--keep-rounds",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="The newest rounds left as they are.",
)
@click.option(
    "--model", "-m", help="Model that summarizes (default: $OPENAI_MODEL or the provider's)."
)
@click.option("--provider", "-p", help="Provider name (default: openai if configured, else echo).")
@json_option
def compact_command(
    session_id: str,
    store: str | None,
    tenant_id: str,
    user_id: str,
    keep_rounds: int,
    model: str | None,
    provider: str | None,
    as_json: bool,
) -> None:
    """Summarize SESSION_ID's rounds before the last --keep-rounds into one stored summary
    message; agents send it in their place. The original messages stay stored."""
    from threadline.runtime.compaction import compact_session, model_summarizer
    from threadline.runtime.providers import resolve_provider

    async def work(db: Store) -> Message | None:
        session = await db.get_session(tenant_id, session_id)
        if session is None:
            raise NotFoundError(f"no session {session_id} for this tenant")
        chosen = resolve_provider(provider, {}, model)
        name = model or os.environ.get("OPENAI_MODEL") or chosen.default_model
        if not name:
            raise ConfigurationError("no model: pass --model or set OPENAI_MODEL")
        try:
            summarizer = model_summarizer(chosen, name, store=db, user_id=user_id)
            return await compact_session(
                db, tenant_id, session_id, summarizer, keep_rounds=keep_rounds, user_id=user_id
            )
        finally:
            await chosen.aclose()

    summary = with_store(store, work, create=False)
    if as_json:
        print_json(None if summary is None else summary.to_dict())
    elif summary is None:
        click.echo(f"nothing to compact: session {session_id} has {keep_rounds} rounds or fewer")
    else:
        info = summary.metadata["summary"]
        click.echo(
            f"summary {summary.id} (seq {summary.seq}) covers seqs "
            f"{info['first_seq']}..{info['last_seq']} ({info['messages']} messages)"
        )
