"""The whole threadline store conformance suite against the real server."""

from __future__ import annotations

from threadline.testing import StoreConformance


class TestPostgresConformance(StoreConformance):
    """Every conformance test; the ``store`` fixture (conftest) gives a fresh schema."""
