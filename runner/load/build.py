"""Validated workflow and agent mappings → the frozen model (:mod:`runner.model`).

Everything here runs after validation, so it trusts the shapes the schemas guarantee and
only fills in defaults and converts units (durations, tuples, enums).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.model import AgentSpec, RetryPolicy, StepSpec, TransportKind, Workflow, parse_duration

__all__ = ["build_agent", "build_inline", "build_workflow", "condition_text"]


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _duration(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def build_agent(data: Mapping[str, Any], source: str | None = None) -> AgentSpec:
    """AgentSpec from one validated agent mapping."""
    return AgentSpec(
        id=data["id"],
        transport=TransportKind(data.get("transport", "stdio")),
        name=data.get("name"),
        role=data.get("role"),
        capabilities=_tuple(data.get("capabilities")),
        description=data.get("description"),
        command=data.get("command"),
        args=_tuple(data.get("args")),
        env=dict(data.get("env") or {}),
        cwd=data.get("cwd"),
        url=data.get("url"),
        headers=dict(data.get("headers") or {}),
        module=data.get("module"),
        max_concurrency=data.get("max_concurrency"),
        required=data.get("required"),
        timeout=_duration(data.get("timeout")),
        model_type=data.get("model_type"),
        model_version=data.get("model_version"),
        group=data.get("group"),
        source=source,
    )


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _build_step(data: Mapping[str, Any], is_finally: bool, fixed: dict[str, tuple[tuple[str, str], ...]]) -> StepSpec:
    """One step; a templated timeout/retry goes into ``fixed`` (``Workflow.step_templates``)."""
    retry = data.get("retry") or {}
    max_delay = retry.get("max_delay")
    # Templated `timeout` / `retry.max_attempts` / `retry.delay` keep their defaults here;
    # ``runner.load.instantiate`` renders them from the inputs before the run starts.
    raw = {
        "timeout": data.get("timeout"),
        "retry.max_attempts": retry.get("max_attempts"),
        "retry.delay": retry.get("delay"),
    }
    templates = tuple((k, str(v)) for k, v in raw.items() if _is_template(v))
    if templates:
        fixed[data["step_id"]] = templates
        names = {k for k, _ in templates}
        retry = {k: v for k, v in retry.items() if f"retry.{k}" not in names}
        data = {k: v for k, v in data.items() if k != "timeout" or "timeout" not in names}
    return StepSpec(
        step_id=data["step_id"],
        description=data.get("description"),
        assigned_role=data.get("assigned_role"),
        assigned_agent_id=data.get("assigned_agent_id"),
        required_capabilities=_tuple(data.get("required_capabilities")),
        depends_on=_tuple(data.get("depends_on")),
        tool_to_call=data.get("tool_to_call"),
        tool_arguments=data.get("tool_arguments"),
        condition=condition_text(data.get("if")),
        retry=RetryPolicy(
            max_attempts=retry.get("max_attempts", 1),
            delay=parse_duration(retry.get("delay", 0)),
            backoff=float(retry.get("backoff", 1.0)),
            max_delay=None if max_delay is None else parse_duration(max_delay),
            jitter=float(retry.get("jitter", 0.0)),
        ),
        timeout=_duration(data.get("timeout")),
        continue_on_error=data.get("continue_on_error", False),
        for_each=data.get("for_each"),
        max_parallel=data.get("max_parallel"),
        fallback_agents=_tuple(data.get("fallback_agents")),
        uses=data.get("uses"),
        with_=dict(data.get("with") or {}),
        is_finally=is_finally,
        inline=data.get("workflow"),
    )


def condition_text(value: Any) -> str | None:
    """``if:`` as the template text the engine evaluates; a YAML boolean becomes one."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "{{ true }}" if value else "{{ false }}"
    return str(value)


def build_workflow(data: Mapping[str, Any], *, source: str | None = None, text: str | None = None) -> Workflow:
    """The frozen Workflow from a mapping that passed validation."""
    fixed: dict[str, tuple[tuple[str, str], ...]] = {}  # templated timeout/retry, by step
    return Workflow(
        name=data["name"],
        description=data.get("description"),
        inputs=dict(data.get("inputs") or {}),
        agents=tuple(build_agent(a, source) for a in data.get("agents") or ()),
        concurrency=data.get("concurrency", 16),
        timeout=_duration(data.get("timeout")),
        runs_on=tuple(data.get("runs_on") or ()),
        steps=tuple(_build_step(s, False, fixed) for s in data["steps"]),
        finally_steps=tuple(_build_step(s, True, fixed) for s in data.get("finally") or ()),
        outputs=dict(data.get("outputs") or {}),
        agent_modifiable=data.get("agent_modifiable", False),
        source=source,
        source_text=text,
        step_templates=fixed,
    )


def build_inline(step: StepSpec, *, source: str | None = None) -> Workflow:
    """The callee a step's ``workflow:`` holds, as a Workflow (its name defaults to the step id).

    It is read from the calling file, so ``source`` is that file: an inline agent's
    relative ``cwd`` is relative to it, and so is a ``uses: ./path`` inside the body.
    """
    assert step.inline is not None
    return build_workflow({"name": step.step_id, **step.inline}, source=source)
