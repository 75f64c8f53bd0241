"""Who may call which tool, and as whom (SPEC §8 "Default permissions").

A caller is a :class:`Principal`: the operator (the admin token over HTTP; the client of
a stdio server) or one registered agent (its own token). The operator may do everything.
An agent may call the read and self-service tools; an agent whose role is a coordinator
role may also define and run workflows, use the task tools and create sessions, projects
and goals. Every tool parameter that names the acting agent (``agent_id``, ``sender_id``,
``creator_id``, …) must be the caller itself: an agent acts only as itself.

A policy file (YAML) changes the defaults::

    coordinator_roles: [coordinator, orchestrator, lead, planner]
    agent_tools: [find_agents, heartbeat, ...]          # replaces the default list
    coordinator_tools: [define_workflow, ...]           # replaces the default list
    roles:                                              # extra tools for one role
      reviewer: [evaluate_contribution]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import AuthError, InputInvalid

OPERATOR = "operator"

AGENT_TOOLS = frozenset(
    {
        "register_agent",  # itself only (updating its own profile)
        "deregister_agent",
        "find_agents",
        "heartbeat",
        "rotate_agent_token",
        "list_assigned_steps",
        "report_step_completion",
        "report_step_failure",
        "get_workflow",
        "list_workflows",
        "get_run",
        "send_message",
        "get_messages",
        "request_assistance",
        "evaluate_contribution",
        "acquire_file_lock",
        "renew_file_lock",
        "release_file_lock",
        "check_file_lock",
        "check_agent_responsiveness",
        "check_message_recipient_status",
        "check_message_frequency",
        "merge_results",
    }
)
COORDINATOR_TOOLS = frozenset(
    {
        "define_workflow",
        "execute_workflow",
        "cancel_run",
        "decompose_task",
        "assign_subtasks",
        "delegate_subtask",
        "merge_results",
        "create_collaboration_session",
        "create_project",
        "create_goal",
    }
)
OPERATOR_TOOLS = frozenset({"get_audit_log"})
COORDINATOR_ROLES = frozenset({"coordinator", "orchestrator", "lead"})

# The parameter of each tool that names the agent acting: it must be the caller.
ACTING_AS: Mapping[str, str] = {
    "register_agent": "id",
    "deregister_agent": "agent_id",
    "heartbeat": "agent_id",
    "rotate_agent_token": "agent_id",
    "list_assigned_steps": "agent_id",
    "report_step_completion": "agent_id",
    "report_step_failure": "agent_id",
    "send_message": "sender_id",
    "get_messages": "agent_id",
    "request_assistance": "requesting_agent_id",
    "evaluate_contribution": "evaluating_agent_id",
    "acquire_file_lock": "agent_id",
    "renew_file_lock": "agent_id",
    "release_file_lock": "agent_id",
    "define_workflow": "creator_id",
    "execute_workflow": "triggering_agent_id",
    "cancel_run": "agent_id",
    "delegate_subtask": "coordinator_agent_id",
    "create_collaboration_session": "coordinator_model_id",
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the operator, or a registered agent with its role."""

    agent_id: str | None = None  # None: the operator
    role: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.agent_id is None

    @property
    def name(self) -> str:
        return self.agent_id or OPERATOR


@dataclass(frozen=True)
class Policy:
    agent_tools: frozenset[str] = AGENT_TOOLS
    coordinator_tools: frozenset[str] = COORDINATOR_TOOLS
    coordinator_roles: frozenset[str] = COORDINATOR_ROLES
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str | None = None  # the policy file, if any

    def allowed(self, principal: Principal, tool: str) -> bool:
        if principal.is_operator:
            return True
        if tool in OPERATOR_TOOLS:
            return False
        if tool in self.agent_tools:
            return True
        if principal.role in self.coordinator_roles and tool in self.coordinator_tools:
            return True
        return tool in self.roles.get(principal.role or "", frozenset())

    def check(self, principal: Principal, tool: str, arguments: dict[str, Any]) -> None:
        """Raise ``AuthError`` unless ``principal`` may call ``tool`` with these arguments.

        An agent's acting-as parameter, when the tool has one and it was left out, is
        filled in with the caller's own id.
        """
        if not self.allowed(principal, tool):
            raise AuthError(
                f"{principal.name} (role {principal.role!r}) may not call {tool}: "
                + (
                    "it is the operator's"
                    if tool in OPERATOR_TOOLS
                    else f"it needs a coordinator role ({', '.join(sorted(self.coordinator_roles))})"
                )
            )
        param = ACTING_AS.get(tool)
        if principal.is_operator or param is None:
            return
        given = arguments.get(param)
        if given is None:
            arguments[param] = principal.agent_id
        elif given != principal.agent_id:
            raise AuthError(f"argument {param!r}: {principal.agent_id} may act only as itself, not as {given!r}")

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """A policy file; ``InputInvalid`` naming the key at fault."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InputInvalid(f"--policy {path}: {exc}") from None
        if not isinstance(data, dict):
            raise InputInvalid(f"--policy {path}: must be a mapping")
        known = {"coordinator_roles", "agent_tools", "coordinator_tools", "roles"}
        extra = sorted(set(data) - known)
        if extra:
            raise InputInvalid(f"--policy {path}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))})")

        def names(key: str, value: Any) -> frozenset[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputInvalid(f"--policy {path}: {key} must be a list of names")
            return frozenset(value)

        roles: dict[str, frozenset[str]] = {}
        raw_roles = data.get("roles") or {}
        if not isinstance(raw_roles, dict):
            raise InputInvalid(f"--policy {path}: roles must map a role to a list of tools")
        for role, tools in raw_roles.items():
            roles[str(role)] = names(f"roles.{role}", tools)
        return cls(
            agent_tools=names("agent_tools", data["agent_tools"]) if "agent_tools" in data else AGENT_TOOLS,
            coordinator_tools=names("coordinator_tools", data["coordinator_tools"]) if "coordinator_tools" in data else COORDINATOR_TOOLS,
            coordinator_roles=names("coordinator_roles", data["coordinator_roles"]) if "coordinator_roles" in data else COORDINATOR_ROLES,
            roles=roles,
            source=str(path),
        )

    def unknown_tools(self, tools: Iterable[str]) -> list[str]:
        """Tool names in this policy that the server does not have (typos in a policy file)."""
        named = set(self.agent_tools) | set(self.coordinator_tools) | {t for ts in self.roles.values() for t in ts}
        return sorted(named - set(tools))
