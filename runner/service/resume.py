"""What a session continues from: a run's ``ResumeState``, nested runs included.

The top level is read from the store's step rows. A ``uses:`` step that was in flight
when the last session ended is a nested run that was in flight: its steps' events are in
this run's log (``team/decompose``, ``teams[2]/decompose``), written before each inner
call like every event. They are folded into step rows with the store's own projection,
and the nested run's state is built from those rows by the same rules as the top level —
so a completed inner step is not run again, and an inner call that was in flight is sent
again with the same idempotency key (the nested run id is the same: same call, same
attempt). Recursively, for a callee that calls another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from runner.core.projection import apply_step_event, is_step_event
from runner.errors import NotFound
from runner.model import StepOutcome, StepStatus, Workflow
from runner.model import events as ev
from runner.model.clock import iso_to_epoch
from runner.model.events import Event
from runner.model.nesting import nested_run_id, outer_call, split_call, strip_call
from runner.model.outcomes import ResumeState
from runner.store.base import StepRecord, Store

EventsFn = Callable[[], Sequence[Event]]


def resume_state(
    store: Store, run_id: str, wf: Workflow, reset: Sequence[str] = (), new_attempt: bool = False
) -> ResumeState:
    """Read a run's progress back from the store.

    Steps in ``reset`` start again; every other completed step keeps its stored result and
    is not re-run. A step whose call was in flight when the last session ended (started,
    no outcome recorded) is marked ``in_flight``: it is sent again with the same key. A
    nested run in flight continues from its own state (``ResumeState.nested``).
    """
    run = store.get_run(run_id)
    if run is None:
        raise NotFound.run(run_id, store.url)
    state = ResumeState(run_id=run_id, inputs=dict(run.inputs), attempt=run.attempt, new_attempt=new_attempt)
    cache: list[Sequence[Event]] = []

    def events() -> Sequence[Event]:  # read once, and only if some step needs the log
        if not cache:
            cache.append(store.get_events(run_id))
        return cache[0]

    _fill(state, wf, store.get_steps(run_id), events, reset, new_attempt)
    return state


def kept_times(rec: StepRecord) -> tuple[float | None, float | None]:
    """A kept step's start and end as epoch seconds, so ``--output json`` shows the duration ``runs show`` does."""
    end = iso_to_epoch(rec.finished_at)
    if end is not None and rec.duration_ms is not None:
        return end - rec.duration_ms / 1000.0, end
    return iso_to_epoch(rec.started_at), end


def _kept(rec: StepRecord) -> StepOutcome:
    started, finished = kept_times(rec)
    return StepOutcome(
        status=StepStatus(rec.status),
        result=rec.result,
        text=rec.text,
        content=rec.content,
        error=rec.error,
        attempts=rec.attempts,
        agent_id=rec.agent_id,
        started_at=started,
        finished_at=finished,
    )


def _fill(
    state: ResumeState,
    wf: Workflow,
    records: Sequence[StepRecord],
    events: EventsFn,
    reset: Sequence[str],
    new_attempt: bool,
) -> None:
    known = {s.step_id: s for s in wf.all_steps}
    failed_items: set[str] = set()
    if any(
        r.status == StepStatus.IN_PROGRESS.value and known.get(r.step_id) and known[r.step_id].for_each for r in records
    ):
        # A fan-out's attempt number is shared by its items: it can be sent again as the
        # same attempt only if no item of it had a failure recorded (a retried item's
        # next attempt must keep its new key).
        failed_items = {e.step_id for e in events() if e.type == ev.ITEM_FAILED and e.step_id}
    for rec in records:
        if rec.step_id not in known:
            continue
        state.attempts[rec.step_id] = rec.attempts
        if rec.step_id in reset:
            continue
        spec = known[rec.step_id]
        if rec.status == StepStatus.COMPLETED.value and not spec.is_finally:
            state.completed[rec.step_id] = _kept(rec)
        elif rec.items:
            state.items[rec.step_id] = {int(k): v for k, v in rec.items.items()}
        if (
            rec.status == StepStatus.IN_PROGRESS.value
            and rec.error is None
            and rec.attempts > 0
            and rec.step_id not in failed_items
            and not new_attempt
        ):
            state.in_flight.add(rec.step_id)
    # Steps of nested runs whose call is kept (its step completed, or its item did) stay
    # as they were: the result shows them as the store does.
    for rec in records:
        call = outer_call(rec.step_id)
        if call is None:
            continue
        sid, idx = split_call(call)
        if sid in state.completed or (idx is not None and idx in state.items.get(sid, {})):
            state.inner[rec.step_id] = _kept(rec)
    for sid in sorted(state.in_flight):
        spec = known[sid]
        child = wf.children.get(sid) if spec.calls_workflow else None
        if child is None:
            continue
        done = state.items.get(sid, {})
        for call, mine in _calls(events(), sid, for_each=spec.for_each is not None).items():
            if split_call(call)[1] in done:
                continue
            nested = ResumeState(run_id=nested_run_id(state.run_id, call, state.attempts[sid]), inputs={})
            _fill(nested, child, _fold(mine), _given(mine), (), False)
            state.nested[call] = nested


def _given(events: Sequence[Event]) -> EventsFn:
    """A nested run's events, already read: its own nested runs are found in them."""
    return lambda: events


def _calls(events: Sequence[Event], sid: str, *, for_each: bool) -> dict[str, list[Event]]:
    """The events of each nested run of ``sid`` in its latest attempt, renamed into the callee.

    A nested run begins after its call's latest start (``step_started`` of the step, or
    ``item_started`` of the item): what came before belongs to an earlier attempt, whose
    nested run had another id and must not be continued.
    """
    out: dict[str, list[Event]] = {}
    for e in events:
        if e.step_id == sid:
            if not for_each and e.type == ev.STEP_STARTED:
                out[sid] = []
            elif for_each and e.type == ev.ITEM_STARTED and isinstance(e.data.get("index"), int):
                out[f"{sid}[{e.data['index']}]"] = []
            continue
        call = outer_call(e.step_id) if e.step_id else None
        if call is None or call not in out or split_call(call)[0] != sid:
            continue
        inner = strip_call(e.step_id or "", call)
        if inner is not None:
            out[call].append(dataclasses.replace(e, step_id=inner))
    return {call: evs for call, evs in out.items() if evs}


def _fold(events: Sequence[Event]) -> list[StepRecord]:
    """Step rows as the store would hold them for these events (the store's own projection)."""
    rows: dict[str, StepRecord] = {}
    for e in events:
        if not is_step_event(e.type) or e.step_id is None:
            continue
        change = apply_step_event(rows.get(e.step_id), e)
        step = change.step if change.step is not None else rows[e.step_id]
        if change.clear_items:
            step = dataclasses.replace(step, items={})
        if change.item is not None:
            step = dataclasses.replace(step, items={**step.items, change.item[0]: change.item[1]})
        rows[e.step_id] = step
    return list(rows.values())
