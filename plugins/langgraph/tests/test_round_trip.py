"""Everything LangGraph keeps comes back as it went in: the same graph on InMemorySaver and on
ThreadlineSaver gives the same state history, pending writes, ``Send`` packets, interrupts
and subgraph namespaces; threads show up as threadline sessions; mistakes raise typed errors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from _graphs import chat_graph, question
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Interrupt, Send, interrupt
from typing_extensions import TypedDict

import threadline
from threadline.errors import ConfigurationError, ValidationError
from threadline_langgraph import ThreadlineSaver, session_id_for
from threadline_langgraph.ids import DEFAULT_TENANT_ID


class Inner(TypedDict, total=False):
    notes: Annotated[list[str], operator.add]


class Outer(TypedDict, total=False):
    topics: list[str]
    notes: Annotated[list[str], operator.add]
    verdict: str


def research(state: Inner) -> dict[str, Any]:
    return {"notes": [f"summary of {len(state['notes'])}"]}


def review(state: Inner) -> dict[str, Any]:
    ok = interrupt({"check": state["notes"][-1]})
    return {"notes": [f"reviewed: {ok}"]}


def inner_graph() -> Any:
    graph = StateGraph(Inner)
    graph.add_node("research", research)
    graph.add_node("review", review)
    graph.add_edge(START, "research")
    graph.add_edge("research", "review")
    graph.add_edge("review", END)
    return graph.compile()


def fan_out(state: Outer) -> list[Send]:
    return [Send("worker", {"topic": t}) for t in state["topics"]]


def worker(state: dict[str, Any]) -> dict[str, Any]:
    return {"notes": [f"worked {state['topic']}"]}


def decide(state: Outer) -> dict[str, Any]:
    return {"verdict": f"{len(state['notes'])} notes"}


def outer_graph(saver: Any) -> Any:
    graph = StateGraph(Outer)
    graph.add_node("worker", worker)
    graph.add_node("deep", inner_graph())
    graph.add_node("decide", decide)
    graph.add_conditional_edges(START, fan_out, ["worker"])
    graph.add_edge("worker", "deep")
    graph.add_edge("deep", "decide")
    graph.add_edge("decide", END)
    return graph.compile(checkpointer=saver)


def _plain(value: Any) -> Any:
    """``value`` with interrupts as their payload (their ids derive from checkpoint ids)."""
    if isinstance(value, Interrupt):
        return ("interrupt", _plain(value.value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _history(graph: Any, config: dict[str, Any]) -> list[Any]:
    """The state history without the ids and times that differ between savers."""
    out = []
    for snap in graph.get_state_history(config):
        tasks = [(t.name, t.path, [i.value for i in t.interrupts], t.result) for t in snap.tasks]
        meta = {k: v for k, v in snap.metadata.items() if k not in ("parents", "thread_id")}
        out.append((snap.values, snap.next, meta, tasks))
    return _plain(out)


def _drive(saver: Any) -> tuple[list[Any], list[Any]]:
    graph = outer_graph(saver)
    config = {"configurable": {"thread_id": "research-1"}}
    first = graph.invoke({"topics": ["a", "b", "c"], "notes": []}, config)
    state = graph.get_state(config, subgraphs=True)
    sub = [(t.name, t.state.values if t.state else None) for t in state.tasks]
    done = graph.invoke(Command(resume="fine"), config)
    return _plain([first, sub, done]), _history(graph, config)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_same_history_as_langgraphs_own_saver(kind: str, store_url: Callable[[str], str]) -> None:
    expected = _drive(InMemorySaver())
    with ThreadlineSaver.from_conn_string(store_url(kind)) as saver:
        got = _drive(saver)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert len(got[1]) >= 5


def test_messages_of_every_kind_round_trip(store_url: Callable[[str], str]) -> None:
    messages = [
        HumanMessage("hi", id="not-a-uuid", name="ann"),
        AIMessage(
            content="",
            tool_calls=[{"name": "lookup", "args": {"q": 1}, "id": "call-1"}],
            response_metadata={"model": "m"},
            usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        ),
        ToolMessage(content="42", tool_call_id="call-1", artifact={"raw": [1, 2]}),
        AIMessage(content=[{"type": "text", "text": "block content"}]),
        HumanMessage("no id"),
    ]

    def node(state: MessagesState) -> dict[str, Any]:
        return {"messages": messages}

    graph = StateGraph(MessagesState)
    graph.add_node("n", node)
    graph.add_edge(START, "n")
    graph.add_edge("n", END)
    config = {"configurable": {"thread_id": "kinds"}}
    url = store_url("sqlite")
    with ThreadlineSaver.from_conn_string(url) as saver:
        sent = graph.compile(checkpointer=saver).invoke({"messages": []}, config)["messages"]
    with ThreadlineSaver.from_conn_string(url) as saver:  # a new process: nothing cached
        back = graph.compile(checkpointer=saver).get_state(config).values["messages"]
    assert back == sent
    assert [type(m) for m in back] == [type(m) for m in sent]


async def test_threads_are_threadline_sessions(store_url: Callable[[str], str]) -> None:
    url = store_url("sqlite")
    user = "0199c7d2-0000-7000-8000-00000000beef"
    async with ThreadlineSaver.afrom_conn_string(url, user_id=user) as saver:
        graph = chat_graph(saver)  # no interrupt(): async interrupts need Python 3.11
        await graph.ainvoke({"messages": [question(1)]}, {"configurable": {"thread_id": "t-9"}})
    store = await threadline.connect(url)
    try:
        sid = session_id_for(DEFAULT_TENANT_ID, "t-9")
        session = await store.get_session(DEFAULT_TENANT_ID, sid)
        assert session is not None and session.user_id == user
        assert session.metadata["langgraph"]["thread_id"] == "t-9"
        assert await store.list_checkpoints(DEFAULT_TENANT_ID, session_id=sid)
        counts = await store.erase_user(DEFAULT_TENANT_ID, user)
        assert counts["sessions"] == 1
        assert await store.get_session(DEFAULT_TENANT_ID, sid) is None
    finally:
        await store.close()


async def test_mistakes_raise_typed_errors(store_url: Callable[[str], str]) -> None:
    async with ThreadlineSaver.afrom_conn_string(store_url("memory")) as saver:
        with pytest.raises(ValidationError, match="thread_id"):
            await saver.aget_tuple({"configurable": {}})
        with pytest.raises(ValidationError, match="tenant_id"):
            await saver.aget_tuple({"configurable": {"thread_id": "t", "tenant_id": "acme"}})
        with pytest.raises(ValidationError, match="strategy"):
            await saver.aprune(["t"], strategy="keep_some")
        with pytest.raises(ConfigurationError, match="async graph API"):
            saver.get_tuple({"configurable": {"thread_id": "t"}})  # on the store's own loop
    with pytest.raises(ValidationError, match="tenant_id"):
        ThreadlineSaver(saver.store, tenant_id="acme")
