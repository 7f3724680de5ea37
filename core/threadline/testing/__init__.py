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
:class:`CheckpointConformance`, :class:`AgentConfigConformance`,
:class:`BadInputConformance`, :class:`RetentionConformance`.
"""

from __future__ import annotations

from threadline.testing.agent_configs import AgentConfigConformance
from threadline.testing.bad_input import BadInputConformance
from threadline.testing.checkpoints import CheckpointConformance
from threadline.testing.messages import MessageConformance
from threadline.testing.retention import RetentionConformance
from threadline.testing.sessions import SessionConformance
from threadline.testing.tenancy import TenancyConformance

__all__ = [
    "AgentConfigConformance",
    "BadInputConformance",
    "CheckpointConformance",
    "MessageConformance",
    "RetentionConformance",
    "SessionConformance",
    "StoreConformance",
    "TenancyConformance",
]


class StoreConformance(
    MessageConformance,
    SessionConformance,
    TenancyConformance,
    CheckpointConformance,
    AgentConfigConformance,
    BadInputConformance,
    RetentionConformance,
):
    """Every conformance test; subclass it and provide a ``store`` fixture."""
