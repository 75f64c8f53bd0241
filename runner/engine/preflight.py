"""Before the first step: render agent settings, pick each step's candidates, connect agents.

Every agent a step can use is connected in parallel; every ``tool_to_call`` is checked
against the tools of the agents that may run it. An agent that cannot be reached fails
the run only when the run cannot succeed without it (SPEC §8): marked ``required: true``,
or some step would have no reachable agent left. Otherwise it is left out, with an
``agent_unavailable`` event, and its steps go to the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.core.selection import eligible
from runner.errors import AgentError, InputInvalid, Problem, WorkflowInvalid
from runner.load.instantiate import describe_need, positioned, render_agent
from runner.model import AgentSpec, StepSpec, TransportKind, Workflow
from runner.template import Masker, TemplateError

if TYPE_CHECKING:
    from runner.agents.pool import AgentPool

CONNECT_TIMEOUT_S = 30.0


@dataclass
class Agents:
    """What the steps of a run dispatch to: candidates, live connections, load and limits."""

    specs: dict[str, AgentSpec]
    pool: AgentPool | None = None
    candidates: dict[str, tuple[list[str], int]] = field(default_factory=dict)  # step -> (ids, n_primary)
    conns: dict[str, Any] = field(default_factory=dict)
    sems: dict[str, AbstractAsyncContextManager[Any]] = field(default_factory=dict)  # max_concurrency limits
    # How a ``max_concurrency`` is held: in this engine (default), or across the processes
    # of the store (``AgentSlots``, set by the engine when its run is stored).
    limit: Callable[[str, int], AbstractAsyncContextManager[Any]] = field(default=lambda _aid, n: asyncio.Semaphore(n))
    unavailable: set[str] = field(default_factory=set)
    load: dict[str, int] = field(default_factory=dict)


PULL_KINDS = frozenset({"pull", "pull_per_task"})
"""Kinds of steps that wait for an agent's report (the run then watches its signals)."""


def step_kind(spec: StepSpec, per_task: bool = False) -> str:
    """``uses`` (a nested workflow), ``pull`` (waits for a report) or ``tool`` (an MCP call);
    ``pull_per_task`` / ``tool_per_task`` when its agent or tool is chosen per task."""
    if spec.calls_workflow:
        return "uses"
    kind = "pull" if spec.tool_to_call is None else "tool"
    return kind + "_per_task" if per_task else kind


_SECRET_REF = re.compile(r"\bsecrets\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")


def _strings(value: Any, out: list[str]) -> None:
    """Add to ``out`` the strings in ``value`` (nested) that mention ``secrets``.

    Once per templated field of every step: exact types first (``isinstance(x, Mapping)``
    is a Python-level ABC check), no generators.
    """
    if isinstance(value, str):
        if "secrets" in value:
            out.append(value)
        return
    if type(value) is dict or isinstance(value, Mapping):
        values: Iterable[Any] = value.values()
    elif isinstance(value, (list, tuple)):
        values = value
    else:
        return
    for v in values:
        if type(v) is str:
            if "secrets" in v:
                out.append(v)
        elif v:
            _strings(v, out)


def _check_secrets(wf: Workflow, specs: Iterable[AgentSpec], context: Mapping[str, Any]) -> None:
    """A secret the workflow reads that nobody gave is the user's input missing (exit 2),
    found before any agent starts, not an unreachable agent or a failed step."""
    given = context.get("secrets") or {}
    texts: list[str] = []
    _strings(wf.outputs, texts)
    for s in wf.all_steps:
        for place in (s.tool_arguments, s.condition, s.for_each, s.with_):
            if place:  # None, {} and "" mention nothing
                _strings(place, texts)
    for a in specs:
        for place in (a.command, a.args, a.env, a.cwd, a.url, a.headers):
            if place:
                _strings(place, texts)
    missing: dict[str, None] = {}
    for text in texts:
        for m in _SECRET_REF.finditer(text):
            name = m.group(1) or m.group(2)
            if name not in given:
                missing[name] = None
    if missing:
        names = ", ".join(missing)
        first = next(iter(missing))
        raise InputInvalid(
            f"missing secret(s): {names}; set RUNNER_SECRET_{first}=... in the environment "
            f"or pass --secrets FILE (a YAML mapping with {first}: ...)"
        )


