"""The conformance kit tells a good store from a bad one.

Each mutant below is :class:`threadline.storekit.ReferenceStore` with one defect a store
written from the docs could have (whole histories per checkpoint, id lookups that scan,
no duplicate check in a batch, data lost on reopen, ties in a random order). The kit's
own test classes run in process (``pytest.main`` on a generated module) against the
reference and against each mutant: the relevant kit test passes on the first and fails
on the second.
"""

from __future__ import annotations

import json
import random
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from threadline.hookspecs import hookimpl
from threadline.models import MAX_INT, ApiCall, Message, Session
from threadline.queries import MessageRange, SessionQuery
from threadline.storekit import CheckpointRecord, ReferenceStore
from threadline.storekit.delta import encode_history
from threadline.storekit.log import chain_history
from threadline.storekit.reference import Change

# -- a reference store that counts rows, reports its size and persists -----------------------


class Counting(ReferenceStore):
    """Counts the rows each operation reads or examines (the reference reads by index)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        self.rows += 1
        return super().get_session(tenant_id, session_id)

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        self.rows += len(messages) + 1  # one id probe each, the session row
        return super().save_messages(messages)

    def read_messages(self, tenant_id: str, session_id: str, query: MessageRange) -> list[Message]:
        found = super().read_messages(tenant_id, session_id, query)
        self.rows += len(found) + 1
        return found

    def rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        self.rows += len(messages)
        return super().rewrite_messages(tenant_id, messages, activity, only_streaming)

    def read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        found = super().read_checkpoint_records(tenant_id, checkpoint_id, chain)
        self.rows += len(found) + 1
        return found

    def list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        found = super().list_checkpoint_records(tenant_id, session_id, agent_id, latest)
        self.rows += len(found) + 1
        return found

    def insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        self.rows += 3  # the id, the parent, the session's last version
        return super().insert_checkpoint_record(record, parent_tag)

    def save_api_call(self, api_call: ApiCall) -> ApiCall:
        self.rows += 2
        return super().save_api_call(api_call)

    def storage_bytes(self) -> int:
        """The bytes it keeps for checkpoints: each record's text, and its fields."""
        with self._lock:
            return sum(len(r.record) + 256 for rs in self._records.values() for r in rs.values())


class Persisted(Counting):
    """A durable store: its changes as JSON lines in a file, written on close, replayed on
    open (the use :meth:`ReferenceStore.dump` and :meth:`ReferenceStore.apply` are for)."""

    forget: tuple[str, ...] = ()
    """Kinds of rows not written on close (a mutant's loss)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            self.apply([Change.from_json(json.loads(line)) for line in lines])

    @hookimpl
    def threadline_close(self) -> None:
        kept = (c.to_json() for c in self.dump() if c.kind not in self.forget)
        self.path.write_text("".join(json.dumps(c) + "\n" for c in kept), encoding="utf-8")


# -- the mutants ------------------------------------------------------------------------------


class WholeHistories(Persisted):
    """(a) Stores every checkpoint's whole history: storage quadratic in the run."""

    def insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        if record.depth:
            c = record.checkpoint
            parent = super().read_checkpoint_records(c.tenant_id, c.parent_id or "", True)
            history = chain_history([record, *parent])
            whole = encode_history(history, tenant_id=c.tenant_id, session_id=c.session_id)
            record = attrs.evolve(record, record=whole.text, depth=0)
        return super().insert_checkpoint_record(record, parent_tag)


class ScanningIds(Persisted):
    """(b) Finds a message, checkpoint or session id by scanning every row of the store."""

    def _scan(self, rows: Iterable[Any], match: Callable[[Any], bool]) -> None:
        for row in rows:
            self.rows += 1
            if match(row):
                return

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        with self._lock:
            for m in messages:
                every = (x for log in self._messages.values() for x in log)
                self._scan(every, lambda x, wanted=m.id: x.id == wanted)  # type: ignore[misc]
        return super().save_messages(messages)

    def read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        with self._lock:
            every = (r for rs in self._records.values() for r in rs.values())
            self._scan(every, lambda r: r.id == checkpoint_id)
        return super().read_checkpoint_records(tenant_id, checkpoint_id, chain)

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        with self._lock:
            self._scan(list(self._sessions.values()), lambda s: s.id == session_id)
        return super().get_session(tenant_id, session_id)


class ScanningSessions(Persisted):
    """(b') Reads a window or a count by going through the whole session."""

    def read_messages(self, tenant_id: str, session_id: str, query: MessageRange) -> list[Message]:
        with self._lock:
            self.rows += len(self._messages.get(session_id, ()))
        return super().read_messages(tenant_id, session_id, query)


class NoBatchCheck(Persisted):
    """(c) Stores a batch holding an id twice as two rows."""

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        out: list[Message] = []
        seen: set[str] = set()
        for m in messages:
            if m.id not in seen:
                seen.add(m.id)
                out += super().save_messages([m])
                continue
            with self._writer:
                again = attrs.evolve(m, seq=self._last_seq[m.session_id] + 1)
                self.commit([Change("messages", (again,))])
                out.append(again)
        return out


class ForgetsEverything(Persisted):
    """(d) A "durable" store that writes nothing on close."""

    @hookimpl
    def threadline_close(self) -> None:
        return None


