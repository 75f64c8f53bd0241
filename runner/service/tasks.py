"""The task tools: decompose a task, assign subtasks, merge their results.

``decompose_task`` asks, in this order, whoever can think about it best:
1. an agent of the operator's registry with the ``task_decomposition`` capability (an MCP
   server the runner can call: its ``decompose_task`` tool gets ``task`` and
   ``available_models``);
2. the calling client's own model, through MCP sampling, when the client offers it (the
   server face asks; this layer parses what came back);
3. the structure of the text itself (lists, numbered items, headings, sentences:
   :func:`runner.core.tasks.decompose_by_structure`).
It always says which one it used (``method``) and, when it fell back, why.

``assign_subtasks`` matches required capabilities and balances load over the registered
agents (status, circuit, pull steps in flight); ``merge_results`` is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from runner.agents import AgentPool
from runner.core.tasks import assign_subtasks, decompose_by_structure, merge_results
from runner.errors import BadArgument
from runner.model import AgentSpec
from runner.model.spec import TransportKind
from runner.service.registry import AgentDirectory, check_text
from runner.store.base import Store

CAPABILITY = "task_decomposition"
MAX_SUBTASKS = 50
SAMPLING_PROMPT = (
    "Break the following task into at most {n} concrete subtasks that different specialised agents could "
    "work on. Answer with JSON only: a list of objects with keys description (string), "
    "required_capabilities (list of strings), depends_on (list of earlier subtask numbers, 1-based) and "
    "priority (low|medium|high).\n\nTask:\n{task}"
)


def subtasks_from_answer(answer: Any, limit: int = MAX_SUBTASKS) -> list[dict[str, Any]] | None:
    """Subtasks out of an agent's or a model's answer (JSON list, ``{"subtasks": [...]}``,
    or text); None when nothing usable came back."""
    if isinstance(answer, str):
        text = answer.strip()
        start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
        if start >= 0:
            try:
                answer = json.loads(text[start : max(text.rfind("]"), text.rfind("}")) + 1])
            except ValueError:
                answer = text
    if isinstance(answer, dict):
        answer = answer.get("subtasks", answer.get("result"))
    if isinstance(answer, str):
        found = decompose_by_structure(answer, max_subtasks=limit) if answer.strip() else []
        return found or None
    if not isinstance(answer, list) or not answer:
        return None
    out: list[dict[str, Any]] = []
    for n, item in enumerate(answer[:limit], start=1):
        if isinstance(item, str):
            item = {"description": item}
        if not isinstance(item, dict) or not isinstance(item.get("description"), str) or not item["description"].strip():
            return None
        caps = item.get("required_capabilities") or []
        deps = item.get("depends_on") or []
        out.append(
            {
                "id": str(item.get("id") or f"subtask-{n}"),
                "description": item["description"].strip(),
                "required_capabilities": [str(c) for c in caps] if isinstance(caps, list) else [],
                # an id as given, or an earlier item's 1-based number
                "depends_on": [d if isinstance(d, str) else f"subtask-{d}" for d in deps if isinstance(d, str | int)]
                if isinstance(deps, list)
                else [],
                "priority": item.get("priority") if item.get("priority") in ("low", "medium", "high") else "medium",
            }
        )
    return out


class TaskTools:
    """Decomposition, assignment and merging over one store's agents."""

    def __init__(self, store: Store, agents: AgentDirectory, operator_agents: Callable[[], Sequence[AgentSpec]]) -> None:
        self.store = store
        self.agents = agents
        self.operator_agents = operator_agents

    def decomposer(self) -> AgentSpec | None:
        """An agent the runner can call that has the ``task_decomposition`` capability."""
        for spec in self.operator_agents():
            if CAPABILITY in spec.capabilities and TransportKind(spec.transport) is not TransportKind.PULL:
                return spec
        return None

    async def decompose(
        self, task: str, available_models: Any = None, sampled_text: str | None = None, sampling_note: str | None = None
    ) -> dict[str, Any]:
        check_text(task, "task", limit=1_000_000)
        if available_models is not None and not isinstance(available_models, list):
            raise BadArgument("available_models", "must be a list of agent descriptions")
        notes: list[str] = []
        spec = self.decomposer()
        if spec is not None:
            try:
                answer = await self._ask_agent(spec, task, available_models)
            except Exception as exc:  # noqa: BLE001 - a broken decomposer falls back, and says so
                notes.append(f"agent {spec.id} failed: {type(exc).__name__}: {str(exc)[:200]}")
            else:
                found = subtasks_from_answer(answer)
                if found:
                    return self._answer(task, found, f"agent:{spec.id}", notes)
                notes.append(f"agent {spec.id} returned no usable subtasks")
        else:
            notes.append(f"no callable agent has the {CAPABILITY} capability")
        if sampled_text is not None:
            found = subtasks_from_answer(sampled_text)
            if found:
                return self._answer(task, found, "sampling", notes)
            notes.append("the client's model returned no usable subtasks")
        elif sampling_note:
            notes.append(sampling_note)
        return self._answer(task, decompose_by_structure(task, max_subtasks=MAX_SUBTASKS), "structure", notes)

    @staticmethod
    def _answer(task: str, subtasks: list[dict[str, Any]], method: str, notes: list[str]) -> dict[str, Any]:
        return {"task": task[:500], "method": method, "subtasks": subtasks, "count": len(subtasks), "notes": notes}

    async def _ask_agent(self, spec: AgentSpec, task: str, available_models: Any) -> Any:
        async with AgentPool() as pool:
            errors = await pool.open([spec], connect_timeout=spec.timeout or 20.0)
            if errors.get(spec.id) is not None:
                raise errors[spec.id]  # type: ignore[misc]
            args: dict[str, Any] = {"task": task}
            if available_models is not None:
                args["available_models"] = available_models
            result = await pool.get(spec.id).call("decompose_task", args, timeout=120.0)
            if result.is_error:
                raise RuntimeError(result.text or "decompose_task reported an error")
            return result.result if result.result is not None else result.text

    def assign(self, subtasks: Any, available_models: Any = None) -> dict[str, Any]:
        """Match capabilities, balance load: over ``available_models`` if given, else the registry."""
        if available_models is not None:
            if not isinstance(available_models, list):
                raise BadArgument("available_models", "must be a list of agents (id, capabilities, status)")
            agents = available_models
        else:
            agents = [
                {k: a.get(k) for k in ("id", "role", "capabilities", "status", "circuit")} for a in self.agents.all()
            ]
        load: dict[str, int] = {}
        for asg in self.store.list_assignments():
            if asg.agent_id:
                load[asg.agent_id] = load.get(asg.agent_id, 0) + 1
        try:
            out = assign_subtasks(subtasks, agents, load)
        except BadArgument as exc:
            if exc.argument == "agents":
                raise BadArgument("available_models", exc.reason) from None
            raise
        out["load_before"] = load
        return out

    def merge(self, results: Any) -> dict[str, Any]:
        return merge_results(results)
