"""Workflows defined and driven by agents: define, get, list, execute, report, get_run, cancel.

A workflow defined over MCP is validated exactly as ``runner validate`` validates a file
(the same loader, the same problems with JSON paths), against the operator's agents and
the registered ones, and stored only when it is valid. Beyond validation it must not reach
outside the store: no ``stdio``/``inprocess`` agents (they start processes or load code on
the server's machine), no ``uses:`` of a file path (a shipped pattern by name is fine),
no ``secrets.*`` (the definer could send them to an HTTP agent of its choosing).
A workflow the operator committed (a file run through the CLI) is not overwritten over
MCP unless it says ``agent_modifiable: true``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from runner.core.dag import topo_layers
from runner.core.selection import eligible
from runner.errors import BadArgument, NotFound, Problem, Refused, WorkflowInvalid
from runner.load import json_path, load_workflow, load_yaml
from runner.model import AgentSpec, Workflow
from runner.model.ids import workflow_hash
from runner.model.spec import TransportKind
from runner.service.runs import RunService
from runner.store.base import RunRecord, Store, WorkflowRecord

ACTIVE = ("queued", "pending", "running")
FINAL = ("completed", "failed", "cancelled", "timed_out")
_RUNTIME_STEP_KEYS = ("status", "result", "error")  # the seed's WorkflowStep fields a definition does not set
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}\Z")  # the schema's rule for a workflow name
MAX_WAIT = 60.0
CURRENT = "current_workflow"  # records collection: the version of each workflow in force


def planned_order(wf: Workflow) -> list[list[str]]:
    """The steps in layers: every step after the ones it depends on (``finally`` steps last)."""
    layers = topo_layers({s.step_id: list(s.depends_on) for s in wf.steps if not s.is_finally})
    finals = [s.step_id for s in wf.steps if s.is_finally]
    return [*layers, *([finals] if finals else [])]


def first_ready(wf: Workflow, agents: Mapping[str, AgentSpec]) -> list[dict[str, Any]]:
    """The steps that start at once, with the agents that may take them (primary first)."""
    out = []
    for s in wf.steps:
        if s.depends_on or s.is_finally:
            continue
        candidates, n_primary = eligible(s, agents)
        out.append(
            {
                "step_id": s.step_id,
                "description": s.description,
                "kind": "uses" if s.calls_workflow else "tool" if s.tool_to_call else "pull",
                "tool_to_call": s.tool_to_call,
                "assignees": candidates[:n_primary],
                "fallbacks": candidates[n_primary:],
            }
        )
    return out


def run_view(store: Store, run: RunRecord) -> dict[str, Any]:
    """A run as agents see it: status, outputs, each step, what waits for a report."""
    steps = {
        s.step_id: {
            "status": s.status,
            "result": s.result,
            "error": s.error,
            "attempts": s.attempts,
            "agent_id": s.agent_id,
        }
        for s in store.get_steps(run.run_id)
    }
    waiting = [
        {"step_id": a.step_id, "index": a.index, "agent_id": a.agent_id, "deadline": a.deadline}
        for a in store.list_assignments(run_id=run.run_id)
    ]
    return {
        "run_id": run.run_id,
        "workflow_id": run.workflow_name,
        "status": run.status,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "error": run.error,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "steps": steps,
        "waiting_for_reports": waiting,
    }


def steps_to_yaml(name: str, description: str | None, steps: Any) -> str:
    """The seed's ``define_workflow(name, description, steps)`` as workflow YAML text."""
    if not isinstance(steps, list) or not steps:
        raise BadArgument("steps", "must be a non-empty list of step objects")
    clean = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise BadArgument("steps", f"steps[{i}] must be an object, not {type(step).__name__}")
        clean.append({k: v for k, v in step.items() if k not in _RUNTIME_STEP_KEYS})
    doc: dict[str, Any] = {"name": name}
    if description:
        doc["description"] = description
    doc["steps"] = clean
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def mcp_restrictions(wf: Workflow) -> list[Problem]:
    """What a workflow defined over MCP may not do (see the module docstring), positioned."""
    file = wf.source or "<mcp>"
    text = wf.source_text or ""
    try:
        _data, smap = load_yaml(text, file)
    except Exception:  # noqa: BLE001 - it loaded a moment ago; positions are a nicety
        smap = None

    def at(message: str, path: list[str | int]) -> Problem:
        return smap.problem(message, path) if smap is not None else Problem(message, path=json_path(path), file=file)

    problems: list[Problem] = []
    # an inline `workflow:` body is part of the definition: the same rules, inside it too
    todo: list[tuple[Workflow, tuple[str | int, ...]]] = [(wf, ())]
    while todo:
        w, pre = todo.pop(0)
        for i, a in enumerate(w.agents):
            if a.transport in (TransportKind.STDIO, TransportKind.INPROCESS):
                problems.append(
                    at(
                        f"agent '{a.id}': transport '{a.transport.value}' starts a process or loads code on the server; "
                        "workflows defined over MCP may declare only 'http' and 'pull' agents (stdio and inprocess "
                        "agents come from the operator's registry)",
                        [*pre, "agents", i, "transport"],
                    )
                )
        for section, seq in (("steps", w.steps), ("finally", w.finally_steps)):
            for i, s in enumerate(seq):
                where = [*pre, section, i]
                if s.uses is not None and ("/" in s.uses or s.uses.endswith((".yaml", ".yml"))):
                    problems.append(
                        at(
                            f"step '{s.step_id}': uses: {s.uses!r} names a file; over MCP only a shipped pattern by "
                            "name may be used",
                            [*where, "uses"],
                        )
                    )
                if s.inline is not None and s.step_id in w.children:
                    todo.append((w.children[s.step_id], (*where, "workflow")))
    m = re.search(r"\bsecrets\s*[.\[]", text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        problems.append(
            Problem(
                "workflows defined over MCP cannot read secrets.* (they would reach agents the definer chose)",
                path="$",
                file=file,
                line=line,
                col=col,
            )
        )
    return problems


class Workflows:
    """The workflow tools. ``registry`` gives the agents workflows may use right now
    (the operator's ``--agents`` file and the registered agents); ``launch`` hands a run this
    process has claimed to the executor."""

    def __init__(
        self,
        store: Store,
        runs: Callable[[], RunService],
        registry: Callable[[], Sequence[AgentSpec]],
    ) -> None:
        self.store = store
        self.runs = runs
        self.registry = registry

    # -- define / get / list --------------------------------------------------------------------
    def define(
        self,
        creator_id: str,
        name: str | None = None,
        description: str | None = None,
        steps: Any = None,
        workflow_yaml: str | None = None,
    ) -> dict[str, Any]:
        """Validate and store; ``{"valid": False, "errors": [...]}`` stores nothing."""
        if workflow_yaml is not None and steps is not None:
            raise BadArgument("workflow_yaml", "give either steps (with name) or workflow_yaml, not both")
        if workflow_yaml is not None:
            if not isinstance(workflow_yaml, str) or not workflow_yaml.strip():
                raise BadArgument("workflow_yaml", "must be the workflow file's text")
            if len(workflow_yaml) > 2_000_000:
                raise BadArgument("workflow_yaml", f"is {len(workflow_yaml)} characters; the limit is 2,000,000")
            text = workflow_yaml
        else:
            if steps is None:
                raise BadArgument("steps", "required (or give the whole file as workflow_yaml)")
            if not isinstance(name, str) or not _NAME.match(name):
                raise BadArgument("name", f"{name!r} is not a workflow name (lower-case letters, digits, '-' and '_', starting with a letter or digit)")
            text = steps_to_yaml(name, description, steps)
        source = f"<define_workflow {name or 'workflow_yaml'}>"
        try:
            wf = load_workflow(text, file=source, registry=self.registry())
        except WorkflowInvalid as exc:
            return {"valid": False, "errors": [p.to_json() for p in exc.problems], "stored": False}
        problems = mcp_restrictions(wf)
        if problems:
            return {"valid": False, "errors": [p.to_json() for p in problems], "stored": False}
        if name is not None and workflow_yaml is not None and name != wf.name:
            raise BadArgument("name", f"{name!r} differs from the name in workflow_yaml ({wf.name!r})")
        current = self.store.get_workflow(wf.name)
        if current is not None and current.origin != "mcp" and not current.agent_modifiable:
            raise Refused(
                f"name: workflow {wf.name!r} was committed by the operator and is not agent_modifiable; "
                "define it under another name"
            )
        rec = self.store.put_workflow(
            WorkflowRecord(
                name=wf.name,
                content_hash=workflow_hash(text),
                source_text=text,
                creator_id=creator_id,
                agent_modifiable=wf.agent_modifiable or current is None or current.origin == "mcp",
                origin="mcp",
            )
        )
        latest = self.store.get_workflow(rec.name)
        self.store.put_record(
            CURRENT,
            rec.name,
            {"content_hash": rec.content_hash, "version": rec.version, "latest_version": latest.version if latest else rec.version},
        )
        return {
            "valid": True,
            "stored": True,
            "workflow_id": rec.name,
            "version": rec.version,
            "content_hash": rec.content_hash,
            "errors": [],
            "warnings": [p.to_json() for p in wf.warnings],
            "order": planned_order(wf),
        }

    def _record(self, workflow_id: Any) -> WorkflowRecord:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise BadArgument("workflow_id", "must be a workflow name")
        rec = self.current(workflow_id)
        if rec is None:
            known = ", ".join(w.name for w in self.store.list_workflows()[:50]) or "none"
            raise NotFound(f"workflow_id: no workflow {workflow_id!r} (known: {known})")
        return rec

    def current(self, name: str) -> WorkflowRecord | None:
        """The version of ``name`` in force: the last one defined over MCP, unless a newer
        version was stored since (a file run from the CLI).

        Defining content the catalog already holds returns that earlier version rather
        than a new one (versions are content-addressed), so "current" is a pointer of
        its own, kept in the records collection ``current_workflow``.
        """
        latest = self.store.get_workflow(name)
        if latest is None:
            return None
        pointer = self.store.get_record(CURRENT, name)
        if pointer is None or latest.version > int(pointer.get("latest_version", 0)):
            return latest
        return self.store.get_workflow(name, pointer["content_hash"]) or latest

    def load(self, rec: WorkflowRecord) -> Workflow:
        return load_workflow(rec.source_text, file=f"<stored {rec.name} v{rec.version}>", registry=self.registry())

    def get(self, workflow_id: str) -> dict[str, Any]:
        rec = self._record(workflow_id)
        wf = self.load(rec)
        return {
            "workflow_id": rec.name,
            "name": rec.name,
            "description": wf.description,
            "version": rec.version,
            "content_hash": rec.content_hash,
            "created_at": rec.created_at,
            "creator_id": rec.creator_id,
            "origin": rec.origin,
            "agent_modifiable": rec.agent_modifiable,
            "steps": [
                {
                    "step_id": s.step_id,
                    "description": s.description,
                    "assigned_role": s.assigned_role,
                    "assigned_agent_id": s.assigned_agent_id,
                    "required_capabilities": list(s.required_capabilities),
                    "depends_on": list(s.depends_on),
                    "tool_to_call": s.tool_to_call,
                    "uses": s.uses,
                }
                for s in wf.steps
            ],
            "order": planned_order(wf),
            "workflow_yaml": rec.source_text,
        }

    def list_all(self) -> list[dict[str, Any]]:
        return [
            {
                "workflow_id": w.name,
                "version": w.version,
                "created_at": w.created_at,
                "creator_id": w.creator_id,
                "origin": w.origin,
            }
            for w in (self.current(x.name) or x for x in self.store.list_workflows())
        ]

    # -- runs ------------------------------------------------------------------------------------
    def start(self, workflow_id: str, inputs: Mapping[str, Any] | None) -> tuple[RunService, Workflow, str, Any]:
        """Create a run claimed by this process; the caller launches it. Returns (service, wf, run_id, lease)."""
        if inputs is not None and not isinstance(inputs, dict):
            raise BadArgument("inputs", "must be an object of input name -> value")
        rec = self._record(workflow_id)
        wf = self.load(rec)
        service = self.runs()
        try:
            run_id, lease = service.start(wf, inputs or {})
        except Exception as exc:
            if type(exc).__name__ == "InputInvalid":
                raise BadArgument("inputs", str(exc)) from None
            raise
        return service, wf, run_id, lease

    def _find_run(self, run_id: str) -> RunRecord:
        try:
            return self.store.find_run(run_id)
        except NotFound as exc:
            raise NotFound(f"run_id: {exc}") from None

    def active_run(self, workflow_id: str, run_id: str | None) -> RunRecord:
        """The run a report is about: ``run_id``, or the workflow's only active run."""
        if run_id is not None:
            if not isinstance(run_id, str) or not run_id:
                raise BadArgument("run_id", "must be a run id")
            run = self._find_run(run_id)
            if workflow_id and run.workflow_name != workflow_id:
                raise BadArgument("run_id", f"run {run.run_id} belongs to workflow {run.workflow_name!r}, not {workflow_id!r}")
            return run
        self._record(workflow_id)
        active = [r for status in ACTIVE for r in self.store.list_runs(workflow=workflow_id, status=status, limit=20)]
        if not active:
            raise Refused(f"workflow_id: workflow {workflow_id!r} has no active run to report on")
        if len(active) > 1:
            ids = ", ".join(r.run_id for r in active[:10])
            raise BadArgument("run_id", f"required: workflow {workflow_id!r} has {len(active)} active runs ({ids})")
        return active[0]

    def report(
        self,
        workflow_id: str,
        step_id: str,
        agent_id: str,
        *,
        result: Any = None,
        error: str | None = None,
        run_id: str | None = None,
        index: int | None = None,
    ) -> dict[str, Any]:
        if not isinstance(step_id, str) or not step_id:
            raise BadArgument("step_id", "must be a step id")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise BadArgument("index", "must be the item's index (0 or more) for a for_each pull step")
        run = self.active_run(workflow_id, run_id)
        outcome = self.runs().report(run.run_id, step_id, agent_id, result=result, error=error, index=index)
        fresh = self.store.get_run(run.run_id) or run
        return {"report": outcome, "run_id": run.run_id, "workflow_id": run.workflow_name, "step_id": step_id, "run_status": fresh.status}

    def get_run_now(self, run_id: str) -> dict[str, Any]:
        if not isinstance(run_id, str) or not run_id:
            raise BadArgument("run_id", "must be a run id")
        return run_view(self.store, self._find_run(run_id))

    async def get_run(self, run_id: str, wait_seconds: float | None = None) -> dict[str, Any]:
        """The run; with ``wait_seconds``, first wait (≤ 60 s) until its status changes."""
        view = self.get_run_now(run_id)
        if wait_seconds is None or wait_seconds == 0:
            return view
        if isinstance(wait_seconds, bool) or not isinstance(wait_seconds, int | float) or not 0 <= wait_seconds <= MAX_WAIT:
            raise BadArgument("wait_seconds", f"must be a number of seconds from 0 to {MAX_WAIT:g}")
        start = view["status"]
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and start not in FINAL:
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            run = self.store.get_run(view["run_id"])
            if run is not None and run.status != start:
                return run_view(self.store, run) | {"changed": True}
        return self.get_run_now(view["run_id"]) | {"changed": False}

    def cancel(self, run_id: str) -> dict[str, Any]:
        if not isinstance(run_id, str) or not run_id:
            raise BadArgument("run_id", "must be a run id")
        run = self._find_run(run_id)
        outcome = self.runs().cancel(run.run_id)
        return {"run_id": run.run_id, "cancel": outcome, "status": (self.store.get_run(run.run_id) or run).status}

    def assigned(self, agent_id: str) -> list[dict[str, Any]]:
        out = []
        for a in self.runs().assigned_steps(agent_id=agent_id):
            out.append(
                {
                    "run_id": a.run_id,
                    "workflow_id": a.workflow_name,
                    "step_id": a.step_id,
                    "index": a.index,
                    "agent_id": a.agent_id,
                    "attempt": a.attempt,
                    "arguments": a.arguments,
                    "assigned_at": a.assigned_at,
                    "deadline": a.deadline,
                }
            )
        return out
