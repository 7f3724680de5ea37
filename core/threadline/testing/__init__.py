"""The store conformance kit: the behaviour every threadline store must have.

Subclass :class:`StoreConformance` in your plugin's tests and provide a ``store``
fixture that yields an open, empty :class:`threadline.Store`::

    import pytest_asyncio
    import threadline
    from threadline.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest_asyncio.fixture
        async def store(self, tmp_path):
            store = await threadline.connect(f"mystore://{tmp_path}")
            yield store
            await store.close()

Needs ``pytest`` and ``pytest-asyncio`` (``pip install threadline[testing]``).
Each group can also be used alone: :class:`MessageConformance`,
:class:`SessionConformance`, :class:`TenancyConformance`,
:class:`CheckpointConformance`, :class:`ContractConformance`,
:class:`MessageDeletionConformance`, :class:`AgentConfigConformance`,
:class:`BadInputConformance`, :class:`RetentionConformance`,
:class:`DurabilityConformance`, :class:`ScalingConformance`, :class:`UsageConformance`,
:class:`BranchingConformance`, :class:`ShortcutConformance` (the optional shortcut hooks:
its tests skip on a store without them), :class:`MessageRowConformance`.

Optional fixtures turn on more checks (a test that needs one skips without it); each is a
plain (not async) fixture returning a callable:

* ``reopen``: ``async def reopen(store) -> Store`` closes the store and opens the same one
  again (for stores that persist; the tests close what it returns): everything must read
  back the same (:func:`reopen_by_url` is one for a store whose URL names its data);
* ``storage_bytes``: a callable (sync or async) returning the bytes the store's data takes
  now: checkpoint storage must follow the history;
* ``rows_touched``: a callable returning how many stored rows the store has read or
  examined so far: windows and id lookups are then checked by counting rows instead of
  by timings (the timing checks are marked ``slow``).
"""

from __future__ import annotations

from threadline.testing._support import reopen_by_url
from threadline.testing.agent_configs import AgentConfigConformance
from threadline.testing.bad_input import BadInputConformance
from threadline.testing.branching import BranchingConformance
from threadline.testing.checkpoints import CheckpointConformance
from threadline.testing.contract import ContractConformance, MessageDeletionConformance
from threadline.testing.durability import DurabilityConformance
from threadline.testing.message_rows import MessageRowConformance
from threadline.testing.messages import MessageConformance
from threadline.testing.retention import RetentionConformance
from threadline.testing.scaling import ScalingConformance
from threadline.testing.sessions import SessionConformance
from threadline.testing.shortcuts import ShortcutConformance
from threadline.testing.tenancy import TenancyConformance
from threadline.testing.usage import UsageConformance

__all__ = [
    "AgentConfigConformance",
    "BadInputConformance",
    "BranchingConformance",
    "CheckpointConformance",
    "ContractConformance",
    "DurabilityConformance",
    "MessageConformance",
    "MessageDeletionConformance",
    "MessageRowConformance",
    "RetentionConformance",
    "ScalingConformance",
    "SessionConformance",
    "ShortcutConformance",
    "StoreConformance",
    "TenancyConformance",
    "UsageConformance",
    "reopen_by_url",
]


class StoreConformance(
    MessageConformance,
    SessionConformance,
    TenancyConformance,
    CheckpointConformance,
    ContractConformance,
    MessageDeletionConformance,
    AgentConfigConformance,
    BadInputConformance,
    RetentionConformance,
    DurabilityConformance,
    ScalingConformance,
    UsageConformance,
    BranchingConformance,
    ShortcutConformance,
    MessageRowConformance,
):
    """Every conformance test; subclass it and provide a ``store`` fixture."""
