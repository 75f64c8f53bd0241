"""Step rows that follow the event log in batches (runner/store/sql_steps.py), on SQLite and PostgreSQL.

Each test first shows the rows really are behind the log (``steps_lag`` set, rows
missing or stale), so what it then checks — every reader, in another store object as
another process would be, sees exactly the projection of the log — is the fold at work,
not rows that happened to be written already.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from runner.errors import LeaseLost, NotStorable, Refused
from runner.model import events as ev
from runner.store import Store
from runner.store.base import Lease, RunRecord
from runner.store.migrations import MIGRATIONS, SCHEMA_VERSION, statements
from runner.store.sqlite import SQLiteStore
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    Backend,
    backend_fixture,
    durable_fixture,
    pg_template,
    pg_url,
)
from tests.test_store import E, assert_rows_match_log, start_run


def raw(store: Store) -> tuple[dict[str, tuple[str, int]], Any]:
    """The step rows of run r1 as written (status, attempts), and its ``steps_lag``: no fold."""
    s: Any = store
    with s._tx(write=False) as cur:
        cur.execute(s._sql["steps_of_run"], ("r1",))
        rows = {r[1]: (r[2], r[3]) for r in cur.fetchall()}
        cur.execute(s._sql["steps_lag_read"], ("r1",))
        lag = cur.fetchone()[0]
    return rows, lag


def claimed(store: Store, owner: str, ttl_s: float = 30.0) -> Lease:
    lease = store.claim_run("r1", owner, ttl_s).lease
    assert lease is not None
    return lease


def test_a_running_runs_rows_lag_and_every_reader_folds_the_log(durable: Backend) -> None:
    writer = durable.open()
    start_run(writer)
    lease = claimed(writer, "w")
    writer.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], lease)
    writer.append_many(
        [E(ev.STEP_COMPLETED, step_id="a", attempt=1, result={"n": 1}), E(ev.STEP_STARTED, step_id="b", attempt=1)],
        lease,
    )

    reader = durable.open()
    rows, lag = raw(reader)
    assert rows == {} and lag is not None  # nothing written as rows yet
    steps = {s.step_id: s for s in reader.get_steps("r1")}
    assert [s.step_id for s in reader.get_steps("r1")] == ["a", "b"]  # the order they first appeared
    assert steps["a"].status == "completed" and steps["a"].result == {"n": 1} and steps["a"].attempts == 1
    assert steps["b"].status == "in_progress"
    one = reader.get_step("r1", "b")
    assert one is not None and one.status == "in_progress" and one.attempts == 1
    assert reader.get_step("r1", "zz") is None
    assert_rows_match_log(reader, "r1")

    writer.append_many([E(ev.STEP_COMPLETED, step_id="b", attempt=1, result=2), E(ev.RUN_COMPLETED, outputs={})], lease)
    rows, lag = raw(reader)
    assert rows == {"a": ("completed", 1), "b": ("completed", 1)} and lag is None  # the end writes them
    assert_rows_match_log(reader, "r1")


def test_a_successor_picks_up_the_tail_a_dead_writer_left(durable: Backend) -> None:
    first = durable.open()
    start_run(first)
    old = claimed(first, "first", ttl_s=0.05)
    first.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], old)
    first.append_many(
        [E(ev.STEP_COMPLETED, step_id="a", attempt=1, result=1), E(ev.STEP_STARTED, step_id="b", attempt=1)], old
    )
    time.sleep(0.1)  # the first writer "died": its lease runs out with its rows unwritten

    second = durable.open()
    assert raw(second)[0] == {}
    new = claimed(second, "second")
    assert new.epoch == old.epoch + 1
    # b was in flight at the crash: the same attempt again, then c, then the end
    second.append_many([E(ev.RUN_RESUMED), E(ev.STEP_STARTED, step_id="b", attempt=1)], new)
    second.append_many(
        [E(ev.STEP_COMPLETED, step_id="b", attempt=1, result=2), E(ev.STEP_STARTED, step_id="c", attempt=1)], new
    )
    with pytest.raises(LeaseLost):  # the first writer wakes up: refused, and writes nothing
        first.append_many([E(ev.STEP_COMPLETED, step_id="b", attempt=1, result="stale")], old)
    second.append_many([E(ev.STEP_COMPLETED, step_id="c", attempt=1, result=3), E(ev.RUN_COMPLETED, outputs={})], new)

    rows, lag = raw(second)
    assert rows == {"a": ("completed", 1), "b": ("completed", 1), "c": ("completed", 1)} and lag is None
    assert {s.step_id: s.result for s in first.get_steps("r1")} == {"a": 1, "b": 2, "c": 3}
    assert_rows_match_log(first, "r1")


def test_a_successor_counts_attempts_on_from_rows_and_tail(durable: Backend) -> None:
    first = durable.open()
    start_run(first)
    old = claimed(first, "first", ttl_s=0.05)
    first.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1), E(ev.RUN_INTERRUPTED, error="stop")], old)
    assert raw(first)[0] == {"a": ("in_progress", 1)}  # a run event writes the rows
    first.append_many([E(ev.RUN_RESUMED), E(ev.STEP_FAILED, step_id="a", attempt=1, error="x")], old)
    first.append_many([E(ev.STEP_STARTED, step_id="a", attempt=2)], old)
    assert raw(first)[0] == {"a": ("failed", 1)}  # the resume wrote the failure; the retry lags
    time.sleep(0.1)

    second = durable.open()
    new = claimed(second, "second")
    second.append_many([E(ev.STEP_STARTED, step_id="a")], new)  # no attempt given: counted on
    second.append_many([E(ev.STEP_COMPLETED, step_id="a", result="ok"), E(ev.RUN_COMPLETED, outputs={})], new)
    assert raw(second)[0] == {"a": ("completed", 3)}
    assert_rows_match_log(second, "r1")


def test_rows_are_written_every_n_changed_steps(durable: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.store.sql_steps.WRITE_EVERY_N", 3)
    store = durable.open()
    start_run(store)
    lease = claimed(store, "w")
    for sid in ("a", "b"):
        store.append_many([E(ev.STEP_STARTED, step_id=sid, attempt=1)], lease)
    assert raw(store)[0] == {}
    store.append_many([E(ev.STEP_STARTED, step_id="c", attempt=1)], lease)
    rows, lag = raw(store)
    assert set(rows) == {"a", "b", "c"} and lag is None
    store.append_many([E(ev.STEP_COMPLETED, step_id="a", attempt=1, result=1)], lease)
    rows, lag = raw(store)
    assert rows["a"] == ("in_progress", 1) and lag is not None
    assert_rows_match_log(durable.open(), "r1")


def test_rows_are_written_at_least_every_second(durable: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.store.sql_steps.WRITE_EVERY_S", 0.05)
    store = durable.open()
    start_run(store)
    lease = claimed(store, "w")
    store.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], lease)
    assert raw(store)[0] == {}
    time.sleep(0.1)
    store.append_many([E(ev.STEP_COMPLETED, step_id="a", attempt=1, result=1)], lease)
    assert raw(store) == ({"a": ("completed", 1)}, None)


def test_a_refused_batch_loses_nothing_kept_and_writes_nothing(durable: Backend) -> None:
    store = durable.open()
    start_run(store)
    lease = claimed(store, "w")
    store.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], lease)
    with pytest.raises(LeaseLost):
        store.append_many([E(ev.STEP_COMPLETED, step_id="a", attempt=1, result="forged")], Lease("w", lease.epoch + 5))
    with pytest.raises(NotStorable):
        store.append_many([E(ev.STEP_COMPLETED, step_id="a", attempt=1, result={1, 2})], lease)
    assert [e.type for e in store.get_events("r1")] == ["run_started", "step_started"]
    a = store.get_step("r1", "a")
    assert a is not None and a.status == "in_progress"
    store.append_many(
        [E(ev.STEP_COMPLETED, step_id="a", attempt=1, result="kept"), E(ev.RUN_COMPLETED, outputs={})], lease
    )
    assert raw(store) == ({"a": ("completed", 1)}, None)
    assert_rows_match_log(durable.open(), "r1")


def test_for_each_items_and_a_reset_fold_with_their_rows(durable: Backend) -> None:
    store = durable.open()
    start_run(store)
    lease = claimed(store, "w")
    store.append_many(
        [E(ev.STEP_STARTED, step_id="fan", attempt=1), E(ev.ITEM_COMPLETED, step_id="fan", index=0, result="x")], lease
    )
    store.append_many([E(ev.ITEM_COMPLETED, step_id="fan", index=1, result="y")], lease)
    reader = durable.open()
    fan = reader.get_step("r1", "fan")
    assert fan is not None and fan.status == "in_progress" and fan.items == {0: "x", 1: "y"}
    store.append_many(
        [E(ev.STEP_COMPLETED, step_id="fan", attempt=1, result=["x", "y"]), E(ev.STEP_RESET, step_id="fan")], lease
    )
    fan = reader.get_step("r1", "fan")
    assert fan is not None and fan.status == "pending" and fan.items == {}
    assert_rows_match_log(reader, "r1")


def test_a_pull_steps_report_is_judged_on_the_step_as_the_log_has_it(durable: Backend) -> None:
    executing = durable.open()
    start_run(executing)
    lease = claimed(executing, "w")
    assigned = E(ev.STEP_ASSIGNED, step_id="p", attempt=1, agent_id="ag", arguments={"q": 1}, deadline=None)
    executing.append_many([E(ev.STEP_STARTED, step_id="p", attempt=1, agent_id="ag"), assigned], lease)
    other = durable.open()
    assert [a.step_id for a in other.list_assignments(agent_id="ag")] == ["p"]
    # the step fails (its timeout, say) in a batch whose rows are not written yet
    executing.append_many([E(ev.STEP_FAILED, step_id="p", attempt=1, error="timed out")], lease)
    assert raw(other)[0]["p"] == ("in_progress", 1) and raw(other)[1] is not None
    assert other.list_assignments(agent_id="ag") == []
    with pytest.raises(Refused, match="not waiting for a report any more.*failed"):
        other.report_step("r1", "p", "ag", result={"late": True})


def test_a_database_from_before_the_lag_column_reads_as_written(tmp_path: object) -> None:
    path = f"{tmp_path}/old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for version, script in enumerate(MIGRATIONS[:8], start=1):
        for stmt in statements(script, "INTEGER PRIMARY KEY"):
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version VALUES (?, 'then')", (version,))
    conn.execute(
        "INSERT INTO runs (run_id, workflow_name, workflow_hash, status, created_at) "
        "VALUES ('r1', 'wf', 'h', 'completed', '2026-01-01T00:00:00Z')"
    )
    conn.execute("INSERT INTO events (run_id, ts, type, step_id, attempt) VALUES ('r1', 't', 'step_started', 'a', 1)")
    conn.execute("INSERT INTO steps (run_id, step_id, status, attempts) VALUES ('r1', 'a', 'in_progress', 1)")
    conn.commit()
    conn.close()
    store = SQLiteStore(f"sqlite:///{path}")
    try:
        assert store.schema_version() == SCHEMA_VERSION >= 9
        assert raw(store) == ({"a": ("in_progress", 1)}, None)
        a = store.get_step("r1", "a")
        assert a is not None and a.attempts == 1  # the old event is not applied twice
    finally:
        store.close()


def test_the_memory_store_needs_no_lag(backend: Backend) -> None:
    """The same reads on every backend (the memory store projects on read): a smoke check."""
    store = backend.open()
    store.create_run(RunRecord(run_id="r2", workflow_name="wf", workflow_hash="h" * 8))
    store.append(E(ev.RUN_STARTED, "r2", workflow="wf"))
    store.append_many(
        [E(ev.STEP_STARTED, "r2", step_id="a", attempt=1), E(ev.STEP_COMPLETED, "r2", step_id="a", attempt=1, result=1)]
    )
    assert [(s.step_id, s.status) for s in store.get_steps("r2")] == [("a", "completed")]
    assert_rows_match_log(store, "r2")


def test_readers_racing_a_writer_always_see_one_exact_state(durable: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are written every 3 steps while another connection reads: never a torn or doubled state."""
    import threading

    monkeypatch.setattr("runner.store.sql_steps.WRITE_EVERY_N", 3)
    writer, reader = durable.open(), durable.open()
    start_run(writer)
    lease = claimed(writer, "w")
    n = 150
    done = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def read() -> None:
        while not done.is_set() and len(problems) < 5:
            steps = reader.get_steps("r1")
            ids = [s.step_id for s in steps]
            if ids != [f"s{i}" for i in range(len(ids))]:
                problems.append(f"ids {ids[-3:]}")
            if any(s.attempts != 1 for s in steps):
                problems.append(f"attempts {[(s.step_id, s.attempts) for s in steps if s.attempts != 1][:3]}")
            if any(s.status != "completed" for s in steps[:-1]):
                problems.append(
                    f"statuses {[(s.step_id, s.status) for s in steps[:-1] if s.status != 'completed'][:3]}"
                )
            seen.append(len(ids))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        writer.append_many([E(ev.STEP_STARTED, step_id="s0")], lease)  # no attempt given: counted by the fold
        for i in range(1, n):
            writer.append_many(
                [E(ev.STEP_COMPLETED, step_id=f"s{i - 1}", result=i), E(ev.STEP_STARTED, step_id=f"s{i}")], lease
            )
    finally:
        done.set()
        thread.join(timeout=30)
    assert not problems, problems
    assert seen == sorted(seen) and len(seen) > 3  # reads went forward only, and there were several
    assert_rows_match_log(reader, "r1")


def test_a_long_lived_writer_keeps_nothing_of_the_runs_it_ended(durable: Backend) -> None:
    store: Any = durable.open()
    for rid in ("r1", "r2"):
        start_run(store, rid)
        store.append_many([E(ev.STEP_STARTED, rid, step_id="a", attempt=1)])
        assert rid in store._deferred
    store.append_many(
        [E(ev.STEP_COMPLETED, "r1", step_id="a", attempt=1, result=1), E(ev.RUN_COMPLETED, "r1", outputs={})]
    )
    store.append_many([E(ev.RUN_INTERRUPTED, "r2", error="stopped")])
    assert store._deferred == {}
    store.append_many([E(ev.RUN_RESUMED, "r2"), E(ev.STEP_COMPLETED, "r2", step_id="a", attempt=1, result=2)])
    assert [(s.step_id, s.status, s.attempts) for s in store.get_steps("r2")] == [("a", "completed", 1)]
    assert_rows_match_log(store, "r2")
