"""Scale out (SPEC §4 `runner worker`, §6): worker processes sharing runs through one store.

Black-box: real `runner worker` processes on a fresh PostgreSQL database per test (and a
SQLite file), killed, paused and stopped with real signals. Runs are queued the way
`runner run --detach` queues them (the CLI once, the same service call in bulk, which is
~100x cheaper than a process per run). The ledger agent runs inside each worker
(inprocess) and writes every call it receives — key, idempotency key, the worker's pid —
to a file, so "each step executed exactly once" is checked outside the store.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.api import load_workflow
from runner.model import events as ev
from runner.service import RunService
from runner.store import open_store
from tests.acceptance.test_lifecycle import Bg, background, cli, cli_json, ledger, wait_until
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "workers"
CHAIN = FIXTURES / "chain.yaml"
CHAIN_GPU = FIXTURES / "chain_gpu.yaml"
TTL = 2.0  # RUNNER_LEASE_TTL of the workers: a dead worker's runs are taken over after it


@pytest.fixture
def pg(pg_url: str) -> str:
    return pg_url


def worker(store: str, tmp_path: Path, *extra: str, poll: float = 0.3, concurrency: int = 3) -> Any:
    """``runner worker`` in the background (a context manager), the ledger agent inside it."""
    env = {"PYTHONPATH": str(REPO), "LEDGER_PATH": str(tmp_path / "ledger.jsonl"), "RUNNER_LEASE_TTL": str(TTL)}
    return background(
        "worker", "--store", store, "--concurrency", str(concurrency), "--poll-interval", str(poll), *extra,
        cwd=tmp_path, env=env,
    )  # fmt: skip


def queue(store: str, n: int, *, sleep: float = 0.0, prefix: str = "r", path: Path = CHAIN) -> dict[str, str]:
    """Queue ``n`` runs as `runner run --detach` does; returns run id -> ledger key prefix."""
    s = open_store(store)
    try:
        wf = load_workflow(str(path))
        service = RunService(s)
        out = {}
        for i in range(n):
            key = f"{prefix}{i}"
            run_id, _ = service.start(wf, {"key": key, "sleep": sleep}, queued=True)
            out[run_id] = key
        return out
    finally:
        s.close()


def statuses(store: str) -> dict[str, str]:
    s = open_store(store)
    try:
        return {r.run_id: r.status for r in s.list_runs(limit=10_000)}
    finally:
        s.close()


def events_of(store: str, run_id: str) -> list[Any]:
    s = open_store(store)
    try:
        return s.get_events(run_id)
    finally:
        s.close()


def all_completed(store: str, ids: Iterator[str] | list[str]) -> bool:
    got = statuses(store)
    return all(got.get(r) == "completed" for r in ids)


def calls_by_key(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in ledger(tmp_path / "ledger.jsonl"):
        out.setdefault(c["key"], []).append(c)
    return out


def in_flight_on(tmp_path: Path, pid: int, step: str) -> str | None:
    """The key prefix of a run whose ``step`` call is in flight in worker ``pid`` (sleeping), if any."""
    calls = calls_by_key(tmp_path)
    for key, got in calls.items():
        prefix, _, name = key.rpartition("/")
        if name == step and got[0]["pid"] == pid and f"{prefix}/three" not in calls:
            return prefix
    return None


def owners(store: str, run_id: str) -> list[str]:
    """The owner of each session of a run (run_started / run_resumed), oldest first."""
    return [e.data.get("owner", "") for e in events_of(store, run_id) if e.type in (ev.RUN_STARTED, ev.RUN_RESUMED)]


def assert_once_each(tmp_path: Path, runs: dict[str, str], killed: set[int]) -> None:
    """Every step of every run called; a step called twice only when a killed worker had it
    in flight, and then both times with the same idempotency key (the same logical attempt)."""
    calls = calls_by_key(tmp_path)
    for prefix in runs.values():
        for step in ("one", "two", "three"):
            got = calls.get(f"{prefix}/{step}", [])
            assert got, f"{prefix}/{step} was never called"
            if len(got) > 1:
                assert len(got) == 2 and got[0]["pid"] in killed, f"{prefix}/{step} executed twice: {got}"
                assert got[0]["idempotency_key"] == got[1]["idempotency_key"], got
                assert got[1]["pid"] not in killed


def stop(bg: Bg, sig: signal.Signals, timeout: float = 30) -> int:
    os.kill(bg.pid, sig)
    return bg.wait(timeout)


# -- many runs, three workers, two of them killed -------------------------------------------------


def test_three_workers_execute_every_run_once_and_take_over_the_runs_of_killed_ones(pg: str, tmp_path: Path) -> None:
    rc, out, err = cli(
        "run", CHAIN, "-i", "key=cli", "--detach", "--store", pg, cwd=tmp_path, env={"PYTHONPATH": str(REPO)}
    )
    assert rc == 0, err
    runs = {out.strip(): "cli"}
    runs.update(queue(pg, 4, sleep=3.0, prefix="slow"))  # step two of these sleeps 3 s on its first call
    runs.update(queue(pg, 10, prefix="fast"))
    with worker(pg, tmp_path) as w1, worker(pg, tmp_path) as w2, worker(pg, tmp_path) as w3:
        pool = (w1, w2, w3)

        def slow_call_in_flight() -> Any:
            for w in pool:
                got = in_flight_on(tmp_path, w.pid, "two")
                if got:
                    return w, got
            return None

        # Point 1: the worker that has a slow call in flight (the agent sleeping in it) is killed.
        # Which worker claims the slow runs is up to the race between them.
        a, victim = wait_until("a slow call in flight in some worker", slow_call_in_flight, 60, every=0.05)
        a.kill()
        # Point 2: another worker is killed at whatever point its runs are when it holds some.
        others = [w for w in pool if w is not a]
        b = wait_until(
            "another worker holding runs",
            lambda: next((w for w in others if w.pid in _holders(pg)), None),
            30,
            every=0.05,
        )
        b.kill()
        c = next(w for w in others if w is not b)
        wait_until("every run completed by the one worker left", lambda: all_completed(pg, list(runs)), 60, c)
        assert c.alive()
        held = cli_json("workers", "list", "--store", pg, cwd=tmp_path)
        assert stop(c, signal.SIGTERM) == 0, c.stderr()
    assert_once_each(tmp_path, runs, killed={a.pid, b.pid})
    by_key = calls_by_key(tmp_path)
    victim_calls = by_key[f"{victim}/two"]
    assert [x["pid"] for x in victim_calls][0] == a.pid and len(victim_calls) == 2  # re-sent by another worker
    victim_run = next(r for r, k in runs.items() if k == victim)
    sessions = owners(pg, victim_run)
    assert len(sessions) == 2 and sessions[0].split(":")[1] == str(a.pid) and sessions[1].split(":")[1] != str(a.pid)
    assert len({x["idempotency_key"] for x in by_key[f"{victim}/one"]}) == 1  # completed before the kill: not re-run
    assert len(by_key[f"{victim}/one"]) == 1
    s = open_store(pg)
    try:
        for run_id in runs:
            assert s.get_run(run_id).outputs == {"total": 3}  # type: ignore[union-attr]
            started = [e.step_id for e in s.get_events(run_id) if e.type == ev.STEP_COMPLETED]
            assert sorted(started) == ["one", "three", "two"], (run_id, started)  # each step completed once
    finally:
        s.close()
    states = {w["pid"]: w["state"] for w in held}
    assert states[c.pid] == "running" and {states[a.pid], states[b.pid]} <= {"running", "stale"}


def _holders(store: str) -> list[int]:
    """Pids of the workers holding a live lease on some run now."""
    s = open_store(store)
    try:
        return [w.pid for w in s.list_workers() if w.runs_held and w.stopped_at is None]
    finally:
        s.close()


# -- a paused worker -------------------------------------------------------------------------------


def test_a_paused_worker_finds_its_run_taken_over_and_writes_nothing_more(pg: str, tmp_path: Path) -> None:
    runs = queue(pg, 1, sleep=4.0, prefix="paused")
    run_id, prefix = next(iter(runs.items()))
    with worker(pg, tmp_path) as a:
        wait_until("the slow call in flight in A", lambda: in_flight_on(tmp_path, a.pid, "two"), 40, a, every=0.05)
        os.kill(a.pid, signal.SIGSTOP)
        try:
            with worker(pg, tmp_path) as b:
                wait_until("B finishing A's run", lambda: all_completed(pg, [run_id]), 30, b)
                before = [(e.type, e.step_id) for e in events_of(pg, run_id)]
                os.kill(a.pid, signal.SIGCONT)  # A's call returns; its lease is B's now
                wait_until("A noticing its lease is gone", lambda: "lost its lease" in a.stderr(), 20, a)
                assert stop(b, signal.SIGTERM) == 0
        finally:
            os.kill(a.pid, signal.SIGCONT)
        assert a.alive(), "a worker that lost one run's lease goes on with others"
        assert stop(a, signal.SIGINT) == 130  # Ctrl-C
    assert [(e.type, e.step_id) for e in events_of(pg, run_id)] == before, "A wrote after losing its lease"
    calls = calls_by_key(tmp_path)
    assert [c["pid"] for c in calls[f"{prefix}/two"]] == [a.pid, b.pid]
    assert calls[f"{prefix}/two"][0]["idempotency_key"] == calls[f"{prefix}/two"][1]["idempotency_key"]
    assert len(calls[f"{prefix}/three"]) == 1 and calls[f"{prefix}/three"][0]["pid"] == b.pid


# -- SIGTERM hands back; labels place runs; workers list --------------------------------------------


def test_sigterm_hands_runs_back_at_once_and_labels_decide_who_claims(pg: str, tmp_path: Path) -> None:
    slow = queue(pg, 2, sleep=30.0, prefix="long")
    with worker(pg, tmp_path, poll=30) as a:
        wait_until("A executing both runs", lambda: all(_two_in(tmp_path, k) for k in slow.values()), 40, a, every=0.05)
        began = time.monotonic()
        assert stop(a, signal.SIGTERM) == 0, a.stderr()
        assert time.monotonic() - began < 20
        assert "handed back" in a.stderr()
    assert set(statuses(pg).values()) == {"interrupted"}
    # What happened, said in the event, `runs show` and `runs list` (not "interrupted by the user").
    said = f"handed back by worker {_worker_id(pg, a.pid)} (stopping)"
    first = next(iter(slow))
    assert [e.error for e in events_of(pg, first) if e.type == ev.RUN_INTERRUPTED] == [said]
    assert cli_json("runs", "show", first, "--store", pg, cwd=tmp_path)["error"] == said
    rc, listed_text, _ = cli("runs", "list", "--store", pg, cwd=tmp_path)
    assert rc == 0 and listed_text.count(f"({said})") == 2, listed_text
    gpu = queue(pg, 2, prefix="gpu", path=CHAIN_GPU)
    plain = queue(pg, 2, prefix="plain")
    # A worker without the label: takes the handed-back runs and the plain ones, never the gpu ones.
    with worker(pg, tmp_path, poll=0.3) as b:
        wait_until("B finishing the handed-back and plain runs", lambda: all_completed(pg, [*slow, *plain]), 40, b)
        time.sleep(1.0)  # room and time to claim more: it must not
        assert set(statuses(pg)[r] for r in gpu) == {"queued"}
        with worker(pg, tmp_path, "--labels", "linux,gpu", poll=0.3) as g:
            wait_until("the gpu worker finishing the gpu runs", lambda: all_completed(pg, list(gpu)), 40, g)
            listed = cli_json("workers", "list", "--store", pg, cwd=tmp_path)
            assert stop(g, signal.SIGTERM) == 0
        assert stop(b, signal.SIGTERM) == 0
    for run_id in gpu:
        assert owners(pg, run_id)[0].split(":")[1] == str(g.pid)
    for run_id in slow:
        assert [o.split(":")[1] for o in owners(pg, run_id)] == [str(a.pid), str(b.pid)]
    rows = {w["pid"]: w for w in listed}
    assert rows[a.pid]["state"] == "stopped" and rows[a.pid]["runs_held"] == 0
    assert rows[g.pid]["labels"] == ["gpu", "linux"] and rows[g.pid]["state"] == "running"
    assert rows[b.pid]["state"] == "running" and rows[b.pid]["heartbeat_age_s"] < 30
    shown = cli_json("runs", "show", next(iter(slow)), "--store", pg, cwd=tmp_path)
    assert [
        h.get("owner", "").split(":")[1] for h in shown["history"] if h["type"] in ("run_started", "run_resumed")
    ] == [str(a.pid), str(b.pid)]


def _worker_id(store: str, pid: int) -> str:
    s = open_store(store)
    try:
        return next(w.worker_id for w in s.list_workers() if w.pid == pid)
    finally:
        s.close()


def _two_in(tmp_path: Path, prefix: str) -> bool:
    return f"{prefix}/two" in calls_by_key(tmp_path)


# -- LISTEN/NOTIFY wakes an idle worker ----------------------------------------------------------


def test_an_idle_worker_on_postgresql_is_woken_by_the_notification_not_its_poll(pg: str, tmp_path: Path) -> None:
    with worker(pg, tmp_path, poll=600) as a:  # polls once at start, then only when notified
        wait_until("A registered", lambda: _registered(pg, a.pid), 30, a)
        time.sleep(0.5)  # past its first look at the store
        runs = queue(pg, 2, prefix="woken")
        # With a 600 s poll interval only the notification can make it claim these now.
        wait_until("A executing the runs it was notified of", lambda: all_completed(pg, list(runs)), 60, a)
        assert stop(a, signal.SIGTERM) == 0


def _registered(store: str, pid: int) -> bool:
    s = open_store(store)
    try:
        return any(w.pid == pid for w in s.list_workers())
    finally:
        s.close()


# -- SQLite: several workers on one machine ----------------------------------------------------------


def test_two_workers_share_a_sqlite_store_each_run_once(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/runner.db"
    runs = queue(store, 6, prefix="lite")
    with worker(store, tmp_path) as a, worker(store, tmp_path) as b:
        wait_until("every run completed", lambda: all_completed(store, list(runs)), 60, a)
        assert stop(a, signal.SIGTERM) == 0 and stop(b, signal.SIGTERM) == 0
    assert_once_each(tmp_path, runs, killed=set())
    assert all(len(v) == 1 for v in calls_by_key(tmp_path).values())


def test_worker_refuses_bad_labels_and_a_private_store(tmp_path: Path) -> None:
    rc, _, err = cli("worker", "--labels", "gpu,no good", "--store", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert rc == 2 and "--labels: 'no good' is not a label" in err
    rc, _, err = cli("worker", "--store", "memory://", cwd=tmp_path)
    assert rc == 2 and "--store" in err and "memory://" in err
