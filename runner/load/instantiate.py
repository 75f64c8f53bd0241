"""Fixing a workflow for one run: templated agent selection, agent launch settings, positions.

Patterns take their agents and roles as inputs (``assigned_agent_id: "{{ inputs.lead }}"``)
and agents take paths and tokens from inputs and secrets (``args: ["{{ inputs.repo }}"]``);
both are rendered once, before preflight, so every agent is still connected and checked up
front. Shared by the engine and ``validate --deep``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from runner.errors import Problem, RunnerError, WorkflowInvalid
from runner.model import AgentSpec, StepSpec, Workflow
from runner.template import TemplateError, compile_value, is_templated

_SELECTION = ("assigned_agent_id", "assigned_role", "required_capabilities", "fallback_agents")
_AGENT_FIELDS = ("args", "env", "headers", "url", "cwd", "command")


def instantiate(wf: Workflow, ctx: Mapping[str, Any]) -> Workflow:
    """``wf`` with templated agent selection rendered against ``ctx`` (inputs, workflow)."""

    def render(s: StepSpec) -> StepSpec:
        changes: dict[str, Any] = {}
        for name in _SELECTION:
            val = getattr(s, name)
            if not val or (type(val) is str and "{" not in val):
                continue  # the common case, checked without the template machinery
            if is_templated(val):
                try:
                    out = compile_value(val).render(ctx)
                except TemplateError as exc:
                    raise WorkflowInvalid(f"step '{s.step_id}': {name}: {exc}", file=wf.source or "<string>") from None
                if isinstance(out, list):
                    out = tuple(out)
                elif name in ("required_capabilities", "fallback_agents") and isinstance(out, str):
                    out = (out,)
                changes[name] = out
        return dataclasses.replace(s, **changes) if changes else s

    steps = tuple(render(s) for s in wf.steps)
    fin = tuple(render(s) for s in wf.finally_steps)
    if steps == wf.steps and fin == wf.finally_steps:
        return wf
    return dataclasses.replace(wf, steps=steps, finally_steps=fin)


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
                path.append(rest[1:])
            out.append(smap.problem(p.message, path))
        else:
            out.append(p)
    return out


def describe_need(s: StepSpec) -> str:
    """What a step asks of its agent, for "no agent can run it" messages."""
    parts = []
    if s.assigned_agent_id:
        parts.append(f"agent '{s.assigned_agent_id}'")
    if s.assigned_role:
        parts.append(f"role '{s.assigned_role}'")
    if s.required_capabilities:
        parts.append(f"capabilities {list(s.required_capabilities)}")
    return ", ".join(parts) or "no agents declared"
