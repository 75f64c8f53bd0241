"""A ``uses:`` step: the called workflow (resolved at load time) as a nested run.

The callee sees only its own ``inputs`` (the rendered ``with``) and its own steps, on the
caller's agents; its step events reach the caller's journal as ``<step>.<inner step>``,
and its ``outputs`` are the step's result. The nested run's id carries the attempt, so
its steps' idempotency keys change when the ``uses:`` step is retried.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from runner.core.scheduler import Task
from runner.engine.steps.base import Produced, StepRun
from runner.errors import ToolFailure
from runner.model import RunStatus, StepSpec
from runner.model.events import Event


class UsesStep:
    """Runs the workflow a step ``uses`` on the same agents."""

    def __init__(self, run: StepRun) -> None:
        self.ctx = run

    async def run(self, task: Task, spec: StepSpec, arguments: Any) -> Produced:
        run = self.ctx
        sid = task.step_id
        child_wf = run.wf.children.get(sid)
        if child_wf is None:
            raise ToolFailure(f"uses {spec.uses}: the workflow was not loaded with its callee", retryable=False)
        if task.index is None:
            run.step_started(sid, task.attempt, None)
        journal = run.journal
        journal.flush()

        def forward(e: Event) -> None:
            if e.step_id is None or e.type.startswith("run_"):
                return
            journal.forward(dataclasses.replace(e, run_id=run.run_id, step_id=f"{sid}.{e.step_id}"))

        base_dir = str(Path(child_wf.source).resolve().parent) if child_wf.source else None
        child = run.child(child_wf, sinks=[forward], base_dir=base_dir)
        res = await child.run(arguments, run_id=f"{run.run_id}/{sid}@{task.attempt}")
        if res.status != RunStatus.COMPLETED:
            raise ToolFailure(f"uses {spec.uses}: {res.status}: {res.error or 'failed'}", retryable=True)
        return res.outputs, None, None