async def preflight(
    wf: Workflow,
    agents: Agents,
    *,
    context: Mapping[str, Any],
    masker: Masker,
    base_dir: str | None,
    emit: Callable[..., None],
) -> None:
    """Fill ``agents`` for ``wf``: rendered specs, candidates, connections; raise if the run cannot start."""
    specs = agents.specs
    _check_secrets(wf, specs.values(), context)
    for aid, a in list(specs.items()):
        try:
            specs[aid] = render_agent(a, context)
        except TemplateError as exc:
            raise AgentError(masker.mask_text(f"agent '{aid}': {exc}"), agent_id=aid) from None
    needed: dict[str, AgentSpec] = {}
    problems: list[Problem] = []
    # Steps with the same selection fields have the same candidates: computed once, shared
    # (read only). A chain of 1,000 steps on one agent asks ``eligible`` once.
    chosen: dict[tuple[Any, ...], tuple[list[str], int]] = {}
    for s in wf.all_steps:
        if s.calls_workflow:
            continue
        dyn = wf.per_task.get(s.step_id, ()) if wf.per_task else ()
        key = (s.assigned_agent_id, s.assigned_role, s.required_capabilities, s.fallback_agents, dyn)
        cands = chosen.get(key)
        if cands is None:
            cands = chosen[key] = eligible(s, specs, dyn)
        agents.candidates[s.step_id] = cands
        if not cands[0]:
            problems.append(
                Problem(
                    f"step '{s.step_id}': no agent can run it ({describe_need(s, dyn)})",
                    path=f"$.steps[{s.step_id}]",
                    file=wf.source or "<string>",
                )
            )
        for aid in cands[0]:
            needed[aid] = specs[aid]
    if problems:
        raise WorkflowInvalid(positioned(wf, problems))
    if wf.children:
        # Nested runs use this workflow's agents: start them now, in parallel, rather than
        # one nested preflight after another (SPEC §2: every agent the workflow can use).
        for a in wf.agents:
            needed.setdefault(a.id, specs[a.id])
    remote = [a for a in needed.values() if a.transport != TransportKind.PULL]
    if remote:
        if agents.pool is None:
            from runner.agents.pool import AgentPool

            agents.pool = AgentPool()
        connect_timeout = CONNECT_TIMEOUT_S
        if wf.timeout:
            # The steps get the whole `timeout` (their clock starts after preflight), but
            # no agent may take longer than that to start: a dead URL must not hold a
            # `timeout: 3s` run for the 30 s default connect timeout.
            connect_timeout = min(connect_timeout, wf.timeout)
            remote = [
                dataclasses.replace(a, timeout=wf.timeout) if a.timeout and a.timeout > wf.timeout else a
                for a in remote
            ]
        errors = await agents.pool.open(remote, base_dir=base_dir, connect_timeout=connect_timeout)
        _fail_closed(wf, agents, errors, masker, emit)
    connected = agents.conns = agents.pool.connected() if agents.pool is not None else {}
    for aid, a in needed.items():
        if a.max_concurrency:
            agents.sems[aid] = agents.limit(aid, a.max_concurrency)
    per_task = wf.per_task
    for s in wf.all_steps:
        tool = s.tool_to_call
        if not tool or (per_task and "tool_to_call" in per_task.get(s.step_id, ())):
            continue  # a tool named per task is checked when the task is dispatched
        reachable = False  # some candidate is connected; then one of them must offer the tool
        for c in agents.candidates[s.step_id][0]:
            conn = connected.get(c)
            if conn is not None:
                reachable = True
                if tool in conn.tools:
                    break
        else:
            if reachable:
                ids = [c for c in agents.candidates[s.step_id][0] if c in connected]
                problems.append(_missing_tool(wf, s, ids, connected))
    if problems:
        raise WorkflowInvalid(positioned(wf, problems))


def _missing_tool(wf: Workflow, s: StepSpec, ids: list[str], connected: Mapping[str, Any]) -> Problem:
    def tools(c: str) -> str:
        return ", ".join(sorted(connected[c].tools)) or "(no tools)"

    # A tool named by an input may be any size: the message shows its start.
    tool = s.tool_to_call or ""
    name = repr(tool) if len(tool) <= 80 else repr(tool[:77] + "...")

    if len(ids) == 1:
        detail = f"agent '{ids[0]}' has no tool {name}; it offers: {tools(ids[0])}"
    else:
        detail = f"none of the agents {', '.join(ids)} has a tool {name}; " + "; ".join(
            f"'{c}' offers: {tools(c)}" for c in ids
        )
    return Problem(
        f"step '{s.step_id}': {detail}", path=f"$.steps[{s.step_id}].tool_to_call", file=wf.source or "<string>"
    )


def _fail_closed(
    wf: Workflow,
    agents: Agents,
    errors: Mapping[str, BaseException | None],
    masker: Masker,
    emit: Callable[..., None],
) -> None:
    """Fail the run (exit 3) only when it cannot succeed (SPEC §8); else warn and go on.

    An agent that could not be started is fatal when it is marked ``required: true``, or
    when some step would have no reachable agent left (its assigned agent, its role and
    capability matches and its ``fallback_agents`` all down). Otherwise its steps go to
    the reachable candidates and an ``agent_unavailable`` event says why.
    """

    def message(aid: str) -> str:
        msg = str(errors[aid])
        if aid not in msg:
            msg = f"agent '{aid}' could not be reached: {msg}"
        return masker.mask_text(msg)

    down = [aid for aid, err in errors.items() if err is not None]
    if not down:
        return
    for aid in down:
        if agents.specs[aid].required:
            raise AgentError(message(aid), agent_id=aid)
    agents.unavailable.update(down)
    for s in wf.all_steps:
        if s.tool_to_call is None or s.step_id not in agents.candidates:
            continue
        ids = agents.candidates[s.step_id][0]
        if ids and all(c in agents.unavailable for c in ids):
            first = ids[0]
            more = f" (and its fallbacks {', '.join(ids[1:])} are down too)" if len(ids) > 1 else ""
            raise AgentError(f"step '{s.step_id}' has no reachable agent: {message(first)}{more}", agent_id=first)
    for aid in down:
        emit("agent_unavailable", agent_id=aid, error=message(aid))
