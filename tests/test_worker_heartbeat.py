"""The worker's heartbeat renews the leases of all its runs at once (SPEC §6), on SQLite and PostgreSQL.

A worker used to renew each run's lease with a transaction of its own; now its heartbeat
renews every lease it holds in one statement. The fence is unchanged: each lease is
renewed only while its run is held by that owner at that epoch, and a run whose lease was
taken over — and only that run — hears it lost it. A run of a process without a keeper
(`runner run`) still renews its own lease.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from runner.engine.lease import RunLease
from runner.service import RunService
from runner.service.executor import RunExecutor
from runner.store.base import Lease
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    Backend,
    durable_fixture,
    pg_template,
    pg_url,
)
from tests.test_workers_store import queue

OTHER = "hostB:202:bbbb:2"


def test_one_beat_renews_every_kept_lease_and_tells_only_the_run_that_lost_its_own(
    durable: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_LEASE_TTL", "0.4")  # what a beat renews the leases for
    store = durable.open()
    executor = RunExecutor(store, lambda: RunService(store), worker_id="hostA:101:aaaa:1")
    lost: list[str] = []
    leases: dict[str, Lease] = {}
    for run_id in ("r1", "r2", "r3"):
        queue(store, run_id)
        got = store.claim_next_run(executor.worker_id, [], 0.4)
        assert got is not None
        leases[got.run_id] = got.lease
        executor.keep(got.run_id, got.lease, lambda r=got.run_id: lost.append(r))
    executor.drop("r3")  # ended: no longer kept
    assert executor.beat() == [] and lost == []
    time.sleep(0.5)  # every lease has run out (0.4 s): r2 is taken over, r1 renewed just before
    executor.keep("r2", leases["r2"], lambda: lost.append("r2"))
    assert store.heartbeat_worker(executor.worker_id, leases=[("r1", leases["r1"])], ttl_s=30) == []
    took = store.claim_next_run(OTHER, [], 30, exclude=["r3"])
    assert took is not None and took.run_id == "r2" and took.lease.epoch == leases["r2"].epoch + 1
    assert executor.beat() == ["r2"]
    assert lost == ["r2"]  # exactly that run heard it
    assert executor.beat() == [] and lost == ["r2"]  # told once: it is no longer kept
    assert store.claim_next_run(OTHER, [], 30, exclude=["r3"]) is None  # r1 is still the worker's


def test_a_lease_with_a_keeper_is_renewed_by_it_and_one_without_by_its_own_timer(durable: Backend) -> None:
    store = durable.open()
    queue(store, "r1")
    queue(store, "r2")

    class Keeper:
        def __init__(self) -> None:
            self.kept: dict[str, Lease] = {}

        def keep(self, run_id: str, lease: Lease, on_lost: object) -> None:
            self.kept[run_id] = lease

        def drop(self, run_id: str) -> None:
            self.kept.pop(run_id, None)

    async def scenario() -> tuple[dict[str, Lease], bool, bool, dict[str, Lease]]:
        keeper = Keeper()
        kept = RunLease(store, "r1", None, lambda exc: None, keeper=keeper)
        alone = RunLease(store, "r2", None, lambda exc: None)
        kept.claim()
        alone.claim()
        during = dict(keeper.kept)
        timers = (kept._timer is None, alone._timer is not None)
        kept.release()
        alone.release()
        return during, *timers, keeper.kept

    during, keeper_has_no_timer, alone_has_timer, after = asyncio.run(scenario())
    assert list(during) == ["r1"] and keeper_has_no_timer and alone_has_timer
    assert after == {}  # released: dropped from the keeper


def test_a_stored_run_holds_max_concurrency_through_store_slots_and_gives_them_back(tmp_path: Path) -> None:
    """`runner run` on a shared store (here SQLite) takes the agent's slots in the store too."""
    from runner.model import AgentSpec, StepSpec, TransportKind, Workflow
    from runner.store import open_store
    from runner.testing import FakeAgent, FakePool

    store = open_store(f"sqlite:///{tmp_path}/r.db")
    running = peak = 0
    seen: list[list[tuple[int, str]]] = []

    async def work() -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        seen.append(store.agent_slots_held("a"))  # the slots held while this call is in flight
        await asyncio.sleep(0.01)
        running -= 1
        return 1

    spec = AgentSpec(id="a", transport=TransportKind.INPROCESS, module="<fake>", max_concurrency=2)
    steps = tuple(StepSpec(step_id=f"s{i}", tool_to_call="w", tool_arguments={}) for i in range(6))
    flow = Workflow(name="slots", steps=steps, agents=(spec,))
    service = RunService(store, pool=FakePool([FakeAgent("a", {"w": work})]))
    try:
        result = asyncio.run(service.run(flow, {}))
        assert result.status.value == "completed" and peak == 2
        assert all(1 <= len(held) <= 2 and {r for _, r in held} == {result.run_id} for held in seen)
        assert max(len(held) for held in seen) == 2
        assert store.agent_slots_held("a") == []
    finally:
        store.close()
