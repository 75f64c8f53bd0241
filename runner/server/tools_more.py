"""The coordination, anti-jam, project and audit tools of ``runner serve``.

Kept apart from ``tools.py`` (agents, workflows, runs) only for size; the same
:class:`~runner.server.toolbox.Toolbox` invokes them.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult

from runner.server.toolbox import Toolbox
from runner.service.policy import Principal


def register_more_tools(server: MCPServer, box: Toolbox) -> None:
    orch = box.orch
    co = orch.coordination

    # -- coordination --------------------------------------------------------------------------
    async def create_collaboration_session(
        ctx: Context, title: str, description: str, participant_model_ids: list[str], coordinator_model_id: str
    ) -> CallToolResult:
        return await box.invoke(ctx, "create_collaboration_session", locals(),
                                lambda a, w: co.create_session(a["title"], a["description"], a["participant_model_ids"], a["coordinator_model_id"]),
                                lambda d: f"session {d['session_id']} with {len(d['participant_model_ids'])} participant(s)")

    server.add_tool(create_collaboration_session, description=(
        "Open a collaboration session between agents under one coordinator; each participant is told by message."))

    async def request_assistance(
        ctx: Context, requesting_agent_id: str, task_description: str, target_agent_id: str | None = None,
        required_capabilities: list[str] | None = None, urgency: str | None = None,
    ) -> CallToolResult:
        return await box.invoke(ctx, "request_assistance", locals(),
                                lambda a, w: co.request_assistance(a["requesting_agent_id"], a["task_description"], a["target_agent_id"], a["required_capabilities"], a["urgency"]),
                                lambda d: f"assistance request {d['request_id']}: {d['status']} to {len(d['recipients'])} agent(s)")

    server.add_tool(request_assistance, description=(
        "Ask for help: to target_agent_id, or to up to 5 responsive agents having required_capabilities "
        "(freshest heartbeat first). They receive a message; urgency high/critical marks it urgent."))

    async def evaluate_contribution(
        ctx: Context, evaluating_agent_id: str, contributing_agent_id: str, contribution_ref: str,
        evaluation_criteria: dict[str, Any] | None = None, comments: str | None = None,
    ) -> CallToolResult:
        return await box.invoke(ctx, "evaluate_contribution", locals(),
                                lambda a, w: co.evaluate_contribution(a["evaluating_agent_id"], a["contributing_agent_id"], a["contribution_ref"], a["evaluation_criteria"], a["comments"]),
                                lambda d: f"evaluation {d['evaluation_id']} of {d['contributing_agent_id']}: score {d['overall_score']}")

    server.add_tool(evaluate_contribution, description=(
        "Record an evaluation of another agent's contribution: criteria as name -> score (number) or note "
        "(string), comments. Returns the overall score and the contributor's running average."))

    async def send_message(ctx: Context, sender_id: str, recipient_id: str, content: str, urgent: bool = False) -> CallToolResult:
        return await box.invoke(ctx, "send_message", locals(),
                                lambda a, w: co.send_message(a["sender_id"], a["recipient_id"], a["content"], a["urgent"]),
                                lambda d: f"message {d['message']['id']} to {d['message']['recipient_id']}")

    server.add_tool(send_message, description="Send a message to another agent; it is stored and delivered once through get_messages.")

    async def get_messages(ctx: Context, agent_id: str, since: str | None = None, unread_only: bool = False) -> CallToolResult:
        def call(a: dict[str, Any], w: Principal) -> dict[str, Any]:
            msgs = co.get_messages(a["agent_id"], a["since"], a["unread_only"])
            return {"agent_id": a["agent_id"], "messages": msgs, "count": len(msgs)}

        return await box.invoke(ctx, "get_messages", locals(), call, lambda d: f"{d['count']} message(s)")

    server.add_tool(get_messages, description=(
        "This agent's messages, oldest first (since: an ISO timestamp; unread_only). Returned messages are marked read."))

    # -- anti-jam ------------------------------------------------------------------------------------
    async def check_agent_responsiveness(ctx: Context, agent_id: str, threshold_seconds: float = 60) -> CallToolResult:
        return await box.invoke(ctx, "check_agent_responsiveness", locals(),
                                lambda a, w: co.agent_responsiveness(a["agent_id"], a["threshold_seconds"]),
                                lambda d: f"{d['agent_id']}: {'responsive' if d['responsive'] else 'NOT responsive'} ({d['reason']})")

    server.add_tool(check_agent_responsiveness, description=(
        "Whether an agent is responsive: heartbeat within threshold_seconds, status not offline/error, circuit not open."))

    async def check_message_recipient_status(
        ctx: Context, sender_id: str, time_window_seconds: float = 300, responsiveness_threshold_seconds: float = 60
    ) -> CallToolResult:
        return await box.invoke(ctx, "check_message_recipient_status", locals(),
                                lambda a, w: co.recipient_status(a["sender_id"], a["time_window_seconds"], a["responsiveness_threshold_seconds"]),
                                lambda d: f"{len(d['recipients'])} recipient(s), {len(d['unresponsive'])} unresponsive")

    server.add_tool(check_message_recipient_status, description=(
        "For each agent this sender messaged within the window: messages sent, still unread, heartbeat age, "
        "responsive or not. Use it before waiting on an answer that may never come."))

    async def check_message_frequency(
        ctx: Context, agent_id: str, time_window_seconds: float = 60, frequency_threshold: int = 30
    ) -> CallToolResult:
        return await box.invoke(ctx, "check_message_frequency", locals(),
                                lambda a, w: co.message_frequency(a["agent_id"], a["time_window_seconds"], a["frequency_threshold"]),
                                lambda d: f"{d['agent_id']}: {d['message_count']} message(s) in {d['time_window_seconds']:g}s"
                                + (" — FLOODING" if d["flooding"] else ""))

    server.add_tool(check_message_frequency, description=(
        "How many messages an agent sent over a sliding window, against a threshold: detects flooding and loops."))

    # -- projects, goals, audit -------------------------------------------------------------------------
    async def create_project(
        ctx: Context, name: str, description: str, lead_agent_id: str | None = None, initial_status: str | None = None
    ) -> CallToolResult:
        return await box.invoke(ctx, "create_project", locals(),
                                lambda a, w: co.create_project(a["name"], a["description"], a["lead_agent_id"], a["initial_status"]),
                                lambda d: f"project {d['id']} created")

    server.add_tool(create_project, description="Create a project (name, description, optional lead agent and status).")

    async def create_goal(
        ctx: Context, name: str, description: str, project_id: str | None = None, initial_status: str | None = None
    ) -> CallToolResult:
        return await box.invoke(ctx, "create_goal", locals(),
                                lambda a, w: co.create_goal(a["name"], a["description"], a["project_id"], a["initial_status"]),
                                lambda d: f"goal {d['id']} created")

    server.add_tool(create_goal, description="Create a goal, optionally under a project.")

    async def get_audit_log(ctx: Context, since: str | None = None, agent_id: str | None = None, limit: int | None = None) -> CallToolResult:
        def call(a: dict[str, Any], w: Principal) -> dict[str, Any]:
            entries = orch.audit_log(a["since"], a["agent_id"], a["limit"])
            return {"entries": entries, "count": len(entries)}

        return await box.invoke(ctx, "get_audit_log", locals(), call, lambda d: f"{d['count']} audit entr(ies)")

    server.add_tool(get_audit_log, description="The audit log, newest first: who called what, on what, when, and the outcome. Operator only.")
