"""Audit of the lagging step rows (runner/store/sql_steps.py) at the store's API, two store objects as two processes.

What another process could observe differently from when every event wrote its row:

* a reader whose statements straddle a writer's batch (PostgreSQL's read committed gives
  each statement its own snapshot): the writer commits between the reader's statements
  here, deterministically, and the reader must still see one exact state;
* a long-lived executing process (``runner worker``, ``runner serve``: one store object for
  its whole life) must not keep what it no longer needs of the runs it finished.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from runner.model import events as ev
from runner.store import Store
from runner.store.base import Lease, RunRecord
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    Backend,
    durable_fixture,
    pg_template,
    pg_url,
)
from tests.test_store import E, assert_rows_match_log, start_run


def _lease(store: Store, run_id: str = "r1") -> Lease:
    lease = store.claim_run(run_id, "w", 30.0).lease
    assert lease is not None
    return lease


class _Straddled:
    """The reader's cursor, made to run ``act`` (the writer's commits) right after its ``at``-th statement.

    Implementation-agnostic: whatever statements a read takes, a writer may commit between
    any two of them, and the answer must still be one exact state.
    """

    def __init__(self, cur: Any, at: int, act: Callable[[], None]) -> None:
        self._cur, self._at, self._act, self.n = cur, at, act, 0

    def execute(self, *args: Any) -> Any:
        out = self._cur.execute(*args)
        self.n += 1
        if self.n == self._at:
            self._act()
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _straddle(reader: Any, at: int, act: Callable[[], None]) -> _Straddled:
    reader._cur = _Straddled(reader._cur, at, act)
    return reader._cur


def _plain(reader: Any) -> None:
    """The reader's own cursor again; the writer moves on now if the read took fewer statements."""
    straddled = reader._cur
    reader._cur = straddled._cur
    if straddled.n < straddled._at:
        straddled._act()


def _writer_moves_on(writer: Store, lease: Lease) -> Callable[[], None]:
    """a completes; pull step b is assigned (a forced batch: rows written, lag cleared); c starts (lag again)."""

    def act() -> None:
        writer.append_many(
            [
                E(ev.STEP_COMPLETED, step_id="a", attempt=1, result=1),
                E(ev.STEP_STARTED, step_id="b", attempt=1, agent_id="ag"),
                E(ev.STEP_ASSIGNED, step_id="b", attempt=1, agent_id="ag", arguments={}, deadline=None),
            ],
            lease,
        )
        writer.append_many([E(ev.STEP_STARTED, step_id="c", attempt=1)], lease)

    return act


EXACT_AFTER = [("a", "completed", 1), ("b", "in_progress", 1), ("c", "in_progress", 1)]


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_get_steps_is_one_exact_state_when_a_batch_lands_between_its_statements(durable: Backend, at: int) -> None:
    writer, reader = durable.open(), durable.open()
    start_run(writer)
    lease = _lease(writer)
    writer.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], lease)
    _straddle(reader, at, _writer_moves_on(writer, lease))
    got = [(s.step_id, s.status, s.attempts) for s in reader.get_steps("r1")]
    _plain(reader)
    # Either the state before the writer moved on, or the one after: never a mix, never a step lost.
    assert got in ([("a", "in_progress", 1)], EXACT_AFTER), got
    assert [(s.step_id, s.status, s.attempts) for s in reader.get_steps("r1")] == EXACT_AFTER
    assert_rows_match_log(reader, "r1")


@pytest.mark.parametrize("at", [1, 2, 3])
def test_get_step_is_exact_when_a_batch_lands_between_its_statements(durable: Backend, at: int) -> None:
    writer, reader = durable.open(), durable.open()
    start_run(writer)
    lease = _lease(writer)
    writer.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], lease)
    _straddle(reader, at, _writer_moves_on(writer, lease))
    a = reader.get_step("r1", "a")
    _plain(reader)
    assert a is not None and (a.status, a.attempts) in (("in_progress", 1), ("completed", 1))
    a = reader.get_step("r1", "a")
    assert a is not None and (a.status, a.attempts, a.result) == ("completed", 1, 1)


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_waiting_steps_are_exact_when_a_batch_lands_while_they_are_listed(durable: Backend, at: int) -> None:
    writer, reader = durable.open(), durable.open()
    start_run(writer)
    lease = _lease(writer)
    writer.append_many(
        [
            E(ev.STEP_STARTED, step_id="p", attempt=1, agent_id="ag"),
            E(ev.STEP_ASSIGNED, step_id="p", attempt=1, agent_id="ag", arguments={}, deadline=None),
        ],
        lease,
    )
    writer.append_many([E(ev.STEP_STARTED, step_id="x", attempt=1)], lease)  # the rows lag again

    def p_times_out() -> None:  # p fails (its timeout) and the rows are written; then more lag
        writer.append_many([E(ev.STEP_FAILED, step_id="p", attempt=1, error="timed out")], lease)
        writer.append_many(
            [
                E(ev.STEP_STARTED, step_id="q", attempt=1, agent_id="ag2"),
                E(ev.STEP_ASSIGNED, step_id="q", attempt=1, agent_id="ag2", arguments={}, deadline=None),
            ],
            lease,
        )
        writer.append_many([E(ev.STEP_STARTED, step_id="y", attempt=1)], lease)

    _straddle(reader, at, p_times_out)
    listed = [a.step_id for a in reader.list_assignments(agent_id="ag")]
    _plain(reader)
    assert listed in (["p"], []), listed
    assert reader.list_assignments(agent_id="ag") == []
    assert [a.step_id for a in reader.list_assignments()] == ["q"]


def _finish_a_run(store: Store, run_id: str, n_steps: int) -> None:
    """What an executing process writes for one run of ``n_steps`` chained steps, to its end."""
    store.create_run(RunRecord(run_id=run_id, workflow_name="wf", workflow_hash="h" * 8))
    lease = _lease(store, run_id)
    store.append_many([E(ev.RUN_STARTED, run_id, workflow="wf", inputs={})], lease)
    for i in range(n_steps):
        sid = f"step-{i:05d}-of-a-long-workflow"
        store.append_many([E(ev.STEP_STARTED, run_id, step_id=sid, attempt=1)], lease)
        store.append_many([E(ev.STEP_COMPLETED, run_id, step_id=sid, attempt=1, result=i)], lease)
    store.append_many([E(ev.RUN_COMPLETED, run_id, outputs={})], lease)
    store.release_run(run_id, "w")


def test_a_long_lived_process_keeps_nothing_of_the_runs_it_finished(tmp_path: Any) -> None:
    from runner.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/runner.db")
    try:
        for k in range(3):
            _finish_a_run(store, f"warm{k}", 50)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for k in range(20):
                _finish_a_run(store, f"run{k}", 400)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # 20 finished runs of 400 steps: what stays must not grow with their steps (the previous
        # store kept ~5 KB here: the ids of the runs it had seen).
        assert grown < 200_000, f"{grown} bytes kept for 8,000 finished steps"
    finally:
        store.close()
