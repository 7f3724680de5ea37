"""Graph agents with checkpoints (Koog's strategies and ``Persistency``).

::

    from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy

    strategy = Strategy("support")

    @strategy.node("answer")
    async def answer(ctx: GraphContext, question: str) -> str:
        return await ctx.llm(question)

    strategy.edge(strategy.start, answer).edge(answer, strategy.finish)
    agent = GraphAgent(strategy, provider="echo",
                       features=[Persistency(storage="sqlite:///chat.db")])
    result = await agent.run("hi", session_id=s)   # after a crash: resumes where it stopped

A node may wait for a person (``await ctx.interrupt(payload)``, see
:mod:`threadline.graph.interrupts`) or fan out to branches that run at once
(:mod:`threadline.graph.parallel`). See :mod:`threadline.graph.persistency` for what a
checkpoint holds,
:mod:`threadline.graph.serialization` for the input and state types supported, and
:mod:`threadline.graph.rollback` for inverse tools.
"""

from __future__ import annotations

from threadline.graph.agent import GraphAgent, default_agent_id
from threadline.graph.context import MAX_TOOL_ROUNDS, GraphContext
from threadline.graph.errors import (
    CheckpointSerializationError,
    CheckpointWarning,
    DuplicateNodeNameError,
    GraphError,
    InterruptError,
    NondeterministicNodeError,
    RollbackError,
    ToolRejectedError,
)
from threadline.graph.features import Feature
from threadline.graph.handle import PersistencyHandle
from threadline.graph.interrupts import Interrupted
from threadline.graph.parallel import FanOut, Send
from threadline.graph.persistency import Persistency
from threadline.graph.rollback import inverse_of
from threadline.graph.serialization import Serializer
from threadline.graph.storage import CheckpointStorageProvider
from threadline.graph.strategy import FINISH, START, Edge, Node, Strategy

__all__ = [
    "FINISH",
    "MAX_TOOL_ROUNDS",
    "START",
    "CheckpointSerializationError",
    "CheckpointStorageProvider",
    "CheckpointWarning",
    "DuplicateNodeNameError",
    "Edge",
    "FanOut",
    "Feature",
    "GraphAgent",
    "GraphContext",
    "GraphError",
    "InterruptError",
    "Interrupted",
    "Node",
    "NondeterministicNodeError",
    "Persistency",
    "PersistencyHandle",
    "RollbackError",
    "Send",
    "Serializer",
    "Strategy",
    "ToolRejectedError",
    "default_agent_id",
    "inverse_of",
]
