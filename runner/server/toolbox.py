"""The toolbox every MCP tool of ``runner serve`` goes through.

:meth:`Toolbox.invoke` resolves the caller, checks the policy (role, acting only as
itself), calls the orchestration service, writes the audit entry for anything that
changes state, and answers with ``structuredContent`` plus one short line of text. A
refusal is an error result naming the argument and why (``ToolError``: the SDK forwards
only its message), and nothing was changed.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from runner.errors import AuthError, RunnerError
from runner.server.auth import principal_of
from runner.service.orchestrator import Orchestrator
from runner.service.policy import Policy, Principal

# Tools that only read: not written to the audit log.
READ_ONLY = frozenset(
    {
        "find_agents",
        "get_workflow",
        "list_workflows",
        "get_run",
        "list_assigned_steps",
        "check_agent_responsiveness",
        "check_message_recipient_status",
        "check_message_frequency",
        "check_file_lock",
        "get_audit_log",
        "merge_results",
        "assign_subtasks",
        "decompose_task",
    }
)
# Argument values never copied into the audit log (payloads, credentials): only their size.
_BULKY = frozenset({"result", "content", "workflow_yaml", "steps", "contextual_data", "inputs", "task",
                    "task_description", "subtask_description", "results", "subtasks", "comments", "error_message",
                    "evaluation_criteria", "available_models", "description"})


# Names a tool function's locals() holds besides its parameters (the context, closures).
_NOT_ARGUMENTS = frozenset({"ctx", "self", "box", "orch", "co", "call", "tasks", "locks", "text", "note", "sampled"})


def _audit_detail(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in args.items():
        if v is None:
            continue
        if k in _BULKY:
            out[k] = f"<{len(json.dumps(v, default=str))} bytes>"
        elif isinstance(v, str | int | float | bool):
            out[k] = v if not isinstance(v, str) or len(v) <= 200 else v[:200] + "…"
        else:
            out[k] = f"<{type(v).__name__}>"
    return out


def _target(args: dict[str, Any]) -> str | None:
    for key in ("run_id", "workflow_id", "file_path", "agent_id", "id", "recipient_id", "subtask_id", "name", "title"):
        if isinstance(args.get(key), str):
            return str(args[key])
    return None


class Toolbox:
    """The tools bound to one orchestrator, policy and transport."""

    def __init__(self, orch: Orchestrator, policy: Policy, default_principal: Principal | None) -> None:
        self.orch = orch
        self.policy = policy
        self.default_principal = default_principal

    async def invoke(
        self,
        ctx: Context | None,
        tool: str,
        args: dict[str, Any],
        call: Callable[[dict[str, Any], Principal], Any],
        summary: Callable[[Any], str],
    ) -> CallToolResult:
        args = {k: v for k, v in args.items() if k not in _NOT_ARGUMENTS}
        who = "anonymous"
        try:
            principal = principal_of(ctx, self.orch.agents, self.default_principal)
            who = principal.name
            self.policy.check(principal, tool, args)
            out = call(args, principal)
            if inspect.isawaitable(out):
                out = await out
        except RunnerError as exc:
            if tool not in READ_ONLY or isinstance(exc, AuthError):
                self._audit(who, tool, args, f"refused: {exc}")
            prefix = "not allowed: " if isinstance(exc, AuthError) else ""
            raise ToolError(prefix + str(exc)) from None
        if tool not in READ_ONLY:
            self._audit(who, tool, args, "ok")
        data = out if isinstance(out, dict) else {"result": out}
        return CallToolResult(content=[TextContent(type="text", text=summary(data))], structured_content=data)

    def _audit(self, who: str, tool: str, args: dict[str, Any], outcome: str) -> None:
        try:
            self.orch.store.add_audit(who, tool, _target(args), {"args": _audit_detail(args), "outcome": outcome[:500]})
        except Exception:  # noqa: BLE001 - an audit write failure must not hide the tool's answer
            pass


def need_operator_for_force(args: dict[str, Any], who: Principal) -> None:
    if args.get("force") and not who.is_operator:
        raise AuthError("force=true is the operator's (it releases another agent's lock)")
