"""The agent, workflow and run tools of ``runner serve`` (SPEC §5), with the seed's
parameter names. Each is a thin face over the orchestration service through
:class:`~runner.server.toolbox.Toolbox`.

The descriptions are written for an LLM choosing a tool: what it does, when to use it.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult

from runner.errors import AuthError, BadArgument
from runner.server.toolbox import Toolbox
from runner.service.policy import Principal


def register_tools(server: MCPServer, box: Toolbox) -> None:  # noqa: C901 - one block per tool, by design
    """Add every tool to ``server``."""
    orch = box.orch

    # -- agents ------------------------------------------------------------------------------
    async def register_agent(
        ctx: Context,
        id: str,
        name: str,
        role: str,
        model_type: str = "",
        model_version: str = "",
        capabilities: list[str] | None = None,
        group: str | None = None,
        description: str | None = None,
    ) -> CallToolResult:
        def call(a: dict[str, Any], who: Principal) -> dict[str, Any]:
            if not who.is_operator and a["role"] != who.role:
                # The role decides the permissions: an agent changing its own would grant itself a coordinator's.
                raise AuthError(f"argument 'role': only the operator changes an agent's role ({who.role!r}, not {a['role']!r})")
            profile, token = orch.agents.register(
                a["id"], a["name"], a["role"], a["model_type"], a["model_version"], a["capabilities"], a["group"], a["description"]
            )
            return {"agent": profile, "token": token, "note": "use this bearer token for every call as this agent; it is shown once"}

        return await box.invoke(ctx, "register_agent", locals(), call, lambda d: f"registered agent {d['agent']['id']}")

    server.add_tool(register_agent, description=(
        "Register an agent (or update its own profile): id, name, role, model, capabilities. Returns a bearer token "
        "the agent uses for every later call; registering again issues a new token and the old one stops working. "
        "Registering another agent is the operator's."))

    async def deregister_agent(ctx: Context, agent_id: str) -> CallToolResult:
        return await box.invoke(ctx, "deregister_agent", locals(),
                                lambda a, w: {"agent_id": a["agent_id"], "deregistered": orch.agents.deregister(a["agent_id"])},
                                lambda d: f"{d['agent_id']}: {'deregistered' if d['deregistered'] else 'was not registered'}")

    server.add_tool(deregister_agent, description="Remove an agent from the registry; its token stops working at once.")

    async def find_agents(
        ctx: Context,
        capabilities: list[str] | None = None,
        role: str | None = None,
        statuses: list[str] | None = None,
        model_type: str | None = None,
        group: str | None = None,
        active_within_seconds: float | None = None,
    ) -> CallToolResult:
        def call(a: dict[str, Any], w: Principal) -> dict[str, Any]:
            found = orch.agents.find(a["capabilities"], a["role"], a["statuses"], a["model_type"], a["group"], a["active_within_seconds"])
            return {"agents": found, "count": len(found)}

        return await box.invoke(ctx, "find_agents", locals(), call, lambda d: f"{d['count']} agent(s) found")

    server.add_tool(find_agents, description=(
        "Find registered agents having ALL the given capabilities and matching role, statuses (available, working, "
        "idle, offline, error), model_type, group, and a heartbeat within active_within_seconds. Each result shows "
        "status, seconds since its heartbeat and the engine's circuit breaker state (closed, open, half_open)."))

    async def heartbeat(ctx: Context, agent_id: str, status: str | None = None, current_task: str | None = None) -> CallToolResult:
        return await box.invoke(ctx, "heartbeat", locals(),
                                lambda a, w: {"agent": orch.agents.heartbeat(a["agent_id"], a["status"], a["current_task"])},
                                lambda d: f"{d['agent']['id']}: {d['agent']['status']}")

    server.add_tool(heartbeat, description=(
        "Tell the orchestrator this agent is alive, optionally with its status and current task. Call it every "
        "few tens of seconds while working: responsiveness checks and assistance requests rely on it."))

    async def rotate_agent_token(ctx: Context, agent_id: str) -> CallToolResult:
        return await box.invoke(ctx, "rotate_agent_token", locals(),
                                lambda a, w: {"agent_id": a["agent_id"], "token": orch.agents.rotate_token(a["agent_id"])},
                                lambda d: f"new token for {d['agent_id']}; the old one no longer works")

    server.add_tool(rotate_agent_token, description="Issue a new bearer token for an agent; the old token stops working at once.")

    # -- workflows and runs -----------------------------------------------------------------------
    async def define_workflow(
        ctx: Context,
        creator_id: str | None = None,
        name: str | None = None,
        description: str | None = None,
        steps: list[dict[str, Any]] | None = None,
        workflow_yaml: str | None = None,
    ) -> CallToolResult:
        return await box.invoke(ctx, "define_workflow", locals(),
                                lambda a, w: orch.workflows.define(w.name if a["creator_id"] is None else a["creator_id"], a["name"], a["description"], a["steps"], a["workflow_yaml"]),
                                lambda d: f"workflow {d['workflow_id']} v{d['version']} stored" if d["valid"]
                                else f"invalid workflow, nothing stored: {len(d['errors'])} error(s)")

    server.add_tool(define_workflow, description=(
        "Define a workflow: name + description + steps (each: step_id, description, assigned_role or "
        "assigned_agent_id or required_capabilities, depends_on, tool_to_call, tool_arguments), or the whole YAML "
        "file as workflow_yaml. Validated exactly like `runner validate`; when invalid nothing is stored and "
        "errors list each problem with its JSON path. Returns the planned order. A step without tool_to_call is "
        "a pull step: its agent picks it up with list_assigned_steps and reports back."))

    async def execute_workflow(
        ctx: Context, workflow_id: str, triggering_agent_id: str | None = None, inputs: dict[str, Any] | None = None
    ) -> CallToolResult:
        return await box.invoke(ctx, "execute_workflow", locals(),
                                lambda a, w: orch.execute_workflow(a["workflow_id"], a["triggering_agent_id"] or w.name, a["inputs"]),
                                lambda d: f"run {d['run_id']} of {d['workflow_id']} started")

    server.add_tool(execute_workflow, description=(
        "Start a run of a defined workflow with optional inputs. Returns at once with the run id and the first "
        "steps with their assignees; follow it with get_run(run_id, wait_seconds)."))

    async def report_step_completion(
        ctx: Context, workflow_id: str, step_id: str, agent_id: str, result: Any = None,
        run_id: str | None = None, index: int | None = None,
    ) -> CallToolResult:
        return await box.invoke(ctx, "report_step_completion", locals(),
                                lambda a, w: orch.workflows.report(a["workflow_id"], a["step_id"], a["agent_id"], result=a["result"], run_id=a["run_id"], index=a["index"]),
                                lambda d: f"{d['step_id']} of run {d['run_id']}: report {d['report']}")

    server.add_tool(report_step_completion, description=(
        "Report that this agent finished a pull step assigned to it, with its result (any JSON). run_id is "
        "required when the workflow has more than one active run; index for one item of a for_each step. "
        "A repeated identical report is acknowledged as a duplicate, not counted twice."))

    async def report_step_failure(
        ctx: Context, workflow_id: str, step_id: str, agent_id: str, error_message: str,
        run_id: str | None = None, index: int | None = None,
    ) -> CallToolResult:
        def call(a: dict[str, Any], w: Principal) -> dict[str, Any]:
            if not isinstance(a["error_message"], str) or not a["error_message"].strip():
                raise BadArgument("error_message", "must say what went wrong")
            return orch.workflows.report(a["workflow_id"], a["step_id"], a["agent_id"], error=a["error_message"], run_id=a["run_id"], index=a["index"])

        return await box.invoke(ctx, "report_step_failure", locals(), call,
                                lambda d: f"{d['step_id']} of run {d['run_id']}: failure {d['report']}")

    server.add_tool(report_step_failure, description=(
        "Report that this agent could not do a pull step assigned to it, with an error message; the step's "
        "retry policy and the workflow decide what happens next."))

    async def get_workflow(ctx: Context, workflow_id: str) -> CallToolResult:
        return await box.invoke(ctx, "get_workflow", locals(), lambda a, w: orch.workflows.get(a["workflow_id"]),
                                lambda d: f"workflow {d['workflow_id']} v{d['version']}: {len(d['steps'])} step(s)")

    server.add_tool(get_workflow, description="A workflow's definition: steps, planned order, version, creator and its YAML text.")

    async def list_workflows(ctx: Context) -> CallToolResult:
        return await box.invoke(ctx, "list_workflows", locals(), lambda a, w: {"workflows": orch.workflows.list_all()},
                                lambda d: f"{len(d['workflows'])} workflow(s)")

    server.add_tool(list_workflows, description="Every stored workflow (latest version of each).")

    async def get_run(ctx: Context, run_id: str, wait_seconds: float | None = None) -> CallToolResult:
        return await box.invoke(ctx, "get_run", locals(), lambda a, w: orch.workflows.get_run(a["run_id"], a["wait_seconds"]),
                                lambda d: f"run {d['run_id']}: {d['status']}")

    server.add_tool(get_run, description=(
        "A run's status, outputs and every step's status/result/error, and which pull steps wait for a report. "
        "With wait_seconds (up to 60) it first waits until the status changes: use it instead of polling."))

    async def cancel_run(ctx: Context, run_id: str, agent_id: str | None = None) -> CallToolResult:
        return await box.invoke(ctx, "cancel_run", locals(), lambda a, w: orch.workflows.cancel(a["run_id"]),
                                lambda d: f"run {d['run_id']}: cancel {d['cancel']}")

    server.add_tool(cancel_run, description=(
        "Cancel a run: a queued run ends at once; a running one stops within about a second, runs its finally "
        "steps and ends cancelled."))

    async def list_assigned_steps(ctx: Context, agent_id: str) -> CallToolResult:
        def call(a: dict[str, Any], w: Principal) -> dict[str, Any]:
            steps = orch.workflows.assigned(a["agent_id"])
            return {"agent_id": a["agent_id"], "steps": steps, "count": len(steps)}

        return await box.invoke(ctx, "list_assigned_steps", locals(), call, lambda d: f"{d['count']} step(s) waiting for {d['agent_id']}")

    server.add_tool(list_assigned_steps, description=(
        "The pull steps (and delegated subtasks) waiting for this agent: run, step, arguments, deadline. Do the "
        "work, then call report_step_completion or report_step_failure."))

    async def delegate_subtask(
        ctx: Context, coordinator_agent_id: str, assigned_agent_id: str, subtask_id: str, subtask_description: str,
        contextual_data: Any = None, parent_task_id: str | None = None, deadline: str | None = None,
    ) -> CallToolResult:
        return await box.invoke(ctx, "delegate_subtask", locals(),
                                lambda a, w: orch.delegate_subtask(a["coordinator_agent_id"], a["assigned_agent_id"], a["subtask_id"], a["subtask_description"], a["contextual_data"], a["parent_task_id"], a["deadline"]),
                                lambda d: f"subtask {d['subtask_id']} assigned to {d['assigned_agent_id']} (run {d['run_id']})")

    server.add_tool(delegate_subtask, description=(
        "Hand one subtask to an agent as a real task: it appears in that agent's list_assigned_steps and "
        "messages, and is completed with report_step_completion (workflow_id and run_id are returned)."))
