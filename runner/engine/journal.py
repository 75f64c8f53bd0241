"""The event journal of one run: masked once, shown live at once, made durable in group commits.

Every state change of a run is an ``Event`` (the contract between the engine, the store,
the progress printer, ``--events`` and resume). ``emit`` hands it to the live sinks at
once and keeps it for the store; ``flush`` writes what is kept in one transaction before
every effect outside the runner (an MCP call, a pull assignment, a nested run, the end),
so what the store says always precedes what happened — and a chain step costs one commit.

With a lease, every flush is fenced by it: a runner whose lease was taken over writes
nothing, and from then on drops what it emits (``lost``).

What an event carries is JSON data: every producer of values (templates, tool results,
pull reports, inputs) checks its own, so the store gets nothing it cannot encode. The
journal is the last line: the store's encoder checks each batch as it writes it (one
pass, the one it makes anyway), and a batch it refuses (``NotStorable``: nothing of it
was written) is written again with the offending values replaced by descriptions, a
``run_completed`` among them becoming ``run_failed``; the engine is then told to fail
the run (``on_broken``) with the reason — a run is never left ``running`` by a value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from runner.errors import LeaseLost, NotStorable
from runner.model import events as ev
from runner.model.data import NotData, as_data, scrub
from runner.model.events import Event, EventSink, now_iso
from runner.template import Masker

if TYPE_CHECKING:
    from runner.store.base import Lease, Store

ProgressFn = Callable[[str, float, float | None, str | None], None]


class Journal:
    """Events of one run for the store (buffered) and the live sinks (immediate)."""

    def __init__(
        self,
        store: Store | None,
        sinks: Sequence[EventSink],
        masker: Masker,
        *,
        masking: bool,
        on_progress: ProgressFn | None = None,
    ) -> None:
        self.store = store
        self.sinks: list[EventSink] = list(sinks)
        self.masker = masker
        self.masking = masking  # there are secrets to mask
        self.on_progress = on_progress
        self.run_id = ""
        self.fence: Lease | None = None
        self.lost = False  # the lease was taken over: nothing more is written
        self.pending: list[Event] = []
        self.on_lost: Callable[[], None] | None = None
        self.broken: str | None = None  # why an event could not be stored as emitted
        self.on_broken: Callable[[str], None] | None = None
        # A nested run's journal keeps nothing: its events go to the caller's (``forward``),
        # and its flushes are the caller's, so an inner call is preceded by its events too.
        self.upstream: Callable[[], None] | None = None

    def emit(
        self,
        type_: str,
        step_id: str | None = None,
        *,
        attempt: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Record a state change: to every live sink now, to the store at the next flush.

        Two calls a chain step: the fields are named parameters (no ``**kw`` dict) and the
        event is built positionally, its timestamp taken here.
        """
        if self.store is None and not self.sinks:
            return  # nobody listens: do not even build the event
        if not data:
            data = {}
        if self.masking:
            data = self.masker.mask(data)
            if error:
                error = self.masker.mask_text(error)
        e = Event(type_, self.run_id, now_iso(), step_id, attempt, agent_id, error, data)
        if self.store is not None:
            self.pending.append(e)
        for sink in self.sinks:
            sink(e)

    def forward(self, e: Event) -> None:
        """An event of a nested run, renamed into this run: kept and shown like our own."""
        if self.store is not None and e.type != ev.STEP_PROGRESS:
            self.pending.append(e)  # made durable by the nested run's next flush (``upstream``)
        for sink in self.sinks:
            sink(e)

    def flush(self) -> None:
        """Make every kept event durable, in one store transaction fenced by the lease."""
        if self.upstream is not None:
            self.upstream()
            return
        if self.lost:
            self.pending.clear()
            return
        if self.pending and self.store is not None:
            batch, self.pending = self.pending, []
            try:
                try:
                    self.store.append_many(batch, self.fence)
                except NotStorable as exc:
                    self._salvage(batch, exc)
            except LeaseLost:
                self.lose()
                raise

    def _salvage(self, batch: list[Event], refused: NotStorable) -> None:
        """Write a batch the store refused, its values that are not data described, and break the run."""
        assert self.store is not None
        fixed: list[Event] = []
        reasons: list[str] = []
        for e in batch:
            try:
                as_data(e.data)
            except NotData as bad:
                reason = f"event {e.type}" + (f" of step '{e.step_id}'" if e.step_id else "") + f": {bad}"
                if self.masking:
                    reason = self.masker.mask_text(reason)
                reasons.append(reason)
                e = dataclasses.replace(e, data=scrub(e.data))
            fixed.append(e)
        if not reasons:
            raise refused  # not a value of ours the rule knows: the store's own message stands
        # The run cannot have completed: its end, if in this batch, is a failure with the reason.
        fixed = [
            dataclasses.replace(e, type=ev.RUN_FAILED, error=reasons[0]) if e.type == ev.RUN_COMPLETED else e
            for e in fixed
        ]
        self.store.append_many(fixed, self.fence)
        if self.broken is None:
            self.broken = reasons[0]
            if self.on_broken is not None:
                self.on_broken(reasons[0])

    def lose(self) -> None:
        """The lease is gone: drop what is kept, write nothing more, tell the engine."""
        self.lost = True
        self.fence = None
        self.pending.clear()
        if self.on_lost is not None:
            self.on_lost()

    def progress(self, sid: str, progress: float, total: float | None, message: str | None) -> None:
        """Progress notifications go to the live sinks only, not to the store (they are chatty)."""
        if message and self.masking:
            message = self.masker.mask_text(message)
        e = Event(
            type=ev.STEP_PROGRESS,
            run_id=self.run_id,
            step_id=sid,
            data={"progress": progress, "total": total, "message": message},
        )
        for sink in self.sinks:
            sink(e)
        if self.on_progress is not None:
            self.on_progress(sid, progress, total, message)
