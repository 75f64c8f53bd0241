"""How one event changes the derived run and step rows — the single source of that truth.

Every backend (memory, SQLite, PostgreSQL) calls :func:`apply_event` inside the
transaction that stores the event, so the rows can never disagree between backends or
with the event log: ``replay(events)`` rebuilds exactly what a store holds.

The function is pure: it never mutates its arguments and returns new records. For-each
item results are *not* folded into the returned step's ``items`` (a 10,000-item step
would otherwise be copied or rewritten on every item); instead the :class:`Change`
names the one item to record (``item``) or that all items are dropped (``clear_items``),
and each backend applies that delta to its own item storage.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from runner import events as ev
from runner.errors import InputInvalid, StoreError
from runner.events import Event
from runner.store.base import RunRecord, StepRecord

_STEP_TYPES = frozenset(
    {
        ev.STEP_STARTED,
        ev.STEP_RETRYING,
        ev.STEP_COMPLETED,
        ev.STEP_FAILED,
        ev.STEP_SKIPPED,
        ev.STEP_CANCELLED,
        ev.STEP_PROGRESS,
        ev.STEP_RESET,
        ev.ITEM_STARTED,
        ev.ITEM_COMPLETED,
        ev.ITEM_FAILED,
    }
)
_RUN_TYPES = frozenset({ev.RUN_STARTED, ev.RUN_RESUMED, *ev.RUN_TERMINAL})


@dataclass(frozen=True)
class Change:
    """What one event does to the rows: new records (None = untouched) and an item delta."""

    run: RunRecord | None = None
    step: StepRecord | None = None
    item: tuple[int, Any] | None = None  # (index, result) of a completed for_each item
    clear_items: bool = False  # the step was reset: forget its item results


NO_CHANGE = Change()


def is_step_event(event_type: str) -> bool:
    """True when the event concerns one step (and so must carry a ``step_id``)."""
    return event_type in _STEP_TYPES


def apply_event(run: RunRecord | None, step: StepRecord | None, event: Event) -> Change:
    """Return how ``event`` changes ``run`` (and ``step``, for step and item events).

    ``run`` is None only for a run the store has not seen; a ``run_started`` event then
    creates it from its data (``workflow``, ``workflow_hash``, ``inputs``). ``step`` is
    None when the step has no row yet; the first event about it creates one. Unknown
    event types are kept in the log and change nothing, so older runners can read the
    logs of newer ones.
    """
    t = event.type
    if run is None:
        if t != ev.RUN_STARTED:
            raise StoreError(f"event {t} for run {event.run_id!r}, which was never created")
        run = RunRecord(
            run_id=event.run_id,
            workflow_name=str(event.data.get("workflow") or ""),
            workflow_hash=str(event.data.get("workflow_hash") or ""),
        )
    if t in _RUN_TYPES:
        return Change(run=_apply_run(run, event))
    if t not in _STEP_TYPES:
        return NO_CHANGE
    if event.step_id is None:
        raise StoreError(f"event {t} for run {event.run_id!r} has no step_id")
    if step is None:
        step = StepRecord(run_id=event.run_id, step_id=event.step_id)
    return _apply_step(step, event)


def _apply_run(run: RunRecord, e: Event) -> RunRecord:
    d = e.data
    if e.type == ev.RUN_STARTED:
        return replace(
            run,
            status="running",
            workflow_name=d.get("workflow") or run.workflow_name,
            workflow_hash=d.get("workflow_hash") or run.workflow_hash,
            inputs=d["inputs"] if "inputs" in d else run.inputs,
            started_at=run.started_at or e.ts,
            finished_at=None,
            outputs=None,
            error=None,
        )
    if e.type == ev.RUN_RESUMED:
        # A resume or retry reopens the run; `runner retry` says which attempt this is.
        return replace(
            run,
            status="running",
            finished_at=None,
            outputs=None,
            error=None,
            attempt=e.attempt if e.attempt is not None else run.attempt,
        )
    return replace(
        run,
        status=ev.RUN_TERMINAL[e.type],
        finished_at=e.ts,
        outputs=d["outputs"] if "outputs" in d else run.outputs,
        error=e.error,
    )


def _apply_step(s: StepRecord, e: Event) -> Change:
    t, d = e.type, e.data
    agent = e.agent_id or s.agent_id
    if t == ev.STEP_STARTED:
        # A fresh attempt: the previous attempt's outcome no longer describes the step.
        attempts = e.attempt if e.attempt is not None else s.attempts + 1
        return Change(
            step=replace(
                s,
                status="in_progress",
                attempts=attempts,
                agent_id=agent,
                result=None,
                text=None,
                error=None,
                started_at=e.ts,
                finished_at=None,
                duration_ms=None,
            )
        )
    if t == ev.STEP_RETRYING:
        return Change(step=replace(s, status="in_progress", agent_id=agent, error=e.error))
    if t in (ev.STEP_COMPLETED, ev.STEP_FAILED):
        return Change(
            step=replace(
                s,
                status="completed" if t == ev.STEP_COMPLETED else "failed",
                attempts=max(s.attempts, e.attempt or 0),
                agent_id=agent,
                result=d["result"] if "result" in d else s.result,
                text=d["text"] if "text" in d else s.text,
                error=e.error if t == ev.STEP_FAILED else None,
                finished_at=e.ts,
                duration_ms=d["duration_ms"] if "duration_ms" in d else s.duration_ms,
            )
        )
    if t in (ev.STEP_SKIPPED, ev.STEP_CANCELLED):
        status = "skipped" if t == ev.STEP_SKIPPED else "cancelled"
        return Change(step=replace(s, status=status, error=e.error, finished_at=e.ts))
    if t == ev.STEP_RESET:
        # `retry --from`: pending again; attempts are history and stay counted.
        return Change(
            step=replace(
                s,
                status="pending",
                result=None,
                text=None,
                error=None,
                started_at=None,
                finished_at=None,
                duration_ms=None,
            ),
            clear_items=True,
        )
    if t == ev.ITEM_STARTED:
        if s.status == "pending":
            return Change(step=replace(s, status="in_progress", started_at=s.started_at or e.ts))
        return NO_CHANGE if s.run_id and s.step_id and _is_stored(s) else Change(step=s)
    if t == ev.ITEM_COMPLETED:
        return Change(step=None if _is_stored(s) else s, item=(int(d["index"]), d.get("result")))
    # step_progress, item_failed: kept in the log only (a new step row is still created).
    return NO_CHANGE if _is_stored(s) else Change(step=s)


def _is_stored(s: StepRecord) -> bool:
    """A step record that came from the store (rather than being created just now)."""
    return s.status != "pending" or s.attempts > 0 or s.started_at is not None
