"""A ``uses:`` step: the called workflow (resolved at load time) as a nested run.

The callee sees only its own ``inputs`` (the rendered ``with``) and its own steps, on the
caller's agents; its ``outputs`` are the step's result (in a ``for_each``, each item is
a nested run of its own and the step's result is the list of their outputs). Its step
events reach the caller's journal renamed ``<step>/<inner>`` (``<step>[<index>]/<inner>``
for an item, recursively for a callee that calls another), and its flushes are the
caller's, so the caller's store records every inner step before its call: that log is
what a resumed run continues a nested run from (``service.resume``).

The nested run's id names the call, the item and the attempt (``RUN/teams[2]@1``), so the
idempotency keys of its calls differ between items and change when the ``uses:`` step is
retried — and stay the same when an interrupted run is resumed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from runner.core.scheduler import Task
from runner.engine.finish import failed_steps
from runner.engine.steps.base import ChildRun, Produced, StepRun
from runner.errors import ToolFailure
from runner.model import RunStatus, StepSpec, StepStatus
from runner.model import events as ev
from runner.model.events import Event
from runner.model.nesting import call_id, inner_id, nested_run_id
from runner.model.outcomes import resolve_inputs


class UsesStep:
    """Runs the workflow a step ``uses`` on the same agents."""

    def __init__(self, run: StepRun) -> None:
        self.ctx = run

    async def run(self, task: Task, spec: StepSpec, arguments: Any) -> Produced:
        run = self.ctx
        sid = task.step_id
        child_wf = run.wf.children.get(sid)
        what = f"uses {spec.uses}" if spec.uses is not None else f"workflow {child_wf.name if child_wf else sid}"
        if child_wf is None:
            raise ToolFailure(f"{what}: the workflow was not loaded with its callee", retryable=False)
        call = call_id(sid, task.index)
        journal = run.journal
        if task.index is None:
            run.step_started(sid, task.attempt, None)
        else:
            view = run.outcomes[sid].view
            if task.attempt > view["attempts"]:
                view["attempts"] = task.attempt
            # Where this item's nested run begins in the log (a resume continues it from there).
            journal.emit(ev.ITEM_STARTED, sid, attempt=task.attempt, data={"index": task.index})
        journal.flush()
        run_id = nested_run_id(run.run_id, call, task.attempt)
        resume = run.nested_resume.pop(call, None)
        if resume is not None and resume.run_id != run_id:
            resume = None  # the state of another attempt's nested run: this one starts afresh
        if resume is not None:
            resume.inputs = resolve_inputs(child_wf, arguments if isinstance(arguments, dict) else {})

        def forward(e: Event) -> None:
            if e.step_id is None or e.type.startswith("run_"):
                return
            journal.forward(dataclasses.replace(e, run_id=run.run_id, step_id=inner_id(call, e.step_id)))

        base_dir = str(Path(child_wf.source).resolve().parent) if child_wf.source else None
        # The step's `timeout` bounds the nested run's steps as the callee's own `timeout`
        # would (calls in flight cancelled, its `finally` run), whichever is shorter.
        child = run.child(child_wf, sinks=[forward], base_dir=base_dir, timeout=spec.timeout)
        try:
            res = await _run_child(run, child, arguments, run_id, resume)
        finally:
            _collect(run, call, child)
        if res.status != RunStatus.COMPLETED:
            failed = [
                inner_id(call, s)
                for s, o in res.steps.items()
                if o.status == StepStatus.FAILED and s not in res.tolerated
            ]
            why = failed_steps(failed) if failed else (res.error or "failed")
            shorter = spec.timeout is not None and (child_wf.timeout is None or spec.timeout < child_wf.timeout)
            if res.status == RunStatus.TIMED_OUT and shorter:
                why = f"the step's timeout ({spec.timeout:g}s) expired"
            raise ToolFailure(f"{what}: {res.status}: {why}", retryable=True)
        return res.outputs, None, None


async def _run_child(run: StepRun, child: ChildRun, arguments: Any, run_id: str, resume: Any) -> Any:
    """The nested run's result. When the caller stops the step because the run was cancelled
    or timed out, the nested run is cancelled the same way — its calls in flight cancelled,
    its own ``finally`` steps run, every inner step ended — before the step ends cancelled.
    Only Ctrl-C or a lost lease cut it short (then nothing more may be written)."""
    task = asyncio.ensure_future(child.run(arguments, run_id=run_id, resume=resume))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if run.stopping_gracefully() and not task.done():
            child.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        raise


def _collect(run: StepRun, call: str, child: ChildRun) -> None:
    """The nested run's steps (and theirs), under the caller's ids, for the caller's result."""
    for s, o in child.outcomes.items():
        run.inner[inner_id(call, s)] = o
    for s, o in child.inner.items():
        run.inner[inner_id(call, s)] = o
