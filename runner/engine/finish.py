"""How a session ends: the run's verdict, its error line, its outputs and its result.

Pure functions of what the run loop collected (no I/O): the loop journals the terminal
event they choose and returns the ``RunResult`` they build.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from runner.engine.positions import output_error
from runner.model import RunStatus, StepOutcome, StepStatus, Workflow
from runner.model import events as ev
from runner.model.nesting import SEP, grouped, outer_step, spec_finder
from runner.model.outcomes import RunResult
from runner.template import Masker, TemplateError, compile_value

TERMINAL_EVENT = {
    RunStatus.COMPLETED: ev.RUN_COMPLETED,
    RunStatus.FAILED: ev.RUN_FAILED,
    RunStatus.TIMED_OUT: ev.RUN_TIMED_OUT,
    RunStatus.CANCELLED: ev.RUN_CANCELLED,
}


def main_status(*, timed_out: bool, aborted: str | None, cancelled: bool, failed: bool) -> RunStatus:
    """The run's status once its main DAG is over (``run.status`` as ``finally`` steps see it)."""
    if timed_out:
        return RunStatus.TIMED_OUT
    if aborted is not None or (failed and not cancelled):
        return RunStatus.FAILED
    return RunStatus.CANCELLED if cancelled else RunStatus.COMPLETED


def stop_reason(timed_out: bool, aborted: str | None) -> str:
    """Why the steps still pending are cancelled when a run stops early."""
    if timed_out:
        return "run timed out"
    return f"run failed: {aborted}" if aborted is not None else "run cancelled"


_FAILED_IDS = re.compile(r"step\(s\) failed: ([^\s,;]+(?:, [^\s,;]+)*)")


def failed_steps(ids: Iterable[str]) -> str:
    """``step(s) failed: …`` naming where: a call whose nested steps are listed too
    (``team`` with ``team/decompose``, ``teams`` with ``teams[2]/work``) is left out for them."""
    ids = list(ids)
    deepest = [x for x in ids if not any(y.startswith((x + SEP, x + "[")) for y in ids)]
    return f"step(s) failed: {', '.join(deepest)}"


def _nested_failures(step_id: str, error: str | None) -> list[str]:
    """The nested steps of ``step_id`` its error names as failed (a ``uses:``/``workflow:``
    step fails with ``…: step(s) failed: team/decompose``); [] for any other error."""
    found = [x for m in _FAILED_IDS.findall(error or "") for x in m.split(", ")]
    return [x for x in found if SEP in x and outer_step(x) == step_id]


def run_error(
    wf: Workflow, status: RunStatus, outcomes: Mapping[str, StepOutcome], timeout: float | None = None
) -> str | None:
    """The run's one-line error: which steps failed (not those that may) — for a call, the
    nested steps that failed in it (``team/decompose``) —, or the timeout."""
    if status == RunStatus.FAILED:
        tolerated = {s.step_id for s in wf.all_steps if s.continue_on_error}
        failed = [s for s, o in outcomes.items() if o.status == StepStatus.FAILED and s not in tolerated]
        named = [x for s in failed for x in (_nested_failures(s, outcomes[s].error) or [s])]
        return failed_steps(named) if named else "run failed"
    if status == RunStatus.TIMED_OUT:
        return f"run timed out after {timeout or wf.timeout or 0:g}s"
    return None


def render_outputs(
    wf: Workflow,
    context: Mapping[str, Any],
    status: RunStatus,
    masker: Masker | None,
    emit: Callable[..., None],
) -> tuple[dict[str, Any], str | None]:
    """The workflow's ``outputs``, and why the run must fail because of one, if it must.

    An output that cannot render is None, with an ``output_failed`` event when the run
    completed (one that refers to a step that was skipped, say). An output whose template
    yields a value that is not JSON data is a mistake in the workflow: the second value
    says so (``file:line:col: outputs.name: message``), and a run that completed fails.
    """
    out: dict[str, Any] = {}
    failure: str | None = None
    for name, tmpl in wf.outputs.items():
        try:
            out[name] = compile_value(tmpl).render(context)
        except TemplateError as exc:
            out[name] = None
            message = output_error(wf, name, exc)
            if exc.kind == "data" and failure is None:
                failure = message
            if status == RunStatus.COMPLETED or exc.kind == "data":
                emit("output_failed", error=message, data={"output": name})
    return (masker.mask(out) if masker is not None else out), failure


def conclude(
    wf: Workflow,
    context: Mapping[str, Any],
    status: RunStatus,
    outcomes: Mapping[str, StepOutcome],
    masker: Masker | None,
    emit: Callable[..., None],
    aborted: str | None,
    timeout: float | None = None,
) -> tuple[RunStatus, dict[str, Any], str | None]:
    """The run's verdict, outputs and error line; an output that is not data fails a completed run."""
    outputs, bad_output = render_outputs(wf, context, status, masker, emit)
    error = aborted or run_error(wf, status, outcomes, timeout)
    if bad_output is not None and status == RunStatus.COMPLETED:
        status, error = RunStatus.FAILED, bad_output
    return status, outputs, error


def skip_reasons(wf: Workflow, outcomes: Mapping[str, StepOutcome]) -> dict[str, str]:
    """Why each skipped step was skipped: the first dependency that did not complete, else its ``if``.

    ``outcomes`` may hold the steps of nested runs (``team/decompose``): their
    dependencies are their siblings in the same nested run.
    """
    out: dict[str, str] = {}
    find = spec_finder(wf)
    for sid, o in outcomes.items():
        if o.status != StepStatus.SKIPPED:
            continue
        spec = find(sid)
        if spec is None:
            continue
        call, sep, _ = sid.rpartition(SEP)
        deps = [call + sep + d for d in spec.depends_on]
        blocked = [d for d in deps if d in outcomes and outcomes[d].status != StepStatus.COMPLETED]
        if blocked:
            out[sid] = f"dependency {blocked[0]!r} {outcomes[blocked[0]].status}"
        elif spec.condition is not None:
            out[sid] = f"its if: was false ({spec.condition[:200]})"
        else:
            out[sid] = "the run ended before it could start"
    return out


def build_result(
    run_id: str,
    wf: Workflow,
    status: RunStatus,
    outcomes: Mapping[str, StepOutcome],
    *,
    started: float,
    preflight_ms: float,
    outputs: dict[str, Any] | None = None,
    error: str | None = None,
    inner: Mapping[str, StepOutcome] | None = None,
) -> RunResult:
    """The ``RunResult`` of a session (``--output json``), finished now.

    A step that failed before its call started (a template that could not render, an
    agent that was not there) has no start of its own: its duration is 0 ms, not missing,
    so every failed step has a ``duration_ms``. ``inner``: the steps of nested runs
    (``team/decompose``), shown after the step that called them.
    """
    steps = dict(outcomes)
    if inner:  # the steps of nested runs, each right after the step that called it
        both = {**outcomes, **inner}
        steps = {sid: both[sid] for sid in grouped(both)}
    for o in steps.values():
        if o.started_at is None and o.finished_at is not None and o.status == StepStatus.FAILED:
            o.started_at = o.finished_at
    find = spec_finder(wf)
    return RunResult(
        tolerated=frozenset(sid for sid in steps if (spec := find(sid)) is not None and spec.continue_on_error),
        skip_reasons=skip_reasons(wf, steps),
        run_id=run_id,
        workflow=wf.name,
        status=status,
        outputs=outputs if outputs is not None else {},
        steps=steps,
        started_at=started,
        finished_at=time.time(),
        preflight_ms=preflight_ms,
        error=error,
    )
