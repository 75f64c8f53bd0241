"""The store contract, one suite run against memory, SQLite (a real file) and PostgreSQL.

The derived run and step rows must always equal the pure projection of the stored
event log (``replay``), in every backend; the rest checks each table's small API, the
errors users see (one line, the right class and so exit code), durability across
close/reopen and crashes, and several writers on one SQLite file.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runner.core.projection import replay
from runner.errors import InputInvalid, LeaseLost, NotFound, StoreError
from runner.model import events as ev
from runner.model.events import Event
from runner.model.ids import workflow_hash
from runner.store import open_store
from runner.store.base import Lease, RunRecord, Store, WorkflowRecord, require_run
from runner.store.migrations import SCHEMA_VERSION
from runner.store.sqlite import SQLiteStore, sqlite_path
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    backend_fixture,
    durable_fixture,
    pg_empty_url_fixture,
    pg_template,
    pg_url,
    pg_url_for,
    store_fixture,
)

if TYPE_CHECKING:
    from tests.store_fixtures import Backend

REPO = Path(__file__).resolve().parent.parent


def E(type_: str, run_id: str = "r1", step_id: str | None = None, **kw: object) -> Event:
    """An event; keyword arguments other than Event fields go into ``data``."""
    fields = {k: kw.pop(k) for k in ("attempt", "agent_id", "error") if k in kw}
    return Event(type=type_, run_id=run_id, step_id=step_id, data=dict(kw), **fields)  # type: ignore[arg-type]


def start_run(store: Store, run_id: str = "r1", workflow: str = "wf", started_at: str | None = None) -> None:
    store.create_run(RunRecord(run_id=run_id, workflow_name=workflow, workflow_hash="h" * 8, started_at=started_at))
    store.append(E(ev.RUN_STARTED, run_id, workflow=workflow, inputs={"n": 1}))


def assert_rows_match_log(store: Store, run_id: str) -> None:
    """The rows a store derived are exactly the projection of the events it stored."""
    runs, steps = replay(store.get_events(run_id))
    stored_run = store.get_run(run_id)
    assert stored_run is not None
    expected_run = runs[run_id]
    # create_run may have set what no event repeats (source, parent); compare the rest.
    for field in ("status", "inputs", "outputs", "error", "finished_at", "attempt", "workflow_name"):
        assert getattr(stored_run, field) == getattr(expected_run, field), field
    stored_steps = {s.step_id: asdict(s) for s in store.get_steps(run_id)}
    assert stored_steps == {sid: asdict(s) for (rid, sid), s in steps.items() if rid == run_id}


# --- runs, steps and events -----------------------------------------------------------


def test_every_backend_implements_the_protocol(store: Store, backend: Backend) -> None:
    assert isinstance(store, Store)
    assert store.url == backend.url and store.schema_version() == SCHEMA_VERSION


def test_run_lifecycle_with_results(store: Store) -> None:
    start_run(store)
    store.append(E(ev.STEP_STARTED, step_id="a", attempt=1, agent_id="calc"))
    running = store.get_step("r1", "a")
    assert running is not None and running.status == "in_progress" and running.attempts == 1
    result = {"sum": 3, "parts": [1, 2], "note": "ünïcode ✓", "none": None}
    store.append(
        E(ev.STEP_COMPLETED, step_id="a", attempt=1, agent_id="calc", result=result, text="3", duration_ms=1.5)
    )
    store.append(E(ev.STEP_PROGRESS, step_id="a", progress=0.5))
    store.append(E(ev.RUN_COMPLETED, outputs={"total": 3}))

    run = require_run(store, "r1")
    assert (run.status, run.outputs, run.error, run.inputs) == ("completed", {"total": 3}, None, {"n": 1})
    assert run.started_at and run.finished_at and run.started_at <= run.finished_at
    [step] = store.get_steps("r1")
    assert (step.status, step.result, step.text, step.duration_ms, step.agent_id) == (
        "completed",
        result,
        "3",
        1.5,
        "calc",
    )
    assert step.finished_at is not None and step.error is None
    events = store.get_events("r1")
    assert [e.type for e in events] == [
        "run_started",
        "step_started",
        "step_completed",
        "step_progress",
        "run_completed",
    ]
    assert events[2].data["result"] == result and events[2].attempt == 1 and events[2].agent_id == "calc"
    assert_rows_match_log(store, "r1")


def test_failure_retry_skip_cancel(store: Store) -> None:
    start_run(store)
    store.append(E(ev.STEP_STARTED, step_id="flaky", attempt=1, agent_id="a1"))
    store.append(E(ev.STEP_RETRYING, step_id="flaky", attempt=2, agent_id="a1", error="boom 1"))
    retrying = store.get_step("r1", "flaky")
    assert retrying is not None and (retrying.status, retrying.error, retrying.attempts) == ("in_progress", "boom 1", 1)
    store.append(E(ev.STEP_STARTED, step_id="flaky", attempt=2, agent_id="a2"))
    second = store.get_step("r1", "flaky")
    assert second is not None and (second.attempts, second.error, second.agent_id) == (2, None, "a2")
    store.append(E(ev.STEP_FAILED, step_id="flaky", attempt=2, agent_id="a2", error="boom 2"))
    store.append(E(ev.STEP_SKIPPED, step_id="after", reason="dependency failed"))
    store.append(E(ev.STEP_STARTED, step_id="slow", attempt=1))
    store.append(E(ev.STEP_CANCELLED, step_id="slow", error="run cancelled"))
    store.append(E(ev.RUN_FAILED, error="step(s) failed: flaky", outputs={}))

    steps = {s.step_id: s for s in store.get_steps("r1")}
    assert list(steps) == ["flaky", "after", "slow"]  # first-seen order
    assert (steps["flaky"].status, steps["flaky"].error, steps["flaky"].attempts) == ("failed", "boom 2", 2)
    assert (steps["after"].status, steps["after"].attempts) == ("skipped", 0)
    assert (steps["slow"].status, steps["slow"].error) == ("cancelled", "run cancelled")
    run = store.get_run("r1")
    assert run is not None and (run.status, run.error, run.outputs) == ("failed", "step(s) failed: flaky", {})
    assert_rows_match_log(store, "r1")


def test_step_reset_and_resume(store: Store) -> None:
    start_run(store)
    store.append(E(ev.STEP_STARTED, step_id="a", attempt=1))
    store.append(E(ev.STEP_COMPLETED, step_id="a", attempt=1, result=1, text="1"))
    store.append(E(ev.STEP_STARTED, step_id="fan"))
    store.append(E(ev.ITEM_COMPLETED, step_id="fan", attempt=1, index=0, result="x"))
    store.append(E(ev.RUN_FAILED, error="failed"))
    store.append(E(ev.STEP_RESET, step_id="a", reason="retry --from"))
    store.append(E(ev.STEP_RESET, step_id="fan", reason="retry --from"))
    store.append(E(ev.RUN_RESUMED, attempt=2, workflow="wf"))

    a = store.get_step("r1", "a")
    assert a is not None
    assert (a.status, a.result, a.text, a.error, a.attempts, a.finished_at) == ("pending", None, None, None, 1, None)
    fan = store.get_step("r1", "fan")
    assert fan is not None and fan.items == {} and fan.status == "pending"
    run = store.get_run("r1")
    assert run is not None and (run.status, run.attempt, run.error, run.finished_at) == ("running", 2, None, None)
    store.append(E(ev.RUN_INTERRUPTED, error="interrupted by the user"))
    run = store.get_run("r1")
    assert run is not None and (run.status, run.error) == ("interrupted", "interrupted by the user")
    assert_rows_match_log(store, "r1")


def test_for_each_items(store: Store) -> None:
    start_run(store)
    store.append(E(ev.ITEM_STARTED, step_id="fan", attempt=1, index=0))
    fan = store.get_step("r1", "fan")
    assert fan is not None and fan.status == "in_progress" and fan.started_at is not None
    for index, result in [(2, {"v": 2}), (0, {"v": 0}), (11, [1, 2])]:
        store.append(E(ev.ITEM_COMPLETED, step_id="fan", attempt=1, index=index, result=result))
    store.append(E(ev.ITEM_FAILED, step_id="fan", attempt=1, index=1, error="bad item"))
    store.append(E(ev.ITEM_COMPLETED, step_id="fan", attempt=1, index=2, result={"v": 22}))  # re-done item
    fan = store.get_step("r1", "fan")
    assert fan is not None and fan.items == {0: {"v": 0}, 2: {"v": 22}, 11: [1, 2]}
    assert all(isinstance(k, int) for k in fan.items)
    assert [s.items for s in store.get_steps("r1")] == [fan.items]
    store.append(E(ev.ITEM_STARTED, step_id="fan", attempt=2, index=1))  # an item's retry
    fan = store.get_step("r1", "fan")
    assert fan is not None and fan.attempts == 2  # counted, so a resume numbers on from it
    assert_rows_match_log(store, "r1")


def test_run_started_creates_an_unknown_run_and_other_events_need_one(store: Store) -> None:
    store.append(E(ev.RUN_STARTED, "fresh", workflow="wf2", workflow_hash="abc", inputs={"k": "v"}))
    run = store.get_run("fresh")
    assert run is not None and (run.workflow_name, run.workflow_hash, run.status) == ("wf2", "abc", "running")
    for bad in (E(ev.STEP_STARTED, "ghost", step_id="a"), E(ev.RUN_COMPLETED, "ghost"), E("custom", "ghost")):
        with pytest.raises(StoreError, match="never created"):
            store.append(bad)
    with pytest.raises(StoreError, match="no step_id"):
        store.append(E(ev.STEP_STARTED, "fresh"))
    assert store.get_run("ghost") is None and store.get_events("ghost") == []
    assert [e.type for e in store.get_events("fresh")] == ["run_started"]
    store.append(E("custom_future_type", "fresh", step_id="a", anything=1))  # kept, projects nothing
    assert store.get_steps("fresh") == [] and len(store.get_events("fresh")) == 2
    with pytest.raises(StoreError, match="already exists"):
        store.create_run(RunRecord(run_id="fresh", workflow_name="wf2", workflow_hash="abc"))


def test_a_fenced_group_commit_writes_only_under_the_current_lease(store: Store) -> None:
    """``append_many(fence=)`` writes while the lease is the caller's (owner and epoch), and
    nothing at all — not its first event, not a step row — once another claim replaced it."""
    start_run(store)
    first = store.claim_run("r1", "runner-a", 30).lease
    assert first is not None
    store.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1)], fence=first)
    store.release_run("r1", "runner-a")
    second = store.claim_run("r1", "runner-b", 30).lease
    assert second is not None and second.epoch == first.epoch + 1
    logged = [(e.type, e.step_id) for e in store.get_events("r1")]
    late = [E(ev.STEP_COMPLETED, step_id="a", attempt=1, result="late"), E(ev.STEP_STARTED, step_id="b", attempt=1)]
    stale = (first, Lease("runner-b", first.epoch), Lease("runner-a", second.epoch))
    for fence in stale:  # the old lease; the new owner at the old epoch; the old owner at the new epoch
        with pytest.raises(LeaseLost, match="taken over; nothing written"):
            store.append_many(late, fence=fence)
        with pytest.raises(LeaseLost):
            store.append_many([E(ev.RUN_COMPLETED, outputs={})], fence=fence)  # a run event first
    assert [(e.type, e.step_id) for e in store.get_events("r1")] == logged
    step = store.get_step("r1", "a")
    assert step is not None and step.status == "in_progress" and step.result is None
    assert store.get_step("r1", "b") is None
    store.append_many(late, fence=second)  # the current holder writes, and its rows follow the log
    assert [e.type for e in store.get_events("r1")][-2:] == [ev.STEP_COMPLETED, ev.STEP_STARTED]
    assert_rows_match_log(store, "r1")


def test_a_refused_batch_writes_nothing(store: Store) -> None:
    """``append_many`` is all or none: an event the store refuses anywhere in the batch
    leaves no earlier event of it logged, no row, no run and no assignment behind."""
    start_run(store)
    before = [e.to_json() for e in store.get_events("r1")]
    bad_batches = [
        [E(ev.STEP_STARTED, step_id="a", attempt=1), E(ev.STEP_COMPLETED, attempt=1)],  # no step_id
        [E(ev.STEP_ASSIGNED, step_id="p", attempt=1, index=None, arguments={}), E(ev.STEP_RESET)],
        [E(ev.RUN_STARTED, "r2", workflow="wf"), E(ev.STEP_STARTED, "r2", step_id="a"), E(ev.STEP_STARTED, "r3")],
    ]
    for batch in bad_batches:
        with pytest.raises(StoreError):
            store.append_many(batch)
    assert [e.to_json() for e in store.get_events("r1")] == before
    assert store.get_steps("r1") == [] and store.get_assignment("r1", "p") is None
    assert store.get_run("r2") is None and store.get_events("r2") == []
    with pytest.raises(StoreError, match="never created"):
        store.append(E(ev.STEP_STARTED, "r2", step_id="a"))  # the refused batch did not start r2
    store.append_many([E(ev.STEP_STARTED, step_id="a", attempt=1), E(ev.STEP_COMPLETED, step_id="a", result=1)])
    assert [e.type for e in store.get_events("r1")][-2:] == [ev.STEP_STARTED, ev.STEP_COMPLETED]
    assert_rows_match_log(store, "r1")


def test_events_have_increasing_seq(store: Store) -> None:
    start_run(store, "r1")
    start_run(store, "r2")
    for i in range(3):
        store.append(E(ev.STEP_PROGRESS, "r1", step_id="a", i=i))
        store.append(E(ev.STEP_PROGRESS, "r2", step_id="a", i=i))
    everything = store.get_events_after(0)
    seqs = [s for s, _ in everything]
    assert len(seqs) == 8 and seqs == sorted(seqs) and len(set(seqs)) == 8
    mine = store.get_events_after(0, run_id="r2")
    assert [e.run_id for _, e in mine] == ["r2"] * 4
    later = store.get_events_after(mine[1][0], run_id="r2", limit=1)
    assert [(s, e.data) for s, e in later] == [(mine[2][0], {"i": 1})]
    assert [e.to_json() for e in store.get_events("r1")] == [e.to_json() for s, e in everything if e.run_id == "r1"]


def test_get_run_unknown_and_prefix_lookup(store: Store) -> None:
    assert store.get_run("nope") is None
    with pytest.raises(NotFound, match=r"no run with id 'nope' in ") as info:
        require_run(store, "nope")
    assert info.value.exit_code == 2
    for rid in ("20260101-aaa1", "20260101-aaa2", "20260102-bbb"):
        start_run(store, rid)
    assert store.find_run("20260102").run_id == "20260102-bbb"
    assert store.find_run("20260101-aaa1").run_id == "20260101-aaa1"
    with pytest.raises(NotFound, match="ambiguous.*20260101-aaa1, 20260101-aaa2"):
        store.find_run("20260101")
    with pytest.raises(NotFound, match="no run with id 'zzz'"):
        store.find_run("zzz")
    with pytest.raises(NotFound):
        store.find_run("")


def test_list_runs_filters_and_order(store: Store) -> None:
    start_run(store, "old", "alpha", started_at="2026-01-01T10:00:00.000000Z")
    start_run(store, "mid", "beta", started_at="2026-01-02T10:00:00.000000Z")
    start_run(store, "new", "alpha", started_at="2026-01-03T10:00:00.000000Z")
    store.append(E(ev.RUN_COMPLETED, "mid", outputs={}))
    store.append(E(ev.RUN_FAILED, "new", error="x"))

    assert [r.run_id for r in store.list_runs()] == ["new", "mid", "old"]
    assert [r.run_id for r in store.list_runs(workflow="alpha")] == ["new", "old"]
    assert [r.run_id for r in store.list_runs(status="completed")] == ["mid"]
    assert [r.run_id for r in store.list_runs(status="complete")] == []  # exact match only
    assert [r.run_id for r in store.list_runs(since="2026-01-02")] == ["new", "mid"]
    assert [r.run_id for r in store.list_runs(since="2026-01-02T11:00:00+01:00")] == ["new", "mid"]
    assert [r.run_id for r in store.list_runs(since="2026-01-02T10:00:00.000001Z")] == ["new"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["new", "mid"]
    assert [r.run_id for r in store.list_runs(workflow="alpha", status="failed", since="2026-01-01")] == ["new"]
    with pytest.raises(InputInvalid, match="since"):
        store.list_runs(since="yesterday")
    start_run(store, "same1", started_at="2026-02-01T00:00:00.000000Z")
    start_run(store, "same0", started_at="2026-02-01T00:00:00.000000Z")
    assert [r.run_id for r in store.list_runs(limit=2)] == ["same0", "same1"]  # ties: newest created first


# --- workflows and the registry -------------------------------------------------------


def test_workflows_are_versioned_by_content_hash(store: Store) -> None:
    v1 = store.put_workflow(WorkflowRecord(name="wf", content_hash="", source_text="steps: [a]", creator_id="ops"))
    assert (v1.version, v1.content_hash, v1.creator_id) == (1, workflow_hash("steps: [a]"), "ops")
    assert v1.created_at is not None
    again = store.put_workflow(WorkflowRecord(name="wf", content_hash="", source_text="steps: [a]", creator_id="x"))
    assert (again.version, again.creator_id, again.created_at) == (1, "ops", v1.created_at)
    v2 = store.put_workflow(
        WorkflowRecord(
            name="wf",
            content_hash=workflow_hash("steps: [b]"),
            source_text="steps: [b]",
            agent_modifiable=True,
            origin="mcp",
        )
    )
    assert (v2.version, v2.agent_modifiable, v2.origin) == (2, True, "mcp")
    store.put_workflow(WorkflowRecord(name="other", content_hash="", source_text="steps: [a]"))

    latest = store.get_workflow("wf")
    assert latest is not None and (latest.version, latest.source_text, latest.agent_modifiable) == (
        2,
        "steps: [b]",
        True,
    )
    first = store.get_workflow("wf", v1.content_hash)
    assert first is not None and (first.version, first.agent_modifiable, first.origin) == (1, False, "operator")
    assert store.get_workflow("wf", "no-such-hash") is None and store.get_workflow("missing") is None
    assert [(w.name, w.version) for w in store.list_workflows()] == [("other", 1), ("wf", 2)]
    assert [w.version for w in store.list_workflow_versions("wf")] == [1, 2]


def test_agents_and_tokens(store: Store) -> None:
    store.put_agent("b", {"name": "Bee", "capabilities": ["x"], "status": "available"})
    store.put_agent("a", {"name": "Ay", "nested": {"k": [1, 2]}})
    assert store.get_agent("a") == {"name": "Ay", "nested": {"k": [1, 2]}, "id": "a"}
    store.put_agent("b", {"name": "Bee", "status": "working"})  # update replaces the record
    assert [(a["id"], a.get("status")) for a in store.list_agents()] == [("a", None), ("b", "working")]
    got = store.get_agent("a")
    assert got is not None
    got["name"] = "mutated"  # what a caller holds is a copy
    assert store.get_agent("a") == {"name": "Ay", "nested": {"k": [1, 2]}, "id": "a"}

    store.put_token("b", "hash-b")
    store.put_token("a", "hash-a")
    assert (store.get_token_hash("b"), store.agent_for_token("hash-a"), store.agent_for_token("nope")) == (
        "hash-b",
        "a",
        None,
    )
    store.put_token("b", "hash-b2")
    assert store.get_token_hash("b") == "hash-b2" and store.agent_for_token("hash-b") is None
    assert store.delete_agent("b") is True and store.delete_agent("b") is False
    assert store.get_agent("b") is None and store.get_token_hash("b") is None  # deregistering revokes
    assert store.delete_token("a") is True and store.delete_token("a") is False


# File locks (leases over globs) have their own suite: tests/test_file_locks.py.


def test_messages(store: Store) -> None:
    m1 = store.add_message("alice", "bob", "hello", urgent=True)
    m2 = store.add_message("carol", "bob", '{"type": "task"}')
    store.add_message("bob", "alice", "hi back")
    assert m1["urgent"] is True and m1["read_at"] is None and m2["id"] != m1["id"]
    inbox = store.get_messages("bob")
    assert [(m["sender_id"], m["content"], m["urgent"]) for m in inbox] == [
        ("alice", "hello", True),
        ("carol", '{"type": "task"}', False),
    ]
    assert [m["content"] for m in store.get_messages("bob", since=m1["created_at"])] == ['{"type": "task"}']
    read = store.get_messages("bob", unread_only=True, mark_read=True)
    assert len(read) == 2 and all(m["read_at"] for m in read)
    assert store.get_messages("bob", unread_only=True) == []
    assert [m["read_at"] for m in store.get_messages("bob")] == [m["read_at"] for m in read]
    m3 = store.add_message("alice", "bob", "again")
    assert [m["id"] for m in store.get_messages("bob", unread_only=True)] == [m3["id"]]
    assert [m["content"] for m in store.sent_messages("alice")] == ["hello", "again"]
    assert [m["content"] for m in store.sent_messages("alice", since=m1["created_at"])] == ["again"]


def test_projects_goals_and_audit(store: Store) -> None:
    project = store.create_project("Launch", "ship it", lead_agent_id="lead1")
    assert project["status"] == "active" and store.get_project(project["id"]) == project
    goal = store.create_goal("Docs", "write docs", project_id=project["id"])
    loose = store.create_goal("Standalone")
    assert goal["status"] == "pending" and store.get_goal(goal["id"]) == goal
    assert [g["id"] for g in store.list_goals(project["id"])] == [goal["id"]]
    assert {g["id"] for g in store.list_goals()} == {goal["id"], loose["id"]}
    assert [p["id"] for p in store.list_projects()] == [project["id"]]
    assert store.get_project("nope") is None and store.get_goal("nope") is None
    with pytest.raises(NotFound, match="no project with id 'nope'"):
        store.create_goal("Orphan", project_id="nope")
    assert len(store.list_goals()) == 2

    s1 = store.add_audit("operator", "register_agent", "a1", {"role": "worker", "caps": ["x"]})
    s2 = store.add_audit("a1", "acquire_file_lock", "src/x.py")
    store.add_audit("operator", "define_workflow", "wf")
    assert s2 > s1
    entries = store.list_audit()
    assert [e["action"] for e in entries] == ["define_workflow", "acquire_file_lock", "register_agent"]
    assert entries[2]["detail"] == {"role": "worker", "caps": ["x"]} and entries[1]["detail"] is None
    assert [e["target"] for e in store.list_audit(actor="operator")] == ["wf", "a1"]
    assert [e["seq"] for e in store.list_audit(action="acquire_file_lock")] == [s2]
    assert len(store.list_audit(limit=1)) == 1
    cut = entries[1]["ts"]
    assert [e["seq"] for e in store.list_audit(since=cut)] == [e["seq"] for e in entries if e["ts"] > cut]
    assert store.list_audit(since="2999-01-01") == []
    with pytest.raises(InputInvalid, match="since"):
        store.list_audit(since="yesterday")


def test_coordination_records(store: Store) -> None:
    store.put_record("session", "s1", {"id": "s1", "title": "Review", "participants": ["a", "b"]})
    store.put_record("session", "s2", {"id": "s2", "title": "Plan"})
    store.put_record("evaluation", "s1", {"id": "s1", "score": 3})
    assert store.get_record("session", "s1") == {"id": "s1", "title": "Review", "participants": ["a", "b"]}
    assert store.get_record("session", "nope") is None and store.get_record("goal", "s1") is None
    store.put_record("session", "s1", {"id": "s1", "title": "Review", "closed": True})
    assert [r["id"] for r in store.list_records("session")] == ["s1", "s2"]
    assert store.get_record("session", "s1") == {"id": "s1", "title": "Review", "closed": True}
    assert store.list_records("evaluation") == [{"id": "s1", "score": 3}]
    assert len(store.list_records("session", limit=1)) == 1


def test_store_is_safe_to_share_between_threads(store: Store) -> None:
    start_run(store)

    def work(worker: int) -> None:
        for i in range(20):
            sid = f"w{worker}-{i}"
            store.append(E(ev.STEP_STARTED, step_id=sid, attempt=1))
            store.append(E(ev.STEP_COMPLETED, step_id=sid, attempt=1, result=i))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = store.get_steps("r1")
    assert len(steps) == 80 and {s.status for s in steps} == {"completed"}
    assert_rows_match_log(store, "r1")


# --- durability, schema, errors -------------------------------------------------------


def test_data_survives_close_and_reopen(durable: Backend) -> None:
    first = durable.open()
    start_run(first)
    first.append(E(ev.STEP_STARTED, step_id="a", attempt=1))
    first.append(E(ev.ITEM_COMPLETED, step_id="a", index=3, result={"deep": [1, {"x": None}]}))
    first.put_workflow(WorkflowRecord(name="wf", content_hash="", source_text="text"))
    first.put_agent("a1", {"role": "worker"})
    first.add_message("a1", "a2", "hi")
    first.acquire_lock("f", "a1", exclusive=True, ttl_s=60)
    first.close()
    with pytest.raises(StoreError, match="closed"):
        first.get_run("r1")

    second = durable.open()
    assert second.schema_version() == SCHEMA_VERSION
    step = second.get_step("r1", "a")
    assert step is not None and step.items == {3: {"deep": [1, {"x": None}]}} and step.status == "in_progress"
    assert [e.type for e in second.get_events("r1")] == ["run_started", "step_started", "item_completed"]
    wf = second.get_workflow("wf")
    assert wf is not None and wf.version == 1
    assert second.get_agent("a1") == {"role": "worker", "id": "a1"}
    assert [m["content"] for m in second.get_messages("a2")] == ["hi"]
    assert second.acquire_lock("f", "a2", exclusive=False, ttl_s=1)["granted"] is False
    assert_rows_match_log(second, "r1")


def test_sql_stores_refuse_what_json_cannot_hold(durable: Backend) -> None:
    store = durable.open()
    start_run(store)
    with pytest.raises(StoreError, match="cannot store"):
        store.append(E(ev.STEP_COMPLETED, step_id="a", result={1, 2}))
    with pytest.raises(StoreError, match="cannot store"):
        store.put_agent("a", {"when": object()})
    assert [e.type for e in store.get_events("r1")] == ["run_started"] and store.get_steps("r1") == []


def test_a_failure_mid_append_leaves_nothing_half_written(durable: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    store = durable.open()
    start_run(store)
    store.append(E(ev.STEP_STARTED, step_id="a", attempt=1))

    def explode(*args: object) -> None:
        raise KeyboardInterrupt  # after the event row was inserted, before the step rows and the commit

    monkeypatch.setattr(type(store), "_write_due", explode)
    with pytest.raises(KeyboardInterrupt):
        store.append(E(ev.STEP_COMPLETED, step_id="a", attempt=1, result="lost"))
    monkeypatch.undo()
    assert [e.type for e in store.get_events("r1")] == ["run_started", "step_started"]
    step = store.get_step("r1", "a")
    assert step is not None and step.status == "in_progress"
    store.append(E(ev.STEP_COMPLETED, step_id="a", attempt=1, result="kept"))  # the store still works
    assert_rows_match_log(store, "r1")


def test_a_killed_process_leaves_the_sqlite_file_consistent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    script = textwrap.dedent(
        f"""
        import os, signal
        from runner.model.events import Event
        from runner.store.sqlite import SQLiteStore
        s = SQLiteStore({url!r})
        s.append(Event("run_started", "r1", data={{"workflow": "wf"}}))
        s.append(Event("step_started", "r1", step_id="a", attempt=1))
        s._commit = lambda: os.kill(os.getpid(), signal.SIGKILL)  # die inside the next transaction
        s.append(Event("step_completed", "r1", step_id="a", attempt=1, data={{"result": 1}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    store = SQLiteStore(url)
    try:
        assert [e.type for e in store.get_events("r1")] == ["run_started", "step_started"]
        step = store.get_step("r1", "a")
        assert step is not None and step.status == "in_progress"
        store.append(E(ev.STEP_COMPLETED, step_id="a", attempt=1, result=2))
        assert_rows_match_log(store, "r1")
    finally:
        store.close()


def test_schema_is_versioned_and_a_newer_one_is_refused(durable: Backend) -> None:
    store = durable.open()
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    newer = SCHEMA_VERSION + 1
    if durable.name == "sqlite":
        with sqlite3.connect(sqlite_path(durable.url)) as raw:
            raw.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (newer,))
        raw.close()
    else:
        import psycopg

        with psycopg.connect(durable.url, autocommit=True) as raw:
            raw.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, 'later')", (newer,))
    with pytest.raises(StoreError) as info:
        durable.open()
    assert str(info.value) == (
        f"store at {durable.url} has schema version {newer}, newer than this runner supports "
        f"({SCHEMA_VERSION}); upgrade runner"
    )
    assert info.value.exit_code == 70


def test_migrations_run_once_on_an_empty_postgres_database(pg_empty_url: str) -> None:
    import psycopg

    for _ in range(2):
        open_store(pg_empty_url).close()
    with psycopg.connect(pg_empty_url) as raw:
        rows = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


def test_unreachable_postgres_is_a_one_line_store_error() -> None:
    with pytest.raises(StoreError) as info:
        open_store("postgresql://runner:s3cret@127.0.0.1:1/runner")
    message = str(info.value)
    assert message.startswith("cannot open store postgresql://runner:***@127.0.0.1:1/runner: ")
    assert "s3cret" not in message and "\n" not in message and "refused" in message.lower()
    assert info.value.exit_code == 2  # the user can fix it: exit 2, not internal


@pytest.mark.usefixtures("pg_template")  # PostgreSQL is up: skip or fail as the others do
def test_unknown_postgres_database_is_a_store_error() -> None:
    url = pg_url_for("runner_test_does_not_exist")
    with pytest.raises(StoreError, match=r"^cannot open store .*does not exist") as info:
        open_store(url)
    assert "\n" not in str(info.value)


def test_sqlite_urls_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_path("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite://") == ".runner/runner.db"
    with pytest.raises(InputInvalid):
        sqlite_path("sqlite://host/x.db")
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore()
    try:
        assert store.path == str(tmp_path / ".runner" / "runner.db")
        assert (tmp_path / ".runner" / "runner.db").is_file()
        mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]  # WAL: readers never block the writer
        assert mode == "wal"
    finally:
        store.close()
    rel = open_store("sqlite:///sub/dir/r.db")
    rel.close()
    assert (tmp_path / "sub" / "dir" / "r.db").is_file()


