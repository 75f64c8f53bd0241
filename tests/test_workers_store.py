"""The workers' claim in the store (SPEC §6), the same on memory, SQLite and PostgreSQL.

``claim_next_run`` decides which run a worker executes next: queued runs in order, only
those whose ``runs_on`` labels it has; runs in the workers' care whose lease expired or
was handed back; never a run an interactive runner holds or left behind; and each claim
is a new lease epoch that fences the previous holder. Concurrent claimers on PostgreSQL
never get the same run.
"""

from __future__ import annotations

import threading
import time

import pytest

from runner.errors import LeaseLost
from runner.model import events as ev
from runner.model.events import Event
from runner.store.base import RunRecord, Store, WorkerRecord
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    Backend,
    backend_fixture,
    pg_template,
    pg_url,
    store_fixture,
)

W1, W2 = "hostA:101:aaaa:1", "hostB:202:bbbb:2"


def queue(store: Store, run_id: str, runs_on: list[str] | None = None) -> None:
    store.create_run(RunRecord(run_id=run_id, workflow_name="wf", workflow_hash="h", runs_on=runs_on))
    store.append(Event(type=ev.RUN_QUEUED, run_id=run_id, data={"workflow": "wf"}))
    time.sleep(0.002)  # distinct creation times: claims go oldest first


def test_queued_runs_are_claimed_oldest_first_once_each_with_a_new_epoch(store: Store) -> None:
    for r in ("r1", "r2"):
        queue(store, r)
    first = store.claim_next_run(W1, [], 30)
    second = store.claim_next_run(W2, [], 30)
    assert first is not None and second is not None
    assert (first.run_id, second.run_id) == ("r1", "r2")
    assert first.lease.owner == W1 and first.lease.epoch == 1 and not first.recovered
    assert store.claim_next_run(W1, [], 30) is None  # nothing left; held runs are not offered
    assert store.get_run("r1").worker == W1  # type: ignore[union-attr]


def test_runs_on_labels_must_all_be_among_the_workers(store: Store) -> None:
    queue(store, "gpu", ["gpu", "linux"])
    queue(store, "any")
    assert store.claim_next_run(W1, ["gpu"], 30).run_id == "any"  # type: ignore[union-attr]
    assert store.claim_next_run(W1, ["gpu"], 30) is None  # lacks `linux`
    got = store.claim_next_run(W2, ["linux", "gpu", "arm"], 30)
    assert got is not None and got.run_id == "gpu"
    assert store.get_run("gpu").runs_on == ["gpu", "linux"]  # type: ignore[union-attr]


def test_a_dead_workers_run_is_taken_over_after_its_lease_expires_and_the_old_holder_is_fenced(store: Store) -> None:
    queue(store, "r1")
    old = store.claim_next_run(W1, [], 0.3)
    assert old is not None
    store.append_many([Event(type=ev.RUN_STARTED, run_id="r1", data={"workflow": "wf"})], fence=old.lease)
    assert store.claim_next_run(W2, [], 30) is None  # W1's lease is live
    time.sleep(0.4)
    new = store.claim_next_run(W2, [], 30)
    assert new is not None and new.run_id == "r1" and new.recovered and new.lease.epoch == old.lease.epoch + 1
    with pytest.raises(LeaseLost):
        store.append_many([Event(type=ev.STEP_STARTED, run_id="r1", step_id="a", attempt=1)], fence=old.lease)
    assert not store.renew_run("r1", W1, 30)


def test_a_handed_back_run_is_claimable_at_once_but_an_interactive_runners_run_is_not(store: Store) -> None:
    queue(store, "worker-run")
    got = store.claim_next_run(W1, [], 30)
    assert got is not None
    store.append_many([Event(type=ev.RUN_STARTED, run_id="worker-run", data={"workflow": "wf"})], fence=got.lease)
    store.append_many([Event(type=ev.RUN_INTERRUPTED, run_id="worker-run", error="stopped")], fence=got.lease)
    store.release_run("worker-run", W1)  # SIGTERM: handed back
    # An interactive `runner run` that was interrupted (Ctrl-C) stays for `runner resume`.
    store.create_run(RunRecord(run_id="cli-run", workflow_name="wf", workflow_hash="h"))
    lease = store.claim_run("cli-run", "hostC:303:cccc:3", 30).lease
    assert lease is not None
    store.append_many([Event(type=ev.RUN_STARTED, run_id="cli-run", data={"workflow": "wf"})], fence=lease)
    store.append_many([Event(type=ev.RUN_INTERRUPTED, run_id="cli-run", error="interrupted")], fence=lease)
    store.release_run("cli-run", lease.owner)
    again = store.claim_next_run(W2, [], 30)
    assert again is not None and again.run_id == "worker-run" and again.recovered
    assert store.claim_next_run(W2, [], 30) is None
    # `runner resume` of a worker's run takes it out of the workers' care.
    store.release_run("worker-run", W2)
    assert store.claim_run("worker-run", "hostC:303:dddd:3", 30).lease is not None
    assert store.get_run("worker-run").worker is None  # type: ignore[union-attr]


def test_excluded_runs_are_left_to_other_workers(store: Store) -> None:
    queue(store, "r1")
    queue(store, "r2")
    assert store.claim_next_run(W1, [], 30, exclude=["r1"]).run_id == "r2"  # type: ignore[union-attr]
    assert store.claim_next_run(W2, [], 30).run_id == "r1"  # type: ignore[union-attr]


def test_workers_register_beat_stop_and_count_the_runs_they_hold(store: Store) -> None:
    store.register_worker(WorkerRecord(worker_id=W1, host="hostA", pid=101, labels=["b", "a"], concurrency=2, ttl_s=3))
    queue(store, "r1")
    assert store.claim_next_run(W1, [], 30) is not None
    store.heartbeat_worker(W1)
    (w,) = store.list_workers()
    assert (w.worker_id, w.labels, w.concurrency, w.runs_held, w.stopped_at) == (W1, ["a", "b"], 2, 1, None)
    store.release_run("r1", W1)
    store.heartbeat_worker(W1, stopped=True)
    (w,) = store.list_workers()
    assert w.runs_held == 0 and w.stopped_at is not None


def test_concurrent_claimers_never_get_the_same_run(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("one process only: covered by its lock")
    setup = backend.open()
    for i in range(30):
        setup.create_run(RunRecord(run_id=f"r{i:02d}", workflow_name="wf", workflow_hash="h"))
        setup.append(Event(type=ev.RUN_QUEUED, run_id=f"r{i:02d}", data={"workflow": "wf"}))
    got: dict[str, list[str]] = {}

    def claimer(name: str) -> None:
        s = backend.open()
        mine = got.setdefault(name, [])
        while (c := s.claim_next_run(f"host:{name}:x:1", [], 30)) is not None:
            mine.append(c.run_id)

    threads = [threading.Thread(target=claimer, args=(str(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [r for runs in got.values() for r in runs]
    assert sorted(claimed) == [f"r{i:02d}" for i in range(30)]  # every run once, none twice
