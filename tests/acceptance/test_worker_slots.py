"""An agent's ``max_concurrency`` across workers (SPEC §6): slots in the store, held by run leases.

Black-box: real `runner worker` processes on a fresh PostgreSQL database. The gauge agent
runs inside each worker and logs, under a file lock shared by all of them, how many of its
calls are in flight at once — measured outside the store, across processes.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from runner.store import open_store
from tests.acceptance.test_lifecycle import background, wait_until
from tests.acceptance.test_workers import TTL, all_completed, queue, statuses, stop
from tests.agents.gauge_agent import mark_dead
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "workers"


def gauge_worker(store: str, tmp_path: Path, concurrency: int = 3) -> Any:
    env = {"PYTHONPATH": str(REPO), "GAUGE_PATH": str(tmp_path / "gauge.jsonl"), "RUNNER_LEASE_TTL": str(TTL)}
    return background(
        "worker", "--store", store, "--concurrency", str(concurrency), "--poll-interval", "0.3", cwd=tmp_path, env=env
    )


def gauge(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "gauge.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_three_workers_never_exceed_an_agents_max_concurrency_together(pg_url: str, tmp_path: Path) -> None:
    runs = queue(pg_url, 6, prefix="g", sleep=0.3, path=FIXTURES / "gauge.yaml")  # 24 calls of 0.3 s, at most 2 at once
    with gauge_worker(pg_url, tmp_path) as a, gauge_worker(pg_url, tmp_path) as b, gauge_worker(pg_url, tmp_path) as c:
        wait_until("every run completed", lambda: all_completed(pg_url, list(runs)), 120, a)
        for w in (a, b, c):
            assert stop(w, signal.SIGTERM) == 0, w.stderr()
    enters = [x for x in gauge(tmp_path) if x["kind"] == "enter"]
    assert len(enters) == 24
    assert max(x["in_flight"] for x in enters) == 2  # never 3 or more; and the two slots were used
    assert len({x["pid"] for x in enters}) >= 2  # the calls came from several workers
    s = open_store(pg_url)
    try:
        assert s.agent_slots_held("gauge") == []  # every slot given back
    finally:
        s.close()


def test_the_slot_of_a_sigkilled_worker_comes_back_when_its_lease_expires(pg_url: str, tmp_path: Path) -> None:
    one = FIXTURES / "gauge_one.yaml"
    long_run = next(iter(queue(pg_url, 1, prefix="long", sleep=60, path=one)))
    s = open_store(pg_url)
    try:
        with gauge_worker(pg_url, tmp_path) as a:
            # A takes the one slot and stays in the call (60 s on its first call of the key).
            wait_until("A in the call", lambda: any(x["kind"] == "enter" for x in gauge(tmp_path)), 40, a)
            assert s.agent_slots_held("gauge") == [(0, long_run)]
            short = next(iter(queue(pg_url, 1, prefix="short", path=one)))
            with gauge_worker(pg_url, tmp_path) as b:
                wait_until("B claiming the short run", lambda: statuses(pg_url)[short] == "running", 30, b)
                time.sleep(1.0)
                assert statuses(pg_url)[short] == "running"  # waiting for the slot A holds
                assert [x["key"] for x in gauge(tmp_path) if x["kind"] == "enter"] == ["long0/1"]
                a.kill()
                killed = time.monotonic()
                mark_dead(str(tmp_path / "gauge.jsonl"), a.pid)
                wait_until("B finishing both runs", lambda: all_completed(pg_url, [short, long_run]), 60, b)
                assert time.monotonic() - killed >= TTL * 0.5  # not before A's lease ran out
                assert stop(b, signal.SIGTERM) == 0, b.stderr()
        enters = [x for x in gauge(tmp_path) if x["kind"] == "enter"]
        assert sorted(x["key"] for x in enters) == ["long0/1", "long0/1", "short0/1"]  # long's call re-sent by B
        assert all(x["in_flight"] == 1 for x in enters)
        assert s.agent_slots_held("gauge") == []
    finally:
        s.close()
