"""threadline-jsonl: a threadline store kept in one append-only JSON-lines file."""

from threadline_jsonl.store import JsonlStore

__all__ = ["JsonlStore"]
