"""Items of every kind the Agents SDK puts in a session, as ``model_dump`` writes them."""

from __future__ import annotations

from typing import Any


def user(text: str) -> dict[str, Any]:
    """The item ``Runner.run(agent, text)`` stores for the user's input."""
    return {"content": text, "role": "user"}


EVERY_ITEM: list[dict[str, Any]] = [
    user("What is the weather in Paris?"),
    {"role": "developer", "content": "Answer in French."},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Et à Lyon ?"}]},
    {
        "id": "msg_01",
        "content": [
            {"annotations": [], "text": "Je regarde.", "type": "output_text", "logprobs": []}
        ],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    },
    {
        "arguments": '{"city":"Paris"}',
        "call_id": "call_weather_1",
        "name": "get_weather",
        "type": "function_call",
        "id": "fc_01",
        "status": "completed",
    },
    {"call_id": "call_weather_1", "output": "ensoleillé, 21°C", "type": "function_call_output"},
    {
        "id": "rs_01",
        "summary": [{"text": "The user wants weather.", "type": "summary_text"}],
        "type": "reasoning",
        "encrypted_content": "gAAAAB...==",
        "content": None,
    },
    {  # a handoff: a function call to transfer_to_<agent> and its output
        "arguments": "{}",
        "call_id": "call_handoff_1",
        "name": "transfer_to_billing_agent",
        "type": "function_call",
        "id": "fc_02",
    },
    {
        "call_id": "call_handoff_1",
        "output": '{"assistant": "Billing agent"}',
        "type": "function_call_output",
    },
    {
        "id": "cu_01",
        "action": {"type": "click", "x": 10, "y": 20, "button": "left"},
        "call_id": "call_computer_1",
        "pending_safety_checks": [],
        "status": "completed",
        "type": "computer_call",
    },
    {
        "call_id": "call_computer_1",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,iVBORw0K"},
        "type": "computer_call_output",
    },
    {
        "id": "fs_01",
        "queries": ["refund policy"],
        "status": "completed",
        "type": "file_search_call",
        "results": [{"file_id": "file_1", "score": 0.97, "text": "Refunds within 30 days."}],
    },
    {"id": "ws_01", "status": "completed", "type": "web_search_call", "action": None},
    {
        "id": "mcp_01",
        "arguments": '{"q": 1}',
        "name": "lookup",
        "server_label": "docs",
        "type": "mcp_call",
        "output": None,
        "error": None,
    },
    {"id": "ig_01", "result": "aGVsbG8=", "status": "completed", "type": "image_generation_call"},
    {"id": "msg_02", "type": "item_reference"},
    {
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "Two ", "annotations": []},
            {"type": "refusal", "refusal": "no"},
            {"type": "output_text", "text": 'parts \u0000 with a NUL, 🎉 and \\ " quotes'},
        ],
    },
    {"role": "user", "content": "", "big": 10**30, "float": 1e100, "neg": -0.5, "flag": True},
    {"type": "some_future_item", "nested": {"deep": [[[{"x": None}]]]}, "text": "kept"},
]
"""Messages (easy, typed, multi-part), function calls and outputs, reasoning, a handoff,
computer, file and web search, MCP, image generation, references, and items the SDK does
not know yet: each must come back equal and in the same key order."""
