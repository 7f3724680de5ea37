"""The store kit: what every store would otherwise write again, written once over the
required hooks (:data:`threadline.hookspecs.REQUIRED_HOOKS`).

* :mod:`threadline.storekit.log`: the checkpoint log (write tags, the history cache,
  snapshots and deltas, chain reads, the prune plan and the erase-rewrite plan);
* :mod:`threadline.storekit.defaults`: a default for every derived hook, which the
  :class:`threadline.Store` dispatch binds to each stacked store that lacks its own;
* :class:`ReferenceStore`: the smallest complete store, the required tier over a dict.
"""

from __future__ import annotations

from threadline.storekit.records import CheckpointRecord, RecordRewrite, StaleRecordError
from threadline.storekit.reference import ReferenceStore

__all__ = ["CheckpointRecord", "RecordRewrite", "ReferenceStore", "StaleRecordError"]