def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match=r"^cannot open store sqlite:///.*/file/x\.db: ") as info:
        open_store(f"sqlite:///{tmp_path / 'file' / 'x.db'}")
    assert "\n" not in str(info.value)
    (tmp_path / "garbage.db").write_bytes(b"this is not a database file, not at all" * 100)
    with pytest.raises(StoreError, match="cannot open store .*not a database"):
        open_store(f"sqlite:///{tmp_path / 'garbage.db'}")


def test_sqlite_locked_beyond_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    store = SQLiteStore(url, busy_timeout=0.2)
    start_run(store)
    holder = sqlite3.connect(sqlite_path(url), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError) as info:
            store.append(E(ev.STEP_STARTED, step_id="a"))
        assert time.monotonic() - t0 >= 0.15
        assert str(info.value) == f"store {url} is locked by another process"
        assert store.get_run("r1") is not None  # reading still works under WAL
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.append(E(ev.STEP_STARTED, step_id="a"))
    assert [e.type for e in store.get_events("r1")] == ["run_started", "step_started"]
    store.close()


_WRITER = """
import sys
from runner.model.events import Event
from runner.store.sqlite import SQLiteStore
url, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = SQLiteStore(url)
s.append(Event("run_started", run_id, data={"workflow": "wf"}))
for i in range(n):
    s.append(Event("step_started", run_id, step_id=f"s{i}", attempt=1))
    s.append(Event("step_completed", run_id, step_id=f"s{i}", attempt=1, data={"result": i}))
    s.add_audit("writer", "step", run_id)
s.append(Event("run_completed", run_id, data={"outputs": {}}))
s.close()
"""


