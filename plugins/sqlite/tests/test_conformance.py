"""The store contract, run against a real SQLite file."""

from __future__ import annotations

from threadline.testing import StoreConformance


class TestSQLiteConformance(StoreConformance):
    """Every conformance test; the ``store`` fixture comes from conftest (a fresh file)."""
