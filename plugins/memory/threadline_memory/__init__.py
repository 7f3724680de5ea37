"""threadline-memory: the store contract in process memory (tests, ephemeral use)."""

from threadline_memory.store import MemoryStore

__all__ = ["MemoryStore"]