class ForgetsApiCalls(Persisted):
    """(d') Loses its API calls across close and reopen."""

    forget = ("calls",)


class ForgetsCheckpoints(Persisted):
    """(d'') Loses its checkpoint records across close and reopen."""

    forget = ("records",)


class RandomTies(Persisted):
    """(e) Lists sessions with the same ``updated_at`` in a random order."""

    def list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        everything = attrs.evolve(query, limit=MAX_INT, offset=0, after=None)
        found = super().list_sessions(tenant_id, everything)
        found.sort(key=lambda s: (s.updated_at, random.random()), reverse=True)
        return found[query.offset : query.offset + query.limit]


# -- running the kit in process ---------------------------------------------------------------

MODULE = """
import sys

import pytest
import pytest_asyncio

import threadline
from threadline.testing import StoreConformance

KIND = sys.modules[{module!r}].MUTANTS[{kind!r}]


class TestKit(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self, tmp_path):
        store = threadline.Store(KIND(tmp_path / "state.jsonl"))
        yield store
        await store.close()


@pytest.fixture
def reopen(tmp_path):
    async def again(current):
        await current.close()
        return threadline.Store(KIND(tmp_path / "state.jsonl"))

    return again


@pytest.fixture
def rows_touched(store):
    return lambda: store.primary.rows


@pytest.fixture
def storage_bytes(store):
    return store.primary.storage_bytes
"""

MUTANTS: dict[str, type[Persisted]] = {
    cls.__name__: cls
    for cls in (
        Persisted,
        WholeHistories,
        ScanningIds,
        ScanningSessions,
        NoBatchCheck,
        ForgetsEverything,
        ForgetsApiCalls,
        ForgetsCheckpoints,
        RandomTies,
    )
}


class Outcomes:
    """A pytest plugin recording each test's outcome by test name."""

    def __init__(self) -> None:
        self.by_test: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rpartition("::")[2]
        if report.when == "call" or report.outcome != "passed":
            self.by_test[name] = report.outcome


def kit_args(folder: Path, path: Path) -> list[str]:
    """Arguments for an inner pytest run of the generated module, configured on its own."""
    ini = folder / "pytest.ini"
    ini.write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    slow: timing checks\n"
    )
    return [str(path), "-q", "-p", "no:cacheprovider", "-c", str(ini), "--rootdir", str(folder)]


def run_kit(tmp_path: Path, kind: str, tests: Sequence[str]) -> dict[str, str]:
    """Run the kit's ``tests`` (by name) against the store ``kind``: name -> outcome."""
    folder = tmp_path / f"kit_{kind}"
    folder.mkdir()
    path = folder / f"test_kit_{kind.lower()}.py"
    path.write_text(textwrap.dedent(MODULE.format(module=__name__, kind=kind)))
    outcomes = Outcomes()
    pytest.main([*kit_args(folder, path), "-k", " or ".join(tests)], plugins=[outcomes])
    sys.modules.pop(path.stem, None)
    missing = set(tests) - set(outcomes.by_test)
    assert not missing, f"kit tests not run: {missing}"
    return {t: outcomes.by_test[t] for t in tests}


CAUGHT = [
    ("WholeHistories", ["test_checkpoint_storage_follows_the_history"]),
    (
        "ScanningIds",
        [
            "test_id_lookups_touch_rows_independent_of_the_store",
            "test_id_lookups_take_time_independent_of_the_store",
        ],
    ),
    ("ScanningSessions", ["test_session_reads_touch_rows_independent_of_its_length"]),
    ("NoBatchCheck", ["test_a_batch_holding_an_id_twice_is_refused_whole"]),
    ("ForgetsEverything", ["test_everything_survives_close_and_reopen"]),
    ("ForgetsApiCalls", ["test_everything_survives_close_and_reopen"]),
    (
        "ForgetsCheckpoints",
        ["test_everything_survives_close_and_reopen", "test_writes_after_reopen_carry_on"],
    ),
    ("RandomTies", ["test_list_sessions_breaks_ties_by_id_descending"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("mutant", "tests"), CAUGHT, ids=[m for m, _ in CAUGHT])
def test_the_kit_fails_the_mutant_and_passes_the_reference(
    tmp_path: Path, mutant: str, tests: list[str]
) -> None:
    assert run_kit(tmp_path, mutant, tests) == dict.fromkeys(tests, "failed")
    assert run_kit(tmp_path, "Persisted", tests) == dict.fromkeys(tests, "passed")


@pytest.mark.slow
def test_the_reference_passes_the_whole_fast_kit(tmp_path: Path) -> None:
    """Every kit test but the timing ones, on the unmutated (persisting, counting) reference."""
    outcomes = Outcomes()
    folder = tmp_path / "whole"
    folder.mkdir()
    path = folder / "test_kit_whole.py"
    path.write_text(textwrap.dedent(MODULE.format(module=__name__, kind="Persisted")))
    code = pytest.main(
        [*kit_args(folder, path), "-m", "not slow"],
        plugins=[outcomes],
    )
    sys.modules.pop(path.stem, None)
    failed = sorted(t for t, outcome in outcomes.by_test.items() if outcome != "passed")
    assert code == 0 and not failed, failed
