"""Fixing a workflow for one run: templated agent selection, agent launch settings, positions.

Patterns take their agents and roles as inputs (``assigned_agent_id: "{{ inputs.lead }}"``)
and agents take paths and tokens from inputs and secrets (``args: ["{{ inputs.repo }}"]``);
both are rendered once, before preflight, so every agent is still connected and checked up
front. The same holds for ``tool_to_call``, ``timeout``, ``retry.max_attempts`` and
``retry.delay``. Selection fields and ``tool_to_call`` whose templates read ``item``,
``index``, ``previous`` or ``steps`` cannot be known before the run: they stay templates
(listed in ``Workflow.per_task``) and the engine renders them per task, at dispatch, with
:func:`check_value` — the rules a literal value meets. Shared by the engine and
``validate --deep``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from runner.errors import Problem, RunnerError, WorkflowInvalid
from runner.model import AgentSpec, StepSpec, Workflow, parse_duration
from runner.template import TemplateError, compile_value, is_templated, referenced_roots

SELECTION = ("assigned_agent_id", "assigned_role", "required_capabilities", "fallback_agents", "tool_to_call")
PER_TASK_ROOTS = frozenset({"item", "index", "previous", "steps"})
"""Names a template may read only once a task is dispatched (the others are known up front)."""
_AGENT_FIELDS = ("args", "env", "headers", "url", "cwd", "command")
_LISTS = ("required_capabilities", "fallback_agents")


def agents_context(specs: Mapping[str, AgentSpec], declared: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The ``agents`` template variable: who the run can use, as the seed describes an agent.

    The workflow's own agents (``declared``) come first, then the ``--agents`` registry's,
    as documented: ``specs`` holds the registry first (so a declared agent overrides one of
    the same id), which is not the order a reader of the workflow expects.
    """
    first = [specs[i] for i in declared if i in specs]
    seen = set(declared)
    return [
        {
            "id": a.id,
            "name": a.name or a.id,
            "role": a.role,
            "capabilities": list(a.capabilities),
            "description": a.description,
        }
        for a in [*first, *(a for a in specs.values() if a.id not in seen)]
    ]


def _preview(value: Any) -> str:
    text = repr(value) if not isinstance(value, (list, tuple)) else repr(list(value))
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(name: str, value: Any) -> Any:
    """A rendered selection, ``tool_to_call``, ``timeout`` or ``retry`` value, held to the
    rules of a literal one (the step schema's); ValueError says what is wrong with it."""
    if name in _LISTS:
        if isinstance(value, str):
            value = (value,)  # one capability or agent id
        elif isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
            value = value[0]  # `required_capabilities: "{{ item.caps }}"` is held as a one-item tuple
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ValueError("must be a list of non-empty strings")
        if len(set(value)) != len(value):
            raise ValueError("has duplicate entries")
        return tuple(value)
    if name in ("timeout", "retry.delay"):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix(f"invalid duration {_preview(value)}: ")) from None
    if name == "retry.max_attempts":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("must be an integer of at least 1")
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def rendered(name: str, value: Any) -> str:
    """``assigned_agent_id rendered to 'nobody'``: what a template gave, for messages."""
    return f"{name} rendered to {_preview(value)}"


def rendered_problem(name: str, value: Any, reason: str) -> str:
    """``assigned_role rendered to 3: must be a non-empty string`` (the step goes in front)."""
    return f"{rendered(name, value)}: {reason}"


def _per_task(value: Any) -> bool:
    return not PER_TASK_ROOTS.isdisjoint(referenced_roots(value))


