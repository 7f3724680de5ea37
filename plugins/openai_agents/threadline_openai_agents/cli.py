"""``threadline agents-sdk``: Agents SDK sessions seen from the command line."""

from __future__ import annotations

import json

import click

from threadline.cli.app import with_store
from threadline.cli.options import store_option, tenant_options
from threadline.store import Store


@click.group(name="agents-sdk")
def agents_sdk() -> None:
    """OpenAI Agents SDK sessions kept by ThreadlineSession."""


@agents_sdk.command(name="items")
@click.argument("session_id")
@store_option
@tenant_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the latest N items.")
def items_command(
    session_id: str, store: str | None, tenant_id: str, user_id: str, limit: int | None
) -> None:
    """Print the items a Runner would read from SESSION_ID, one JSON object a line."""
    from threadline.ids import check_id

    tenant_id = check_id(tenant_id, "tenant_id")  # before the store is opened
    user_id = check_id(user_id, "user_id")

    async def work(db: Store) -> list[object]:
        from threadline_openai_agents.session import ThreadlineSession  # imports the SDK

        session = ThreadlineSession(session_id, db, tenant_id=tenant_id, user_id=user_id)
        return list(await session.get_items(limit))

    for item in with_store(store, work, create=False):
        click.echo(json.dumps(item, ensure_ascii=False))
