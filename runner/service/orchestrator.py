"""The orchestration service behind ``runner serve``: one object, every tool's logic.

The MCP server is a thin face over this: it resolves who is calling, checks the policy,
and calls one method here. Everything lives in the store the CLI uses, so a run started
here shows in ``runner runs list`` and ``runner steps complete`` reports on it, and a run
queued by ``runner run --detach`` is executed here.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from runner.errors import BadArgument, NotFound
from runner.model import AgentSpec
from runner.model import events as ev
from runner.model.events import Event
from runner.service.coordination import Coordination, check_seconds
from runner.service.executor import RunExecutor
from runner.service.locks import FileLocks
from runner.service.registry import AgentDirectory, check_id, check_text
from runner.service.runs import RunService
from runner.service.tasks import TaskTools
from runner.service.workflows import Workflows, first_ready
from runner.store.base import Store

_STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")  # a step id (schemas/step.schema.json)


class Orchestrator:
    """Agents, workflows and runs, coordination, anti-jam, locks and tasks over one store.

    ``operator_agents``: the operator's ``--agents`` registry (any transport); registered
    agents join it as pull agents. ``local_pull``: pull steps on a store only this process
    reaches (``memory://``, tests) are allowed, since reports come through this object.
    """

    def __init__(
        self,
        store: Store,
        *,
        operator_agents: Sequence[AgentSpec] = (),
        secrets: Mapping[str, str] | None = None,
        pool: Any = None,
        base_dir: str | None = None,
        claim_queued: bool = True,
        poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self.operator_agents = list(operator_agents)
        self.secrets = dict(secrets or {})
        self.pool = pool
        self.base_dir = base_dir
        self.agents = AgentDirectory(store, circuit=self.circuit_of)
        self.coordination = Coordination(store, self.agents)
        self.workflows = Workflows(store, self.run_service, self.registry)
        self.tasks = TaskTools(store, self.agents, lambda: self.operator_agents)
        self.locks = FileLocks(store)
        # Each run gets its own agent sessions (an agent's command or env may be templated
        # from the run's inputs), so the engine's circuit breakers live per run; the server
        # learns of an opening from the run's events and shows it in find_agents.
        self._opened: dict[str, tuple[float, float]] = {}  # agent -> (monotonic opening, cool-down)
        self.executor = RunExecutor(
            store, self.run_service, poll_s=poll_s, claim_queued=claim_queued, sinks=[self._watch]
        )

    # -- wiring -------------------------------------------------------------------------------
    def registry(self) -> list[AgentSpec]:
        """The agents workflows may name now: the operator's, then registered (pull) agents."""
        ids = {a.id for a in self.operator_agents}
        return [*self.operator_agents, *(a for a in self.agents.specs() if a.id not in ids)]

    def run_service(self) -> RunService:
        return RunService(
            self.store,
            registry=self.registry(),
            secrets=self.secrets,
            local_pull=not self.store.shared,
            pool=self.pool,
            base_dir=self.base_dir,
        )

    def _watch(self, event: Event) -> None:
        if event.type == ev.AGENT_CIRCUIT_OPENED and event.agent_id:
            self._opened[event.agent_id] = (time.monotonic(), float((event.data or {}).get("cooldown_s", 30.0)))

    def circuit_of(self, agent_id: str) -> str:
        """``open`` while a run executed here has the agent's circuit open (its cool-down),
        else ``closed``; a pool shared by this process's runs (tests) is asked directly."""
        if self.pool is not None and hasattr(self.pool, "circuits"):
            return str(self.pool.circuits().get(agent_id, "closed"))
        opened = self._opened.get(agent_id)
        if opened is not None and time.monotonic() - opened[0] < opened[1]:
            return "open"
        return "closed"

    # -- workflow execution ----------------------------------------------------------------------
    def execute_workflow(
        self, workflow_id: str, triggering_agent_id: str | None = None, inputs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Start a run, execute it in the background, return at once with what starts first."""
        service, wf, run_id, lease = self.workflows.start(workflow_id, inputs)
        self.executor.launch(service, run_id, lease, wf)
        agents = {a.id: a for a in [*wf.agents, *self.registry()]}
        return {
            "run_id": run_id,
            "workflow_id": wf.name,
            "status": "running",
            "triggering_agent_id": triggering_agent_id,
            "first_steps": first_ready(wf, agents),
            "hint": "get_run(run_id, wait_seconds=…) waits for the next status change; "
            "pull agents find their steps with list_assigned_steps",
        }

    def delegate_subtask(
        self,
        coordinator_agent_id: str,
        assigned_agent_id: str,
        subtask_id: str,
        subtask_description: str,
        contextual_data: Any = None,
        parent_task_id: str | None = None,
        deadline: str | None = None,
    ) -> dict[str, Any]:
        """A real task: a one-step run whose pull step waits for ``assigned_agent_id``'s report."""
        check_id(coordinator_agent_id, "coordinator_agent_id")
        agent = self.agents.get(assigned_agent_id, "assigned_agent_id")
        if not isinstance(subtask_id, str) or not _STEP_ID.match(subtask_id):
            raise BadArgument("subtask_id", f"{subtask_id!r} is not an id (a letter, then letters, digits, '_' or '-')")
        check_text(subtask_description, "subtask_description", limit=100_000)
        if parent_task_id is not None:
            check_text(parent_task_id, "parent_task_id", limit=200)
        timeout_s: float | None = None
        if deadline is not None:
            try:
                when = _dt.datetime.fromisoformat(str(deadline).replace("Z", "+00:00"))
            except ValueError:
                raise BadArgument("deadline", f"{deadline!r} is not an ISO 8601 timestamp") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
            timeout_s = (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
            check_seconds(timeout_s, "deadline", minimum=1.0, maximum=365 * 86400)
        step: dict[str, Any] = {
            "step_id": subtask_id,
            "description": subtask_description,
            "assigned_agent_id": agent["id"],
            "tool_arguments": {
                "subtask_description": subtask_description,
                "contextual_data": contextual_data,
                "parent_task_id": parent_task_id,
                "coordinator_agent_id": coordinator_agent_id,
            },
        }
        if timeout_s is not None:
            step["timeout"] = f"{int(timeout_s)}s"
        # A workflow name is lower-case letters, digits, '-' and '_' (the schema's rule).
        name = "delegated-" + re.sub(r"[^a-z0-9_-]", "-", subtask_id.lower())
        text = yaml.safe_dump(
            {
                "name": name,
                "description": f"Subtask {subtask_id} delegated by {coordinator_agent_id} to {agent['id']}",
                "agent_modifiable": True,
                "steps": [step],
                # By subscript: a subtask id may hold '-' (decompose_task's own ids: subtask-1).
                "outputs": {"result": f"{{{{ steps['{subtask_id}'].result }}}}"},
            },
            sort_keys=False,
        )
        defined = self.workflows.define(coordinator_agent_id, workflow_yaml=text)
        if not defined["valid"]:
            first = defined["errors"][0]["message"] if defined["errors"] else "invalid"
            raise BadArgument("contextual_data", f"the subtask cannot be expressed as a task: {first}")
        started = self.execute_workflow(name, coordinator_agent_id, {})
        self.store.add_message(
            coordinator_agent_id,
            agent["id"],
            f"[task {subtask_id}] {subtask_description} — report with report_step_completion"
            f"(workflow_id={name!r}, step_id={subtask_id!r}, run_id={started['run_id']!r})",
        )
        record = {
            "subtask_id": subtask_id,
            "parent_task_id": parent_task_id,
            "coordinator_agent_id": coordinator_agent_id,
            "assigned_agent_id": agent["id"],
            "description": subtask_description,
            "workflow_id": name,
            "run_id": started["run_id"],
            "deadline": deadline,
            "status": "assigned",
        }
        self.store.put_record("task", f"{started['run_id']}:{subtask_id}", record)
        return record

    # -- audit --------------------------------------------------------------------------------
    def audit_log(self, since: str | None = None, agent_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000):
            raise BadArgument("limit", "must be a whole number from 1 to 10000")
        if since is not None:
            check_text(since, "since", limit=64)
        try:
            return self.store.list_audit(actor=agent_id, limit=limit or 100, since=since)
        except NotFound:
            raise
        except Exception as exc:
            if "since" in str(exc):
                raise BadArgument("since", str(exc)) from None
            raise