def test_two_stores_and_a_second_process_write_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    n = 150
    SQLiteStore(url).close()  # create the schema first, as the CLI would
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, "proc", str(n)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    errors: list[BaseException] = []

    def write(run_id: str) -> None:
        try:
            s = SQLiteStore(url)
            try:
                s.append(E(ev.RUN_STARTED, run_id, workflow="wf"))
                for i in range(n):
                    s.append(E(ev.STEP_STARTED, run_id, step_id=f"s{i}", attempt=1))
                    s.append(E(ev.STEP_COMPLETED, run_id, step_id=f"s{i}", attempt=1, result=i))
                    s.add_audit("writer", "step", run_id)
                s.append(E(ev.RUN_COMPLETED, run_id, outputs={}))
            finally:
                s.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(rid,)) for rid in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert errors == []
    store = SQLiteStore(url)
    try:
        for run_id in ("t1", "t2", "proc"):
            run = store.get_run(run_id)
            assert run is not None and run.status == "completed"
            steps = store.get_steps(run_id)
            assert len(steps) == n and all(s.status == "completed" for s in steps)
            assert [s.result for s in steps] == list(range(n))
            assert_rows_match_log(store, run_id)
        seqs = [s for s, _ in store.get_events_after(0, limit=10_000)]
        assert len(seqs) == 3 * (2 * n + 2) and seqs == sorted(set(seqs))
        assert len(store.list_audit(limit=10_000)) == 3 * n
    finally:
        store.close()
