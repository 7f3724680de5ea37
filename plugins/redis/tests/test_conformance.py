"""The whole threadline store conformance kit against the machine's Redis."""

from __future__ import annotations

from threadline.testing import StoreConformance


class TestRedisConformance(StoreConformance):
    """Every conformance test; ``store`` (conftest) gives a prefix of its own."""
