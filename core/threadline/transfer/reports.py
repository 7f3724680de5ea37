"""What a transfer did: :class:`CopyReport` (per tenant and kind) and :class:`ImportReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from threadline.transfer.format import Footer, Header, empty_counts

__all__ = ["KINDS", "CopyReport", "ImportReport", "KindCount", "TenantReport"]

KINDS: tuple[str, ...] = ("providers", "agents", "sessions", "messages", "api_calls", "checkpoints")
"""The row kinds counted per tenant by :class:`TenantReport`."""


@dataclass
class KindCount:
    """One kind of row of one tenant: in the source, found in the destination, written now."""

    source: int = 0
    destination: int = 0
    copied: int = 0

    @property
    def ok(self) -> bool:
        """True when the destination holds every source row."""
        return self.source == self.destination


@dataclass
class TenantReport:
    """What :func:`copy_store` did for one tenant, kind by kind (see :data:`KINDS`)."""

    tenant_id: str
    counts: dict[str, KindCount] = field(default_factory=lambda: {k: KindCount() for k in KINDS})

    @property
    def ok(self) -> bool:
        """True when every kind verified."""
        return all(c.ok for c in self.counts.values())


@dataclass
class CopyReport:
    """The result of :func:`copy_store`: per-tenant counts, verified after copying."""

    tenants: list[TenantReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the destination holds every source row of every tenant."""
        return all(t.ok for t in self.tenants)

    def total(self, kind: str, what: str = "copied") -> int:
        """The sum over tenants of ``what`` (source, destination, copied) for ``kind``."""
        return sum(getattr(t.counts[kind], what) for t in self.tenants)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``threadline copy --json``)."""
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "tenants": [
                {
                    "tenant_id": t.tenant_id,
                    "ok": t.ok,
                    "counts": {
                        k: {"source": c.source, "destination": c.destination, "copied": c.copied}
                        for k, c in t.counts.items()
                    },
                }
                for t in self.tenants
            ],
        }


@dataclass
class ImportReport:
    """The result of :func:`import_records`.

    ``counts`` holds the records read and applied per type (rows already in the store
    count: import is idempotent); ``new`` those the store did not hold yet (0 for every
    type when the same file is imported again, as :func:`copy_store` reports). ``complete``
    is False when the file has no footer (it was cut short) or the footer's counts differ
    from the records read; ``problem`` says why.
    """

    header: Header | None = None
    footer: Footer | None = None
    counts: dict[str, int] = field(default_factory=empty_counts)
    new: dict[str, int] = field(default_factory=empty_counts)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        """True when the whole file was read and its footer's counts match."""
        return self.footer is not None and self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``threadline import --json``)."""
        return {
            "complete": self.complete,
            "problem": self.problem,
            "version": None if self.header is None else self.header.version,
            "counts": dict(self.counts),
            "new": dict(self.new),
        }
