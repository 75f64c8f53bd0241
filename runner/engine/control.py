"""Control of a run from outside its loop: the lease and the run's signals, cancel, fatal stops.

A base class of ``Engine``: these are the ways a session is told to stop — a cancel
request from any process (read by the signal poller), a lease taken over by another
process (a refused fenced write or a failed renewal), a failing store, an event the
store could not hold as emitted (``abort``: the run fails) — and how the loop is woken
when one comes, including when it is awaiting a lone step in line.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from runner.engine.journal import Journal
from runner.engine.lease import LeaseKeeper, RunLease, SignalPoller
from runner.engine.preflight import PULL_KINDS
from runner.engine.slots import AgentSlots
from runner.errors import LeaseLost, RunnerError

if TYPE_CHECKING:
    from runner.engine.preflight import Agents
    from runner.engine.steps import PullStep
    from runner.store.base import Lease, Store


class RunControl:
    """The lease, the signal poller and the stop switches of one engine."""

    run_id: str
    journal: Journal
    pull: PullStep
    agents: Agents
    _kinds: dict[str, str]
    _given_lease: Lease | None
    _cancel_after: str | None
    _lease: RunLease | None
    _signals: SignalPoller | None
    _fatal: BaseException | None
    _inline_task: asyncio.Task[Any] | None
    _inline_cancel: bool
    _cancelled: bool
    _timed_out: bool
    _aborted: str | None
    _main_status: Any
    _preflight_task: asyncio.Future[None] | None
    _wake: asyncio.Event

    # Set by whoever builds the engine, before ``run`` (``RunService.engine``): a worker's
    # heartbeat that renews this run's lease with its others, the process's agent slots,
    # and what an interruption records (a worker handing its runs back says so).
    keeper: LeaseKeeper | None = None
    slots: AgentSlots | None = None
    interrupt_reason: str = "interrupted by the user"

    def _hold(self, store: Store) -> None:
        """Take the run's lease (or keep the one handed in), renew it, and watch the run's signals."""
        self._lease = RunLease(store, self.run_id, self._given_lease, self._stop_with, keeper=self.keeper)
        lease = self.journal.fence = self._lease.claim()
        if store.shared and any(a.max_concurrency for a in self.agents.specs.values()):
            # max_concurrency holds across every process of the store: slots held by this lease.
            slots = self.slots if self.slots is not None else AgentSlots(store)
            self.agents.limit = functools.partial(slots.limit, run_id=self.run_id, lease=lease)
        if store.shared or not PULL_KINDS.isdisjoint(self._kinds.values()):
            self._signals = SignalPoller(
                store,
                self.run_id,
                on_cancel=self.cancel,
                on_report=self.pull.on_report,
                waiting=lambda: bool(self.pull.waiting),
                cancel_after=self._cancel_after,
            )
            self._signals.start()

    def poll_signals(self) -> None:
        """Read the run's log now (a pull step timing out: a report may have just come in)."""
        if self._signals is not None:
            self._signals.poll_once()

    def _on_lease_lost(self) -> None:
        """A fenced write was refused: another process executes the run now."""
        if self._lease is not None:
            self._stop_with(self._lease.lost())

    def _stop_with(self, fatal: RunnerError) -> None:
        """End the run loop (or the agents' start-up) with ``fatal``."""
        if self._fatal is None:
            self._fatal = fatal
        if isinstance(fatal, LeaseLost):
            self.journal.lost = True  # write nothing more about a run another process holds
            self.journal.pending.clear()
        self._interrupt_inline()
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()
        elif self._preflight_task is not None:
            self._preflight_task.cancel()

    def _interrupt_inline(self) -> None:
        """Stop the step the loop awaits in line (a chain's one task), as a cancelled step."""
        task = self._inline_task
        if task is not None and not self._inline_cancel:
            self._inline_cancel = True
            task.cancel()

    def abort(self, reason: str) -> None:
        """Fail the run now, for ``reason``: pending steps are cancelled, ``finally`` still runs.

        The journal calls it when the store refused an event as emitted (a value that is not
        JSON data got past its producer's check): the run ends ``failed`` with the reason.
        """
        if self._aborted is None:
            self._aborted = reason
        # The step awaited in line is not interrupted: the journal calls this from that very
        # task (a flush), which a cancel would hit at its next await, wherever that is. The
        # step ends as it will; the loop then cancels what is pending and stops.
        if hasattr(self, "_wake"):
            self._wake.set()

    def stopping_gracefully(self) -> bool:
        """A cancel, a timeout or an abort stops steps so that ``finally`` still runs; Ctrl-C
        and a lost lease (``_fatal``) do not."""
        return self._fatal is None and (self._cancelled or self._timed_out or self._aborted is not None)

    def cancel(self) -> None:
        """Ask a running run to stop: pending steps are cancelled, ``finally`` still runs."""
        self._cancelled = True
        if self._main_status is None:
            self._interrupt_inline()
        if hasattr(self, "_wake"):
            self._wake.set()
