"""Strategies: named nodes joined by edges, from ``start`` to ``finish``.

::

    strategy = Strategy("support")

    @strategy.node("classify")
    async def classify(ctx: GraphContext, text: str) -> str: ...

    strategy.edge(strategy.start, classify)
    strategy.edge(classify, answer, when=lambda kind: kind == "question")
    strategy.edge(classify, escalate)                  # no condition: always taken
    strategy.edge(answer, strategy.finish)

A node is an async callable ``(ctx, input) -> output``. After it returns, its outgoing
edges are tried in the order they were added; the first whose ``when(output)`` is true
is taken, and the next node's input is ``transform(output)`` (or the output itself).
The run's input goes through the edges of ``start``; what reaches ``finish`` is the
run's result. The graph is wired by :class:`Node` objects, so two nodes may share a
name, except when Persistency is installed: checkpoints name the node to resume.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

import attrs

from threadline.errors import ValidationError
from threadline.graph.errors import GraphError

if TYPE_CHECKING:
    from threadline.graph.context import GraphContext

__all__ = ["FINISH", "START", "Edge", "Node", "NodeFunction", "Strategy"]

START = "__start__"
"""The name of every strategy's start node (reserved)."""
FINISH = "__finish__"
"""The name of every strategy's finish node (reserved); a checkpoint at it holds the result."""

NodeFunction = Callable[["GraphContext", Any], Any]
"""``async def node(ctx, input) -> output`` (a plain function returning a value works too)."""
Condition = Callable[[Any], Any]
Transform = Callable[[Any], Any]


@attrs.define(eq=False, repr=False)
class Node:
    """A named step of a strategy. Compared and hashed by identity."""

    name: str
    function: NodeFunction | None = None

    def __repr__(self) -> str:
        return f"<Node {self.name!r}>"

    async def run(self, ctx: GraphContext, value: Any) -> Any:
        """Call the node's function and await its result if it is awaitable."""
        if self.function is None:
            raise GraphError(f"node {self.name!r} has no function to run")
        result = self.function(ctx, value)
        if inspect.isawaitable(result):
            result = await result
        return result


@attrs.frozen(eq=False)
class Edge:
    """From ``source`` to ``target`` if ``condition(output)``; next input ``transform(output)``."""

    source: Node
    target: Node
    condition: Condition | None = None
    transform: Transform | None = None

    async def matches(self, output: Any) -> bool:
        if self.condition is None:
            return True
        verdict = self.condition(output)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def next_input(self, output: Any) -> Any:
        if self.transform is None:
            return output
        value = self.transform(output)
        if inspect.isawaitable(value):
            value = await value
        return value


NodeRef = Node | str


