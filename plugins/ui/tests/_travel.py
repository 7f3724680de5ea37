"""A graph agent with tools and their inverses, for the rollback tests (also ``--agent``).

Every tool and inverse appends a line to the file named by ``$UI_TEST_TOOL_LOG``, so the
test sees what ran, whichever process ran it.
"""

from __future__ import annotations

import os
from typing import Any

from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy, inverse_of


def _log(line: str) -> None:
    path = os.environ.get("UI_TEST_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def reserve_seat(seat: str) -> str:
    _log(f"reserve {seat}")
    return f"seat {seat}"


@inverse_of(reserve_seat)
def release_seat(seat: str) -> None:
    _log(f"release {seat}")


def book_hotel(hotel: str) -> str:
    _log(f"book {hotel}")
    return f"booking-{hotel}"


@inverse_of(book_hotel)
def cancel_hotel(hotel: str, tool_result: str) -> None:
    _log(f"cancel {hotel} ({tool_result})")


def charge(amount: int) -> str:
    _log(f"charge {amount}")
    return "ok"


@inverse_of(charge)
def refund(amount: int) -> None:
    _log(f"refund {amount}")


def strategy() -> Strategy:
    """search -> book -> check -> finish."""
    s = Strategy("travel")

    @s.node("search")
    async def search(ctx: GraphContext, city: str) -> str:
        ctx.state["city"] = city
        await ctx.call_tool("reserve_seat", seat="1A")
        return city

    @s.node("book")
    async def book(ctx: GraphContext, city: str) -> str:
        ctx.state["booked"] = True
        await ctx.llm(f'tool:book_hotel {{"hotel": "{city}"}}')
        await ctx.call_tool("charge", amount=100)
        return city

    @s.node("check")
    async def check(ctx: GraphContext, city: str) -> str:
        ctx.state["checked"] = city
        return f"trip to {city}"

    s.edge(s.start, search).edge(search, book).edge(book, check).edge(check, s.finish)
    return s


def make_agent(storage: Any = None) -> GraphAgent:
    """The travel agent on ``storage`` (a store URL or Store; ``None``: keep nothing)."""
    return GraphAgent(
        strategy(),
        provider="echo",
        tools=[reserve_seat, book_hotel, charge],
        features=[Persistency(storage)],
    )


agent = make_agent()
"""For ``threadline ui --agent _travel:agent``: only its inverses are used."""
