"""Features: what ``GraphAgent(features=[...])`` installs (Koog's ``install(...)``).

A feature sees the strategy when the agent is built and every node as it runs; every
hook is optional. :class:`~threadline.graph.Persistency` is the feature that ships here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline.graph.context import GraphContext
    from threadline.graph.strategy import Strategy

__all__ = ["Feature"]


class Feature:
    """Base class of agent features; override the hooks you need."""

    def check_strategy(self, strategy: Strategy) -> None:
        """Refuse a strategy this feature cannot work with (called when the agent is built)."""

    async def before_node(self, ctx: GraphContext, node: str, input: Any) -> None:
        """Called before node ``node`` runs with ``input``."""

    async def after_node(self, ctx: GraphContext, node: str, output: Any) -> None:
        """Called after node ``node`` returned ``output`` (before the next node is chosen)."""

    async def close(self) -> None:
        """Release what the feature opened; called by ``GraphAgent.close()``."""
