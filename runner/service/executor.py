"""Executing runs inside a long-lived process: ``runner worker``, and ``runner serve``.

The process executes the runs it starts itself (``serve``) and the runs it claims from
its store: while it has room (``max_runs``, the worker's ``--concurrency``) it asks the
store for the next eligible run (``claim_next_run``: a queued run whose ``runs_on`` labels
it has, or a run in the workers' care whose lease ran out — a dead worker's — or was
handed back), in one short transaction that makes it the run's lease holder; the run is
then prepared and driven through :class:`RunService` like any other. It claims again
when a run ends, when PostgreSQL notifies that a run was queued or released, and every
``poll_s`` seconds whatever happens (a lost notification delays a run, never loses it).

One heartbeat per process, not one per run: a single transaction marks the worker alive
and renews the lease of every run it holds in one statement (fenced per run by owner and
epoch; a run whose lease was taken over hears that it lost it). The agent slots of
``max_concurrency`` are held by those leases, so the heartbeat keeps them too. Stopping
hands back what it holds: the runs in flight are interrupted (resumable, their leases
released, the event saying which worker handed them back), so another worker takes them
over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from runner.engine.slots import AgentSlots
from runner.errors import RunBusy, RunnerError
from runner.model import Workflow
from runner.model import events as ev
from runner.model.events import Event, EventSink
from runner.service.runs import Prepared, RunService
from runner.store.base import Lease, Store, WorkerRecord
from runner.store.leases import lease_owner_id, lease_ttl, take_lease

log = logging.getLogger("runner.executor")

SKIP_S = 60.0  # a run this process could not prepare is left to other workers this long
_MAX_SKIPPED = 100


class RunExecutor:
    """Background execution of runs in this process's event loop.

    ``labels``: this worker's labels (a run with ``runs_on`` needs all of its labels among
    them). ``on_note``: one line per run claimed and ended, for the worker's stderr.
    """

    def __init__(
        self,
        store: Store,
        make_service: Callable[[], RunService],
        *,
        poll_s: float = 1.0,
        max_runs: int = 16,
        claim_queued: bool = True,
        labels: Sequence[str] = (),
        worker_id: str | None = None,
        on_note: Callable[[str], None] | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self.store = store
        self.make_service = make_service
        self.poll_s = poll_s
        self.max_runs = max_runs
        self.claim_queued = claim_queued
        self.labels = sorted(set(labels))
        self.worker_id = worker_id or lease_owner_id()
        self.on_note = on_note
        self.sinks = list(sinks)  # every run's events also go here (the server's circuit view)
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.errors: dict[str, str] = {}  # run id -> why its execution ended in an error
        self.claimed = 0
        self.stopping = False
        self._skipped: dict[str, float] = {}  # run id -> monotonic time it may be claimed again
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._notes: Any = None
        self._registered = False
        # The leases the heartbeat renews (run id -> lease, and whom to tell it was lost),
        # the engines of the runs in flight, and the process's agent slots.
        self._kept: dict[str, tuple[Lease, Callable[[], None]]] = {}
        self._engines: dict[str, Any] = {}
        self.slots: AgentSlots | None = AgentSlots(store) if store.shared else None
        self.renewals = 0  # heartbeats that renewed leases (one statement each)

    def _note(self, text: str) -> None:
        log.info("%s", text)
        if self.on_note is not None:
            self.on_note(text)

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
        run_id = prepared.run.run_id
        try:
            if prepared.finished:
                service.release(run_id=run_id, lease=prepared.lease)
                return
            keeper = self if self._beat_task is not None else None  # else each run renews its own
            eng = self._engines[run_id] = service.engine(prepared, sinks=self.sinks, keeper=keeper, slots=self.slots)
            result = await service.execute(prepared, sinks=self.sinks, engine=eng)
            self._note(f"run {run_id} {result.status}")
        except RunnerError as exc:  # a failed run is stored as failed; note why for the logs
            self.errors[run_id] = str(exc)
            self._note(f"run {run_id} ended: {exc}")
        except asyncio.CancelledError:
            self._note(f"run {run_id} handed back (interrupted, resumable)")
            raise
        except Exception as exc:  # noqa: BLE001 - one run's crash must not stop the process
            self.errors[run_id] = f"{type(exc).__name__}: {exc}"
            log.exception("run %s crashed", run_id)
            self._fail_crashed(run_id, exc)
        finally:
            self._engines.pop(run_id, None)
            if self._wake is not None:
                self._wake.set()  # room for another run

    def _fail_crashed(self, run_id: str, exc: Exception) -> None:
        """End a run whose execution crashed inside runner as failed, so that no worker picks
        it up again and crashes the same way (the claim takes it out of the workers' care)."""
        try:
            lease = take_lease(self.store, run_id)
        except RunnerError:
            return  # another process holds it now: it is theirs to finish
        try:
            run = self.store.get_run(run_id)
            if run is not None and run.status in ("pending", "running", "interrupted", "queued"):
                error = f"internal error in {self.worker_id}: {type(exc).__name__}: {exc}"
                self.store.append_many(
                    [Event(type=ev.RUN_FAILED, run_id=run_id, error=error, data={"outputs": {}})], fence=lease
                )
        except RunnerError:
            pass
        finally:
            try:
                self.store.release_run(run_id, lease.owner)
            except RunnerError:
                pass

    # -- claimed runs ------------------------------------------------------------------------
    def claim_once(self) -> list[str]:
        """Claim and start runs while there is room; returns the ids started."""
        started: list[str] = []
        while not self.stopping and len(self.tasks) < self.max_runs:
            now = time.monotonic()
            self._skipped = {r: t for r, t in self._skipped.items() if t > now}
            claim = self.store.claim_next_run(self.worker_id, self.labels, lease_ttl(), exclude=list(self._skipped))
            if claim is None:
                break
            run_id = claim.run_id
            service = self.make_service()
            try:
                prepared = service.prepare(run_id, lease=claim.lease)  # releases the lease if it fails
            except RunBusy:
                continue
            except RunnerError as exc:
                self.errors[run_id] = str(exc)
                if len(self._skipped) < _MAX_SKIPPED:
                    self._skipped[run_id] = now + SKIP_S
                self._note(f"run {run_id} cannot be executed here (left to other workers): {exc}")
                continue
            self.claimed += 1
            how = "took over" if claim.recovered else "claimed"
            self._note(f"{how} run {run_id} (workflow {prepared.workflow.name}, epoch {claim.lease.epoch})")
            self._spawn(service, prepared)
            started.append(run_id)
        return started

    async def _poll(self) -> None:
        assert self._wake is not None
        while not self.stopping:
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            try:
                self.claim_once()
            except Exception:  # noqa: BLE001 - a store hiccup delays, never stops, the loop
                log.exception("claiming runs failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    # -- LeaseKeeper: the heartbeat renews the leases of the runs in flight ------------------
    def keep(self, run_id: str, lease: Lease, on_lost: Callable[[], None]) -> None:
        self._kept[run_id] = (lease, on_lost)

    def drop(self, run_id: str) -> None:
        self._kept.pop(run_id, None)

    def beat(self) -> list[str]:
        """One heartbeat: alive, and every kept lease renewed; tells each run whose lease was lost."""
        kept = dict(self._kept)
        lost = self.store.heartbeat_worker(
            self.worker_id, leases=[(run_id, entry[0]) for run_id, entry in kept.items()], ttl_s=lease_ttl()
        )
        if kept:
            self.renewals += 1
        for run_id in lost:
            entry = self._kept.get(run_id)
            if entry is not None and entry is kept[run_id]:  # still that session of the run
                del self._kept[run_id]
                entry[1]()
        return lost

    async def _heartbeat(self) -> None:
        interval = lease_ttl() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a lease not renewed expires; its run's writes are then refused
                log.warning("worker heartbeat failed: %s", exc)

    def start(self) -> None:
        """Register as a worker and begin claiming runs (no-op unless ``claim_queued``)."""
        if not self.claim_queued or self._loop_task is not None:
            return
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.store.register_worker(
            WorkerRecord(
                worker_id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                labels=self.labels,
                concurrency=self.max_runs,
                ttl_s=lease_ttl(),
            )
        )
        self._registered = True
        listen = getattr(self.store, "run_notifications", None)
        if listen is not None:
            self._notes = listen()
            self._notes.start(self._wake.set, on_slot=self.slots.wake if self.slots is not None else None)
        self._loop_task = loop.create_task(self._poll(), name="claim runs")
        self._beat_task = loop.create_task(self._heartbeat(), name="worker heartbeat")

    @property
    def listening(self) -> bool:
        """Whether a PostgreSQL notification listener is connected now."""
        return bool(self._notes is not None and self._notes.listening)

    async def aclose(self) -> None:
        """Stop claiming and hand back the runs in flight (interrupted, resumable, leases released)."""
        self.stopping = True
        for attr in ("_loop_task", "_beat_task"):
            task = getattr(self, attr)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                setattr(self, attr, None)
        if self._notes is not None:
            await self._notes.close()
            self._notes = None
        tasks = list(self.tasks.values())
        reason = f"handed back by worker {self.worker_id} (stopping)"
        for eng in self._engines.values():
            eng.interrupt_reason = reason  # what `runs show` says, not "interrupted by the user"
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._registered:
            self._registered = False
            try:
                self.store.heartbeat_worker(self.worker_id, stopped=True)
            except RunnerError as exc:
                log.warning("could not mark worker %s stopped: %s", self.worker_id, exc)
