"""Records written by earlier versions of the saver (LangGraph's field names in
``state["checkpoint"]``, one whole item per pending write, every property written out)
read the same as the compact records written now: stored threads stay readable."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from threadline.models import Checkpoint as Record
from threadline_langgraph.messages import MessageCodec
from threadline_langgraph.records import tuple_of

SESSION = "0199c7d2-3a51-7e0b-8f4c-2b6d9e1a7c35"
TENANT = "00000000-0000-7000-8000-000000000001"
TASK = "4f2216fe-699f-c42a-3cce-617bc6ac4bdf"
CHECKPOINT_ID = "1f1ef42d-4431-6987-8255-63e0be6bc18f"
PARENT_ID = "1f1ef42d-4420-6002-8254-ff200e6640e9"
TS = "2026-12-03T17:56:13.324285+00:00"


def _record(record_id: str, state: dict[str, Any], info: dict[str, Any]) -> Record:
    return Record(
        id=record_id, tenant_id=TENANT, session_id=SESSION, state=state,
        properties={"langgraph": info},
    )  # fmt: skip


def _tuple(checkpoint: Record, writes: Record) -> Any:
    codec = MessageCodec(JsonPlusSerializer())
    return tuple_of(codec, checkpoint, [writes], "t-1")


def test_earlier_records_read_as_the_compact_ones() -> None:
    versions = {"__start__": 5, "messages": 5, "branch:to:model": 5}
    seen = {"__input__": {}, "__start__": {"__start__": 4}}
    reply = {"m": {"c": "hello", "t": "ai"}}
    meta = {"source": "loop", "step": 1, "parents": {}}
    old = _tuple(
        _record("0199c7d2-3a51-7e0b-8f4c-000000000001", {
            "checkpoint": {"v": 4, "ts": TS, "channel_versions": versions,
                           "versions_seen": seen, "updated_channels": ["messages"],
                           "channel_values": {"branch:to:model": None}},
            "channel": "messages",
        }, {"kind": "checkpoint", "ns": "", "id": CHECKPOINT_ID, "gen": 0,
            "parent": PARENT_ID, "metadata": meta}),
        _record("0199c7d2-3a51-7e0b-8f4c-000000000002", {"writes": [
            [TASK, "messages", 0, "~__pregel_pull, model", [reply]],
            [TASK, "__interrupt__", -3, "~__pregel_pull, model", "stop"],
        ]}, {"kind": "writes", "ns": "", "id": CHECKPOINT_ID, "gen": 0, "n": 0}),
    )  # fmt: skip
    new = _tuple(
        _record("0199c7d2-3a51-7e0b-8f4c-000000000001", {
            "c": {"v": 4, "t": 1796320573324285, "cv": versions, "vs": seen,
                  "uc": ["messages"], "cx": {"branch:to:model": None}},
        }, {"kind": "checkpoint", "id": CHECKPOINT_ID, "parent": PARENT_ID, "metadata": meta}),
        _record("0199c7d2-3a51-7e0b-8f4c-000000000002", {
            "t": TASK, "p": "~__pregel_pull, model",
            "w": [["messages", [reply]], ["__interrupt__", "stop", -3]],
        }, {"kind": "writes", "id": CHECKPOINT_ID, "n": 0}),
    )  # fmt: skip
    assert old == new
    assert new.checkpoint["ts"] == TS
    assert new.checkpoint["channel_versions"] == versions
    assert new.pending_writes == [  # LangGraph's order: special writes first
        (TASK, "__interrupt__", "stop"),
        (TASK, "messages", [AIMessage(content="hello")]),
    ]
    assert new.parent_config == {
        "configurable": {"thread_id": "t-1", "checkpoint_ns": "", "checkpoint_id": PARENT_ID}
    }
