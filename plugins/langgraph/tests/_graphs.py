"""Graphs the tests run: a chat loop with a deterministic model, and an approval graph.

Also a process entry point for the cross-process tests: ``python _graphs.py URL THREAD
start|resume [ANSWER]`` runs the approval graph on the store at ``URL`` until its
``interrupt()`` (``start``) or resumes it with ``Command(resume=ANSWER)``, and prints the
result as one JSON document.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from threadline_langgraph import ThreadlineSaver


def fake_model(state: MessagesState) -> dict[str, Any]:
    """A deterministic reply (no network): it quotes the question and pads to ~400 chars."""
    last = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"reply to {last[:40]} " + "x" * 350)]}


def chat_graph(saver: Any) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("model", fake_model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    return graph.compile(checkpointer=saver)


def question(i: int) -> HumanMessage:
    words = " ".join(f"word{(i * 7 + k) % 97}" for k in range(60))
    return HumanMessage(content=f"question {i}: {words}"[:400])


class Refund(TypedDict, total=False):
    amount: int
    approved: str
    log: list[str]


def draft(state: Refund) -> dict[str, Any]:
    return {"log": [*state.get("log", []), f"drafted {state['amount']}"]}


def approve(state: Refund) -> dict[str, Any]:
    answer = interrupt({"question": "approve refund?", "amount": state["amount"]})
    return {"approved": answer, "log": [*state["log"], f"answer {answer}"]}


def approval_graph(saver: Any) -> Any:
    graph = StateGraph(Refund)
    graph.add_node("draft", draft)
    graph.add_node("approve", approve)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "approve")
    graph.add_edge("approve", END)
    return graph.compile(checkpointer=saver)


def _main(url: str, thread: str, command: str, answer: str = "") -> None:
    config = {"configurable": {"thread_id": thread}}
    with ThreadlineSaver.from_conn_string(url) as saver:
        graph = approval_graph(saver)
        if command == "start":
            result = graph.invoke({"amount": 42}, config)
        else:
            result = graph.invoke(Command(resume=answer), config)
        state = graph.get_state(config)
        interrupts = [i.value for task in state.tasks for i in task.interrupts]
    out = {k: v for k, v in result.items() if k != "__interrupt__"}
    print(json.dumps({"result": out, "next": list(state.next), "interrupts": interrupts}))


if __name__ == "__main__":
    _main(*sys.argv[1:])
