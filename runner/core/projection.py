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

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

from runner.errors import StoreError
from runner.model import events as ev
from runner.model.events import Event
from runner.model.records import RunRecord, StepRecord

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
_RUN_TYPES = frozenset({ev.RUN_QUEUED, ev.RUN_STARTED, ev.RUN_RESUMED, ev.RUN_INTERRUPTED, *ev.RUN_TERMINAL})
_CREATING = frozenset({ev.RUN_STARTED, ev.RUN_QUEUED})  # events that may create a run's row
STEP_TYPES = _STEP_TYPES
"""The event types that concern one step (see :func:`is_step_event`), for a store's hot loop."""
CREATING_TYPES = _CREATING
"""The event types that may come first in a run's log (see :func:`creates_run`)."""


class Change(NamedTuple):
    """What one event does to the rows: new records (None = untouched) and an item delta."""

    run: RunRecord | None = None
    step: StepRecord | None = None
    item: tuple[int, Any] | None = None  # (index, result) of a completed for_each item
    clear_items: bool = False  # the step was reset: forget its item results


NO_CHANGE = Change()
_new = tuple.__new__  # a Change built in C: namedtuple's own __new__ is a Python function

_R = TypeVar("_R", RunRecord, StepRecord)


def _evolve(record: _R, **changes: Any) -> _R:
    """``dataclasses.replace`` for the records, at a fifth of its cost (on the write path).

    A shallow copy, like ``replace``: the new step shares the old one's ``items`` dict.
    """
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__)
    new.__dict__.update(changes)
    return new


def is_step_event(event_type: str) -> bool:
    """True when the event concerns one step (and so must carry a ``step_id``)."""
    return event_type in _STEP_TYPES


def creates_run(event_type: str) -> bool:
    """True for the events that may come first in a run's log (``run_started``, ``run_queued``)."""
    return event_type in _CREATING


def is_run_event(event_type: str) -> bool:
    """True when the event changes the run row (start, resume, interruption, the four endings)."""
    return event_type in _RUN_TYPES


def unknown_run(event: Event) -> StoreError:
    """The error for an event about a run that was never created."""
    return StoreError(f"event {event.type} for run {event.run_id!r}, which was never created")


def apply_event(run: RunRecord | None, step: StepRecord | None, event: Event) -> Change:
    """Return how ``event`` changes ``run`` (and ``step``, for step and item events).

    ``run`` is None only for a run the store has not seen, which only ``run_started``
    may create. ``step`` is None when the step has no row yet. Unknown event types are
    kept in the log and change nothing, so older runners can read newer runners' logs.
    SQL backends call the two halves below directly, to avoid reading the run row for
    every step event; this function is their composition.
    """
    if run is None and event.type not in _CREATING:
        raise unknown_run(event)
    if event.type in _RUN_TYPES:
        return Change(run=apply_run_event(run, event))
    if event.type in _STEP_TYPES:
        return apply_step_event(step, event)
    return NO_CHANGE


def apply_run_event(run: RunRecord | None, event: Event) -> RunRecord:
    """The run row after a run event; ``run_started`` creates a run the store has not seen."""
    if run is None:
        if event.type not in _CREATING:
            raise unknown_run(event)
        run = RunRecord(
            run_id=event.run_id,
            workflow_name=str(event.data.get("workflow") or ""),
            workflow_hash=str(event.data.get("workflow_hash") or ""),
        )
    return _apply_run(run, event)


def apply_step_event(step: StepRecord | None, event: Event) -> Change:
    """How a step or item event changes its step (``step`` is None: no row yet)."""
    if event.step_id is None:
        raise StoreError(f"event {event.type} for run {event.run_id!r} has no step_id")
    if step is not None:
        return _apply_step(step, event)
    # The first event about a step creates its row, even one that changes nothing else.
    new = StepRecord(run_id=event.run_id, step_id=event.step_id)
    change = _apply_step(new, event)
    return change if change.step is not None else change._replace(step=new)