class Strategy:
    """A graph of nodes with one start and one finish; build it, then give it to a GraphAgent."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"a strategy needs a non-empty name, got {name!r}")
        self.name = name
        self.start = Node(START)
        self.finish = Node(FINISH)
        self._nodes: list[Node] = []
        self._edges: dict[Node, list[Edge]] = {self.start: []}
        self._parallel: dict[Node, tuple[tuple[Node, ...], Node]] = {}

    def __repr__(self) -> str:
        return f"<Strategy {self.name!r} nodes={[n.name for n in self._nodes]}>"

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes added, in order (``start`` and ``finish`` not included)."""
        return tuple(self._nodes)

    def add_node(self, name: str, function: NodeFunction) -> Node:
        """Add a node named ``name`` running ``function(ctx, input)``; return it."""
        if not isinstance(name, str) or not name:
            raise ValidationError(f"a node needs a non-empty name, got {name!r}")
        if name in (START, FINISH):
            raise ValidationError(f"{name!r} is reserved for the strategy's start and finish")
        if not callable(function):
            raise ValidationError(f"node {name!r} needs a callable, got {type(function).__name__}")
        node = Node(name, function)
        self._nodes.append(node)
        self._edges[node] = []
        return node

    @overload
    def node(self, name: NodeFunction, /) -> Node: ...

    @overload
    def node(self, name: str | None = None, /) -> Callable[[NodeFunction], Node]: ...

    def node(
        self, name: str | NodeFunction | None = None, /
    ) -> Node | Callable[[NodeFunction], Node]:
        """Decorator adding a node: ``@strategy.node`` (named after the function) or
        ``@strategy.node("name")``. The decorated name then refers to the :class:`Node`."""
        if callable(name):
            return self.add_node(getattr(name, "__name__", "node"), name)

        def decorate(function: NodeFunction) -> Node:
            label = name if isinstance(name, str) else getattr(function, "__name__", "node")
            return self.add_node(label, function)

        return decorate

    def edge(
        self,
        source: NodeRef,
        target: NodeRef,
        *,
        when: Condition | None = None,
        transform: Transform | None = None,
    ) -> Strategy:
        """Add an edge; ``when(output)`` and ``transform(output)`` may be sync or async."""
        src, dst = self.find(source), self.find(target)
        if src is self.finish:
            raise GraphError("no edge can leave the finish node")
        if dst is self.start:
            raise GraphError("no edge can enter the start node")
        self._edges[src].append(Edge(src, dst, when, transform))
        return self

    def parallel(self, source: NodeRef, branches: list[NodeRef], *, join: NodeRef) -> Strategy:
        """After ``source``, run ``branches`` at once (each gets its output), then ``join``
        with the list of their outputs (see :mod:`threadline.graph.parallel`)."""
        src, dst = self.find(source), self.find(join)
        nodes = tuple(self.find(b) for b in branches)
        if not nodes:
            raise GraphError("a parallel fan-out needs at least one branch")
        if src is self.finish or dst is self.start or self.start in nodes:
            raise GraphError("a fan-out cannot leave finish, nor run or join at start")
        if len(set(nodes)) != len(nodes):
            raise GraphError("a fan-out names one branch twice")
        self._parallel[src] = (nodes, dst)
        for node in nodes:
            if not any(e.target is dst for e in self._edges[node]):
                self._edges[node].append(Edge(node, dst))
        return self

    def fan_out_of(self, node: Node, output: Any) -> tuple[list[tuple[Node, Any]], Node] | None:
        """The branches (with inputs) and join to run after ``node`` returned ``output``."""
        from threadline.graph.parallel import FanOut

        if isinstance(output, FanOut):
            if not output.sends:
                raise GraphError(f"node {node.name!r} returned a FanOut with no branches")
            return [(self.find(s.node), s.input) for s in output.sends], self.find(output.join)
        marked = self._parallel.get(node)
        if marked is None:
            return None
        return [(branch, output) for branch in marked[0]], marked[1]

    def edges_from(self, node: Node) -> tuple[Edge, ...]:
        """The edges leaving ``node``, in the order they are tried."""
        return tuple(self._edges.get(node, ()))

    def find(self, ref: NodeRef) -> Node:
        """The node ``ref`` (a :class:`Node` of this strategy, or the name of exactly one)."""
        if isinstance(ref, Node):
            if ref is self.start or ref is self.finish or ref in self._edges:
                return ref
            raise GraphError(f"{ref!r} is not a node of strategy {self.name!r}")
        if ref == START:
            return self.start
        if ref == FINISH:
            return self.finish
        found = [n for n in self._nodes if n.name == ref]
        if not found:
            raise GraphError(f"strategy {self.name!r} has no node named {ref!r}")
        if len(found) > 1:
            raise GraphError(
                f"{len(found)} nodes of strategy {self.name!r} are named {ref!r}; "
                "pass the Node object instead"
            )
        return found[0]

    def duplicate_names(self) -> dict[str, int]:
        """Node names used more than once, with how many nodes use each."""
        counts = Counter(n.name for n in self._nodes)
        return {name: count for name, count in counts.items() if count > 1}

    def validate(self) -> None:
        """Refuse a strategy that cannot run: no edge from start, or a node with no way out."""
        if not self._edges[self.start] and self.start not in self._parallel:
            raise GraphError(f"strategy {self.name!r} has no edge from its start node")
        dead_ends = [n.name for n in self._nodes if not self._edges[n] and n not in self._parallel]
        if dead_ends:
            raise GraphError(
                f"strategy {self.name!r}: node(s) {dead_ends} have no outgoing edge "
                "(add an edge to strategy.finish)"
            )

    async def next_step(self, node: Node, output: Any) -> tuple[Node, Any]:
        """The node to run after ``node`` produced ``output``, and that node's input."""
        for edge in self._edges.get(node, ()):
            if await edge.matches(output):
                return edge.target, await edge.next_input(output)
        raise GraphError(
            f"no edge from node {node.name!r} of strategy {self.name!r} matches its output "
            f"(a {type(output).__name__})"
        )
