"""The executing process's hold on its run: the lease, kept alive, and the run's signals.

``RunLease`` claims the run (unless the caller already did, before reading its state),
renews the claim every third of its lifetime from a loop timer — agent start-up included —
(in a worker, the worker's heartbeat renews all its runs' leases at once: ``LeaseKeeper``)
and releases it at the end; a renewal that finds the lease taken over stops the run.
``SignalPoller`` reads what other processes wrote into the run's log (reports on pull
steps, cancel requests) with a cheap indexed query: a short poll, never an object in
another process's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from runner.errors import LeaseLost, RunnerError, StoreError
from runner.model import events as ev
from runner.model.events import Event
from runner.store.leases import lease_ttl, take_lease

if TYPE_CHECKING:
    from runner.store.base import Lease, Store

POLL_IDLE_S = 0.5  # a cancel request is seen within about this long
POLL_WAITING_S = 0.2  # while a pull step waits for its report


class LeaseKeeper(Protocol):
    """Renews the leases of many runs together (a worker's heartbeat: one statement for all).

    ``keep``: renew ``lease`` until ``drop``; call ``on_lost`` (once) if it was taken over.
    """

    def keep(self, run_id: str, lease: Lease, on_lost: Callable[[], None]) -> None: ...
    def drop(self, run_id: str) -> None: ...


class RunLease:
    """Claim, renew and release one run's lease; ``on_fatal`` hears when it is lost.

    With a ``keeper`` the lease is renewed by it (batched with the other runs of the
    process) instead of by a timer of its own.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        lease: Lease | None,
        on_fatal: Callable[[RunnerError], None],
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.lease = lease
        self.ttl = lease_ttl()
        self.on_fatal = on_fatal
        self.keeper = keeper
        self._timer: asyncio.TimerHandle | None = None

    def claim(self) -> Lease:
        """Take the lease (``RunBusy`` if a live runner holds it) and start renewing it."""
        if self.lease is None:
            self.lease = take_lease(self.store, self.run_id)
        if self.keeper is not None:
            self.keeper.keep(self.run_id, self.lease, self._lost_to_keeper)
        else:
            self._timer = asyncio.get_running_loop().call_later(self.ttl / 3, self._renew)
        return self.lease

    def _lost_to_keeper(self) -> None:
        if self.lease is not None:
            self.on_fatal(self.lost())

    def lost(self) -> LeaseLost:
        """Forget a lease another process took over (never release it) and say so."""
        self.lease = None
        self.stop()
        return LeaseLost(
            f"run {self.run_id} lost its lease to another runner (paused or partitioned past "
            f"{self.ttl:g}s); this runner stopped without writing anything more"
        )

    def _renew(self) -> None:
        if self.lease is None:
            return
        try:
            if not self.store.renew_run(self.run_id, self.lease.owner, self.ttl):
                self.on_fatal(self.lost())
                return
        except StoreError as exc:
            self.on_fatal(exc)
            return
        self._timer = asyncio.get_running_loop().call_later(self.ttl / 3, self._renew)

    def stop(self) -> None:
        if self.keeper is not None:
            self.keeper.drop(self.run_id)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def release(self) -> None:
        """Give the lease back at the end of this session (a store error here is not the run's)."""
        self.stop()
        if self.lease is not None:
            owner, self.lease = self.lease.owner, None
            try:
                self.store.release_run(self.run_id, owner)
            except RunnerError:
                pass


class SignalPoller:
    """Polls the run's log for reports and cancel requests; calls back for each one."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        on_cancel: Callable[[], None],
        on_report: Callable[[Event], None],
        waiting: Callable[[], bool],
        cancel_after: str | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.on_cancel = on_cancel
        self.on_report = on_report
        self.waiting = waiting  # a pull step waits: poll faster
        self.cancel_after = cancel_after  # cancel requests up to then belong to an earlier session
        self.seq = 0
        self.stopped = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(0.0, self.poll)

    def poll(self) -> None:
        if self.stopped:
            return
        self.poll_once()
        interval = POLL_WAITING_S if self.waiting() else POLL_IDLE_S
        self._timer = asyncio.get_running_loop().call_later(interval, self.poll)

    def poll_once(self) -> None:
        """Read what is new in the run's log now (also called when a pull step times out)."""
        try:
            signals = self.store.get_signals(self.run_id, self.seq)
        except StoreError:
            signals = []  # a failing store is noticed by the next write; keep polling meanwhile
        for seq, e in signals:
            self.seq = max(self.seq, seq)
            if e.type == ev.RUN_CANCEL_REQUESTED:
                if self.cancel_after is None or e.ts > self.cancel_after:
                    self.on_cancel()
            elif e.type == ev.STEP_REPORTED and e.step_id is not None:
                self.on_report(e)

    def stop(self) -> None:
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
