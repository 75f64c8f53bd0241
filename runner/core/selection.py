"""Agent selection: which agents may run a step, in which order (pure, no I/O).

SPEC §2: ``assigned_agent_id``, else every agent matching ``assigned_role`` and all
``required_capabilities``, least loaded first, skipping agents that are offline or whose
circuit is open; ``fallback_agents`` are tried when the chosen agent fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from runner.model import AgentSpec, StepSpec


def matches(agent: AgentSpec, step: StepSpec) -> bool:
    """Whether ``agent`` satisfies the step's role and capability requirements."""
    if step.assigned_role is not None and agent.role != step.assigned_role:
        return False
    if step.required_capabilities:
        caps = set(agent.capabilities)
        if not all(c in caps for c in step.required_capabilities):
            return False
    return True


def eligible(step: StepSpec, agents: Mapping[str, AgentSpec], per_task: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """Agent ids that may run ``step``: primary choices first, then fallbacks (deduplicated).

    Returns ``(ids, n_primary)``. A step whose selection is chosen per task
    (``per_task``: the fields rendered per task, ``Workflow.per_task``) may run on any agent its fixed fields allow: a templated agent id
    or fallback list could name any of them, a templated role or capability list does
    not narrow the choice until the task renders it.
    """
    if per_task:
        return _any_of(step, agents, per_task)
    if step.assigned_agent_id is not None:
        primary = [step.assigned_agent_id] if step.assigned_agent_id in agents else []
    elif step.assigned_role is None and not step.required_capabilities:
        primary = list(agents)  # any agent may run an unconstrained step
    else:
        primary = [a.id for a in agents.values() if matches(a, step)]
    out = list(primary)
    for fb in step.fallback_agents:
        if fb in agents and fb not in out:
            out.append(fb)
    return out, len(primary)


def _any_of(step: StepSpec, agents: Mapping[str, AgentSpec], dyn: tuple[str, ...]) -> tuple[list[str], int]:
    """Candidates of a step selected per task: every agent its fixed fields do not rule out."""
    if "assigned_agent_id" in dyn or "fallback_agents" in dyn:
        return list(agents), len(agents)
    fixed = StepSpec(
        step_id=step.step_id,
        assigned_role=None if "assigned_role" in dyn else step.assigned_role,
        required_capabilities=() if "required_capabilities" in dyn else step.required_capabilities,
        assigned_agent_id=step.assigned_agent_id,
        fallback_agents=step.fallback_agents,
    )
    return eligible(fixed, agents)


def order(
    candidates: Sequence[str],
    n_primary: int,
    load: Mapping[str, int],
    unavailable: Iterable[str] = (),
    open_circuits: Iterable[str] = (),
) -> list[str]:
    """Primary candidates least loaded first (stable), then fallbacks in declared order.

    Agents in ``unavailable`` (offline, or down for the run) and in ``open_circuits``
    (their circuit breaker is open: skipped until its cool-down ends) are left out.
    """
    down = set(unavailable)
    down.update(open_circuits)
    primary = [c for c in candidates[:n_primary] if c not in down]
    if len(primary) > 1:
        primary.sort(key=lambda a: load.get(a, 0))
    rest = [c for c in candidates[n_primary:] if c not in down]
    return primary + rest
