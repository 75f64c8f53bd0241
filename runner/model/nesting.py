"""Ids of the steps of nested runs (``uses:``): ``team/decompose``, ``teams[2]/decompose``.

A ``uses:`` step runs its callee as a nested run; the callee's steps are shown under the
caller's step everywhere (events, the store, ``runs show``, JUnit, the live view) with the
ids built here. ``/`` and ``[`` cannot occur in a step id a user writes
(``^[A-Za-z][A-Za-z0-9_-]*$``), so a nested id can always be taken apart again: the part
before the first ``/`` is the *call* (``team``, or ``teams[2]`` for item 2 of a
``for_each``), the rest the callee's own id, itself nested if the callee calls another.
Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.model.spec import StepSpec, Workflow

SEP = "/"


def call_id(step_id: str, index: int | None) -> str:
    """The id of one nested run of ``step_id``: the step's, or ``step[index]`` for a ``for_each`` item."""
    return step_id if index is None else f"{step_id}[{index}]"


def inner_id(call: str, step_id: str) -> str:
    """A callee's step id as the caller shows it: ``team`` + ``decompose`` → ``team/decompose``."""
    return f"{call}{SEP}{step_id}"


def nested_run_id(run_id: str, call: str, attempt: int) -> str:
    """The id of a nested run: unique per call, item and attempt, so its idempotency keys are too."""
    return f"{run_id}/{call}@{attempt}"


def split_call(call: str) -> tuple[str, int | None]:
    """``teams[2]`` → ``("teams", 2)``; ``team`` → ``("team", None)``."""
    if call.endswith("]") and "[" in call:
        sid, _, idx = call[:-1].partition("[")
        if idx.isdigit():
            return sid, int(idx)
    return call, None


def outer_call(step_id: str) -> str | None:
    """The call a nested step id belongs to (``teams[2]/a/b`` → ``teams[2]``); None for a top-level id."""
    call, sep, _ = step_id.partition(SEP)
    return call if sep else None


def outer_step(step_id: str) -> str:
    """The top-level step a (possibly nested) step id belongs to: ``teams[2]/a/b`` → ``teams``."""
    return split_call(step_id.partition(SEP)[0])[0]


def strip_call(step_id: str, call: str) -> str | None:
    """``step_id`` without the ``call/`` prefix, or None when it is not a step of that call."""
    head = call + SEP
    return step_id[len(head) :] if step_id.startswith(head) else None


def inner_spec(wf: Workflow, step_id: str) -> StepSpec | None:
    """The spec of a (possibly nested) step id, found through the callees; None if unknown."""
    return spec_finder(wf)(step_id)


def spec_finder(wf: Workflow) -> Callable[[str], StepSpec | None]:
    """``inner_spec`` for many ids: each workflow's steps are indexed once."""
    tables: dict[int, dict[str, StepSpec]] = {}

    def find(step_id: str) -> StepSpec | None:
        if SEP not in step_id:  # a step of ``wf`` itself: once a step of every run's result
            top = tables.get(id(wf))
            if top is None:
                top = tables[id(wf)] = {s.step_id: s for s in wf.all_steps}
            return top.get(step_id)
        w = wf
        *calls, last = step_id.split(SEP)
        for call in calls:
            child = w.children.get(split_call(call)[0])
            if child is None:
                return None
            w = child
        table = tables.get(id(w))
        if table is None:
            table = tables[id(w)] = {s.step_id: s for s in w.all_steps}
        return table.get(last)

    return find


def grouped(ids: Iterable[str]) -> list[str]:
    """Step ids with each nested run's steps right after the step that called it.

    Top-level ids keep their order; under each, its calls in item order (``teams[0]``
    before ``teams[10]``), each call's steps grouped the same way (callees that call
    others nest). The store keeps steps in the order they first appeared, which
    interleaves concurrent nested runs; this is the order a person reads them in.
    """
    ordered = list(ids)
    under: dict[str, dict[str, list[str]]] = {}  # step -> call -> the callee's ids
    for sid in ordered:
        call = outer_call(sid)
        if call is not None:
            under.setdefault(split_call(call)[0], {}).setdefault(call, []).append(sid[len(call) + 1 :])
    out: list[str] = []

    def calls_of(step: str) -> None:
        calls = under.pop(step, {})
        for call in sorted(calls, key=lambda c: _index(split_call(c)[1])):
            out.extend(inner_id(call, x) for x in grouped(calls[call]))

    for sid in ordered:
        if SEP not in sid:
            out.append(sid)
            calls_of(sid)
    for step in list(under):  # the steps of a call whose own row is missing: kept, last
        calls_of(step)
    return out


def _index(idx: int | None) -> int:
    return -1 if idx is None else idx
