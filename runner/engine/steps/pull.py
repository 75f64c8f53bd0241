"""A pull step: an assignment in the store, completed by the agent's report from any process.

When the step becomes ready, its assignment (run, step, agent, attempt, deadline,
arguments) is written as a ``step_assigned`` event — the store keeps it as a row that
``runner steps list`` and ``list_assigned_steps`` show. The agent reports with ``runner
steps complete|fail`` or ``report_step_completion`` over MCP, in any process; the report
is a ``step_reported`` event in the run's log, which the run's signal poller reads. A
report made while no runner executed the run (it was interrupted) is found there too when
the resumed run reaches the step again at the same attempt.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runner.core.scheduler import Task
from runner.core.selection import order
from runner.engine.steps.base import Produced, StepRun
from runner.errors import ToolFailure
from runner.model import StepSpec
from runner.model import events as ev
from runner.model.clock import epoch_to_iso
from runner.model.data import NotData, as_data
from runner.model.events import Event

Key = tuple[str, int | None]  # (step_id, for_each index)


class PullStep:
    """Waits for reports on pull steps; the signal poller (or ``report``) delivers them."""

    def __init__(self, run: StepRun) -> None:
        self.ctx = run
        self.waiting: dict[Key, tuple[asyncio.Future[None], str | None, Any, int]] = {}
        self.reports: dict[Key, tuple[int, dict[str, Any], str | None]] = {}

    async def run(
        self, task: Task, spec: StepSpec, arguments: Any, chosen: tuple[list[str], int] | None = None
    ) -> Produced:
        run = self.ctx
        sid = task.step_id
        agents = run.agents
        ids, n_primary = agents.candidates.get(sid, ([], 0)) if chosen is None else chosen
        cands = order(ids, n_primary, agents.load, agents.unavailable)
        aid = cands[0] if cands else None
        if task.index is None:
            run.step_started(sid, task.attempt, aid)
        key = (sid, task.index)
        deadline = epoch_to_iso(time.time() + spec.timeout) if spec.timeout is not None else None
        run.journal.emit(
            ev.STEP_ASSIGNED,
            sid,
            attempt=task.attempt,
            agent_id=aid,
            data={"index": task.index, "deadline": deadline, "arguments": arguments},
        )
        run.journal.flush()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[key] = (fut, aid, arguments, task.attempt)
        known = self.reports.get(key)
        if known is not None and known[0] == task.attempt:
            fut.set_result(None)
        try:
            if spec.timeout is not None:
                await asyncio.wait_for(fut, spec.timeout)
            else:
                await fut
        except asyncio.TimeoutError:
            # The store accepts reports until the deadline, which has just passed: read the
            # log once more, so an accepted report and this timeout never both win.
            run.poll_signals()
            known = self.reports.get(key)
            if known is None or known[0] != task.attempt:
                raise ToolFailure(
                    f"pull step '{sid}' was not reported within {spec.timeout:g}s"
                    + (f" by agent '{aid}'" if aid else "")
                ) from None
        finally:
            self.waiting.pop(key, None)
        _attempt, body, error = self.reports.pop(key)
        if error is not None:
            raise ToolFailure(error, retryable=False, agent_id=aid)
        try:  # a report through the store was checked there; one made in-process (``report``) was not
            result = as_data(body.get("result"))
        except NotData as exc:
            raise ToolFailure(f"pull step '{sid}': the reported result is {exc}", retryable=False, agent_id=aid) from None
        text = result if isinstance(result, str) else None
        return (run.masker.mask(result) if run.secrets else result), text, None

    def on_report(self, e: Event) -> None:
        """A ``step_reported`` event read from the run's log (the store checked it)."""
        assert e.step_id is not None
        key = (e.step_id, e.data.get("index"))
        attempt = e.attempt or 1
        self.reports[key] = (attempt, dict(e.data), e.error)
        entry = self.waiting.get(key)
        if entry is not None and not entry[0].done() and entry[3] == attempt:
            entry[0].set_result(None)

    def assigned(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        """Pull steps waiting for a report in this process."""
        return [
            {"run_id": self.ctx.run_id, "step_id": sid, "index": idx, "agent_id": aid, "arguments": args}
            for (sid, idx), (_f, aid, args, _a) in self.waiting.items()
            if agent_id is None or aid == agent_id
        ]

    def report(
        self,
        step_id: str,
        *,
        result: Any = None,
        error: str | None = None,
        agent_id: str | None = None,
        index: int | None = None,
    ) -> None:
        """Complete (or fail) a waiting pull step of a run kept in no store; KeyError if none waits.

        With a store, reports go through it (``RunService.report``) so any process can make them.
        """
        entry = self.waiting.get((step_id, index))
        if entry is None:
            raise KeyError(f"step '{step_id}' of run {self.ctx.run_id} is not waiting for a report")
        fut, aid, _args, attempt = entry
        if agent_id is not None and aid is not None and agent_id != aid:
            raise PermissionError(f"step '{step_id}' is assigned to agent '{aid}', not '{agent_id}'")
        if not fut.done():
            self.reports[(step_id, index)] = (attempt, {"result": result}, error)
            fut.set_result(None)