def _apply_run(run: RunRecord, e: Event) -> RunRecord:
    d = e.data
    if e.type == ev.RUN_QUEUED:
        return _evolve(
            run,
            status="queued",
            workflow_name=d.get("workflow") or run.workflow_name,
            workflow_hash=d.get("workflow_hash") or run.workflow_hash,
            inputs=d["inputs"] if "inputs" in d else run.inputs,
        )
    if e.type == ev.RUN_STARTED:
        return _evolve(
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
        return _evolve(
            run,
            status="running",
            finished_at=None,
            outputs=None,
            error=None,
            attempt=e.attempt if e.attempt is not None else run.attempt,
            workflow_hash=d.get("workflow_hash") or run.workflow_hash,
        )
    if e.type == ev.RUN_INTERRUPTED:
        # Ctrl-C ended this session; the run stays resumable and keeps what it had.
        return _evolve(run, status="interrupted", finished_at=e.ts, error=e.error)
    return _evolve(
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
        new = _evolve(
            s,
            status="in_progress",
            attempts=attempts,
            agent_id=agent,
            result=None,
            text=None,
            content=None,
            error=None,
            started_at=e.ts,
            finished_at=None,
            duration_ms=None,
        )
        return _new(Change, (None, new, None, False))  # Change(step=new), without a Python-level __new__
    if t == ev.STEP_RETRYING:
        return Change(step=_evolve(s, status="in_progress", agent_id=agent, error=e.error))
    if t in (ev.STEP_COMPLETED, ev.STEP_FAILED):
        new = _evolve(
            s,
            status="completed" if t == ev.STEP_COMPLETED else "failed",
            attempts=max(s.attempts, e.attempt or 0),
            agent_id=agent,
            result=d["result"] if "result" in d else s.result,
            text=d["text"] if "text" in d else s.text,
            content=d["content"] if "content" in d else s.content,
            error=e.error if t == ev.STEP_FAILED else None,
            finished_at=e.ts,
            duration_ms=d["duration_ms"] if "duration_ms" in d else s.duration_ms,
        )
        return _new(Change, (None, new, None, False))
    if t in (ev.STEP_SKIPPED, ev.STEP_CANCELLED):
        status = "skipped" if t == ev.STEP_SKIPPED else "cancelled"
        # A step cancelled while it ran carries its duration_ms, as a failed one does.
        ms = d["duration_ms"] if "duration_ms" in d else s.duration_ms
        return Change(step=_evolve(s, status=status, error=e.error, finished_at=e.ts, duration_ms=ms))
    if t == ev.STEP_RESET:
        # `retry --from`: pending again; attempts are history and stay counted.
        return Change(
            step=_evolve(
                s,
                status="pending",
                result=None,
                text=None,
                content=None,
                error=None,
                started_at=None,
                finished_at=None,
                duration_ms=None,
            ),
            clear_items=True,
        )
    if t == ev.ITEM_STARTED:
        # An item's retry is an attempt of its step: a resume must count on from it, or the
        # retried item would be sent its earlier idempotency key again.
        attempts = max(s.attempts, e.attempt or 0)
        if s.status == "pending":
            return Change(step=_evolve(s, status="in_progress", started_at=s.started_at or e.ts, attempts=attempts))
        if attempts != s.attempts:
            return Change(step=_evolve(s, attempts=attempts))
        return NO_CHANGE
    if t == ev.ITEM_COMPLETED:
        return Change(item=(int(d["index"]), d.get("result")))
    # step_progress, item_failed, item_started of a running step: kept in the log only.
    return NO_CHANGE


def replay(events: Iterable[Event]) -> tuple[dict[str, RunRecord], dict[tuple[str, str], StepRecord]]:
    """Fold an event log into run and step records, items included: what a store must hold.

    Tests compare every backend's rows with this; tools can rebuild rows from ``--events``.
    """
    runs: dict[str, RunRecord] = {}
    steps: dict[tuple[str, str], StepRecord] = {}
    for e in events:
        key = (e.run_id, e.step_id or "")
        change = apply_event(runs.get(e.run_id), steps.get(key), e)
        if change.run is not None:
            runs[e.run_id] = change.run
        if change.step is not None:
            steps[key] = change.step
        if change.clear_items or change.item is not None:
            step = steps[key]
            items = {} if change.clear_items else dict(step.items)
            if change.item is not None:
                items[change.item[0]] = change.item[1]
            steps[key] = replace(step, items=items)
    return runs, steps
