"""Executing runs inside a long-lived process (``runner serve``; later ``runner worker``).

The process executes the runs it starts itself and, between them, the ``queued`` runs of
its store: each is claimed through its lease first (``prepare``), so two processes on one
store never execute one run twice; the loser of a claim race simply moves on. Stopping
cancels the runs in flight: the engine records them interrupted and releases their
leases, so any runner can resume them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from runner.errors import RunBusy, RunnerError
from runner.model import Workflow
from runner.service.runs import Prepared, RunService
from runner.store.base import Lease, Store

log = logging.getLogger("runner.executor")


class RunExecutor:
    """Background execution of runs in this process's event loop."""

    def __init__(
        self,
        store: Store,
        make_service: Callable[[], RunService],
        *,
        poll_s: float = 1.0,
        max_runs: int = 16,
        claim_queued: bool = True,
    ) -> None:
        self.store = store
        self.make_service = make_service
        self.poll_s = poll_s
        self.max_runs = max_runs
        self.claim_queued = claim_queued
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.errors: dict[str, str] = {}  # run id -> why its execution ended in an error
        self._loop_task: asyncio.Task[None] | None = None

    # -- runs this process started ----------------------------------------------------------
    def launch(self, service: RunService, run_id: str, lease: Lease, workflow: Workflow) -> None:
        """Execute a run whose lease this process holds, in the background."""
        prepared = service.prepare(run_id, lease=lease, workflow=workflow)
        self._spawn(service, prepared)

    def _spawn(self, service: RunService, prepared: Prepared) -> None:
        run_id = prepared.run.run_id
        task = asyncio.get_running_loop().create_task(self._drive(service, prepared), name=f"run {run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(run_id, None))

    async def _drive(self, service: RunService, prepared: Prepared) -> None:
        try:
            if prepared.finished:
                service.release(run_id=prepared.run.run_id, lease=prepared.lease)
                return
            await service.execute(prepared)
        except RunnerError as exc:  # a failed run is stored as failed; note why for the logs
            self.errors[prepared.run.run_id] = str(exc)
            log.info("run %s ended: %s", prepared.run.run_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one run's crash must not stop the server
            self.errors[prepared.run.run_id] = f"{type(exc).__name__}: {exc}"
            log.exception("run %s crashed", prepared.run.run_id)

    # -- queued runs -------------------------------------------------------------------------------
    def claim_once(self) -> list[str]:
        """Claim and start queued runs while there is room; returns the ids started."""
        started: list[str] = []
        room = self.max_runs - len(self.tasks)
        if room <= 0:
            return started
        for run in self.store.list_runs(status="queued", limit=room * 2):
            if len(started) >= room:
                break
            if run.run_id in self.tasks:
                continue
            service = self.make_service()
            try:
                prepared = service.prepare(run.run_id)
            except RunBusy:
                continue  # another process claimed it first
            except RunnerError as exc:
                self.errors[run.run_id] = str(exc)
                log.warning("queued run %s cannot be executed here: %s", run.run_id, exc)
                continue
            self._spawn(service, prepared)
            started.append(run.run_id)
        return started

    async def _poll(self) -> None:
        while True:
            try:
                self.claim_once()
            except Exception:  # noqa: BLE001 - a store hiccup delays, never stops, the loop
                log.exception("claiming queued runs failed")
            await asyncio.sleep(self.poll_s)

    def start(self) -> None:
        """Begin claiming queued runs (no-op unless ``claim_queued``)."""
        if self.claim_queued and self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._poll(), name="claim queued runs")

    async def aclose(self) -> None:
        """Stop claiming and cancel the runs in flight (they stay resumable)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
