"""Steps whose agent or tool is chosen per task: render the choice, check it, hand it on.

A step whose ``assigned_agent_id``, ``assigned_role``, ``required_capabilities``,
``fallback_agents`` or ``tool_to_call`` reads ``item``, ``index``, ``previous`` or
``steps`` (``Workflow.per_task``) cannot be fixed before the run: preflight connects every
agent that could be chosen, and this handler renders the fields for each task, holds the
values to the rules of a literal one, picks the candidates and passes the task to the
tool or pull handler. A value that names no agent of the run, a need nobody meets, or a
tool the chosen agent lacks fails that task (that item) with the step, item and value.

Only such steps come here (the engine gives them this kind): every other step keeps its
preflight candidates and pays nothing for this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from runner.core.scheduler import Task
from runner.core.selection import eligible
from runner.engine.positions import step_error
from runner.engine.steps.base import Produced, StepRun
from runner.engine.steps.pull import PullStep
from runner.engine.steps.tool import ToolStep
from runner.errors import ToolFailure
from runner.load.instantiate import check_value, rendered, rendered_problem
from runner.model import AgentSpec, StepSpec
from runner.template import Compiled, TemplateError, compile_value

SELECTION_FAILED = "selection"
"""``ToolFailure.extra["kind"]`` of a task whose rendered choice is wrong (its message names the item)."""


def _fail(message: str) -> ToolFailure:
    return ToolFailure(message, retryable=False, extra={"kind": SELECTION_FAILED})


class PerTaskStep:
    """Dispatches the tasks of steps selected per task (built after preflight)."""

    def __init__(self, run: StepRun, tool: ToolStep, pull: PullStep) -> None:
        self.ctx = run
        self._tool = tool
        self._pull = pull
        self._compiled: dict[str, dict[str, Compiled]] = {}

    def _templates(self, spec: StepSpec) -> dict[str, Compiled]:
        c = self._compiled.get(spec.step_id)
        if c is None:
            names = self.ctx.wf.per_task[spec.step_id]
            c = self._compiled[spec.step_id] = {n: compile_value(getattr(spec, n)) for n in names}
        return c

    def choose(self, task: Task, spec: StepSpec) -> tuple[StepSpec, tuple[list[str], int]]:
        """``spec`` with this task's selection and tool, and its candidates; ToolFailure if wrong."""
        run = self.ctx
        label = f"step '{spec.step_id}'" + (f" item {task.index}" if task.index is not None else "")
        ctx = run.task_context(task)
        changes: dict[str, Any] = {}
        shown: dict[str, Any] = {}  # field -> the rendered value, for messages
        for name, compiled in self._templates(spec).items():
            try:
                out = compiled.render(ctx)
            except TemplateError as exc:
                raise ToolFailure(step_error(run.wf, spec, name, exc), retryable=False) from None
            try:
                changes[name] = check_value(name, out)
            except ValueError as exc:
                raise _fail(f"{label}: {rendered_problem(name, out, str(exc))}") from None
            shown[name] = changes[name]
        s = dataclasses.replace(spec, **changes)
        specs = run.agents.specs
        known = f"(agents: {', '.join(specs) or 'none'})"
        if "assigned_agent_id" in shown and s.assigned_agent_id not in specs:
            raise _fail(
                f"{label}: {rendered('assigned_agent_id', shown['assigned_agent_id'])}, "
                f"which is not an agent of this run {known}"
            )
        if "fallback_agents" in shown:
            unknown = [a for a in s.fallback_agents if a not in specs]
            if unknown:
                raise _fail(
                    f"{label}: {rendered('fallback_agents', shown['fallback_agents'])}; "
                    f"'{unknown[0]}' is not an agent of this run {known}"
                )
        ids, n_primary = eligible(s, specs)
        if not n_primary:
            raise _fail(f"{label}: {_unmatched(s, shown, specs)}")
        if s.tool_to_call is not None:
            self._check_tool(label, s, shown, ids)
        return s, (ids, n_primary)

    def _check_tool(self, label: str, s: StepSpec, shown: Mapping[str, Any], ids: list[str]) -> None:
        """The tool must be offered by a connected candidate (one that is down is the tool
        handler's to report: the call may go to a fallback)."""
        conns = self.ctx.agents.conns
        up = [c for c in ids if c in conns]
        tool = s.tool_to_call
        if not up or any(tool in conns[c].tools for c in up):
            return
        if "tool_to_call" in shown:
            what = f"{rendered('tool_to_call', tool)}, which "  # shortened: an item may be megabytes
            what += f"agent '{up[0]}' does not offer" if len(up) == 1 else f"none of the agents {', '.join(up)} offers"
        else:
            chosen = "" if "assigned_agent_id" not in shown else f" (assigned_agent_id rendered to '{up[0]}')"
            what = (
                f"agent '{up[0]}'{chosen} has no tool '{tool}'"
                if len(up) == 1
                else (f"none of the agents {', '.join(up)} has a tool '{tool}'")
            )
        offers = "; ".join(f"'{c}' offers: {', '.join(sorted(conns[c].tools)) or '(no tools)'}" for c in up)
        raise _fail(f"{label}: {what} ({offers})")

    async def run(self, task: Task, spec: StepSpec, arguments: Any) -> Produced:
        s, cands = self.choose(task, spec)
        if s.tool_to_call is None:
            return await self._pull.run(task, s, arguments, cands)
        return await self._tool.run(task, s, arguments, cands)


def _unmatched(s: StepSpec, shown: Mapping[str, Any], specs: Mapping[str, AgentSpec]) -> str:
    """Why no agent matches a rendered role / capability list, with what the agents have."""
    need = []
    if s.assigned_role is not None:
        need.append(f"role '{s.assigned_role}'")
    if s.required_capabilities:
        need.append(f"capabilities {list(s.required_capabilities)}")
    what = " and ".join(rendered(n, shown[n]) for n in ("assigned_role", "required_capabilities") if n in shown)

    def has(a: AgentSpec) -> str:
        parts = [f"role {a.role}"] if a.role else []
        parts.append(f"capabilities {', '.join(a.capabilities)}" if a.capabilities else "no capabilities")
        return f"{a.id} ({'; '.join(parts)})"

    agents = ", ".join(has(a) for a in specs.values()) or "none"
    return f"{what + ': ' if what else ''}no agent of this run has {' and '.join(need) or 'it'} (agents: {agents})"