def instantiate(wf: Workflow, ctx: Mapping[str, Any]) -> Workflow:
    """``wf`` with templated selection, tool, timeout and retry rendered against ``ctx``
    (inputs, workflow, agents); templates that need a task are listed in ``per_task``."""
    file = wf.source or "<string>"

    def fail(s: StepSpec, name: str, message: str) -> WorkflowInvalid:
        problem = Problem(f"step '{s.step_id}': {message}", path=f"$.steps[{s.step_id}].{name}", file=file)
        return WorkflowInvalid(positioned(wf, [problem]))

    per_task_of: dict[str, tuple[str, ...]] = {}

    def render(s: StepSpec) -> StepSpec:
        fixed = wf.step_templates.get(s.step_id) if wf.step_templates else None
        if (
            not fixed
            and not s.required_capabilities
            and not s.fallback_agents
            and "{" not in (s.assigned_agent_id or "")
            and "{" not in (s.tool_to_call or "")
            and "{" not in (s.assigned_role or "")
        ):
            return s  # nothing templated: the common case, decided without the template machinery
        changes: dict[str, Any] = {}
        per_task: list[str] = []
        for name in SELECTION:
            val = getattr(s, name)
            if not val or (type(val) is str and "{" not in val):
                continue  # the common case, checked without the template machinery
            if is_templated(val):
                if not s.calls_workflow and _per_task(val):
                    per_task.append(name)
                    continue
                changes[name] = _render(s, name, val, ctx, fail)
        retry: dict[str, Any] = {}
        for name, text in fixed or ():
            out = _render(s, name, text, ctx, fail)
            if name == "timeout":
                changes[name] = out
            else:
                retry[name.removeprefix("retry.")] = out
        if retry:
            changes["retry"] = dataclasses.replace(s.retry, **retry)
        if per_task:
            per_task_of[s.step_id] = tuple(per_task)
        return dataclasses.replace(s, **changes) if changes else s

    steps = tuple(render(s) for s in wf.steps)
    fin = tuple(render(s) for s in wf.finally_steps)
    if steps == wf.steps and fin == wf.finally_steps and not per_task_of:
        return wf
    return dataclasses.replace(wf, steps=steps, finally_steps=fin, per_task=per_task_of)


def _render(s: StepSpec, name: str, val: Any, ctx: Mapping[str, Any], fail: Any) -> Any:
    try:
        out = compile_value(val).render(ctx)
    except TemplateError as exc:
        raise fail(s, name, f"{name}: {exc}") from None
    try:
        return check_value(name, out)
    except ValueError as exc:
        raise fail(s, name, rendered_problem(name, out, str(exc))) from None


def render_agent(a: AgentSpec, ctx: Mapping[str, Any]) -> AgentSpec:
    """``a`` with templated args/env/headers/url/cwd/command rendered (TemplateError if one fails)."""
    changes: dict[str, Any] = {}
    for name in _AGENT_FIELDS:
        val = getattr(a, name)
        if is_templated(val):
            out = compile_value(val).render(ctx)
            if name == "args":
                out = tuple(str(x) for x in out)
            elif name in ("env", "headers"):
                out = {k: str(v) for k, v in out.items()}
            changes[name] = out
    return dataclasses.replace(a, **changes) if changes else a


def positioned(wf: Workflow, problems: list[Problem]) -> list[Problem]:
    """Give run-time problems (``$.steps[<id>].field``) the file:line:col of the YAML node at fault."""
    if not wf.source_text:
        return problems
    from runner.load.yaml import load_yaml

    try:
        _data, smap = load_yaml(wf.source_text, wf.source or "<string>")
    except RunnerError:
        return problems
    index = {s.step_id: ("steps", i) for i, s in enumerate(wf.steps)}
    index.update({s.step_id: ("finally", i) for i, s in enumerate(wf.finally_steps)})
    out = []
    for p in problems:
        sid, _, rest = p.path.removeprefix("$.steps[").partition("]")
        if sid in index:
            path: list[str | int] = [*index[sid]]
            if rest.startswith("."):
                path += rest[1:].split(".")  # retry.max_attempts: two keys
            out.append(smap.problem(p.message, path))
        else:
            out.append(p)
    return out


def describe_need(s: StepSpec, dyn: tuple[str, ...] = ()) -> str:
    """What a step asks of its agent, for "no agent can run it" messages (``dyn``: its
    fields chosen per task, which ask nothing yet)."""
    parts = []
    if s.assigned_agent_id and "assigned_agent_id" not in dyn:
        parts.append(f"agent '{s.assigned_agent_id}'")
    if s.assigned_role and "assigned_role" not in dyn:
        parts.append(f"role '{s.assigned_role}'")
    if s.required_capabilities and "required_capabilities" not in dyn:
        parts.append(f"capabilities {list(s.required_capabilities)}")
    return ", ".join(parts) or "no agents declared"
