"""The agent registry behind ``register_agent``, ``find_agents``, ``heartbeat`` and tokens.

Registered agents are the seed's ``RegisteredAgent``: profiles in the store, kept fresh by
heartbeats, found by capability, role, status, model, group and recency. Each one gets a
bearer token when it registers: only its SHA-256 is stored, so a leaked database does not
leak credentials, and rotating it makes the old token fail at once (every call looks the
hash up; nothing is cached).

A registered agent is a *pull* agent to the engine: a step assigned to it waits in the
store until the agent reports (``list_assigned_steps`` → ``report_step_completion``).
:meth:`AgentDirectory.specs` hands them to workflow validation and the engine in that form.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from runner.errors import BadArgument, NotFound
from runner.model import AgentSpec
from runner.model.events import now_iso
from runner.model.spec import TransportKind
from runner.store.base import Store

STATUSES = ("available", "working", "idle", "offline", "error")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_TOKEN_PREFIX = "rat_"  # runner agent token: recognisable in logs and secret scanners


def hash_token(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_id(value: Any, argument: str) -> str:
    """An agent id: 1–128 of letters, digits, ``_ . : -``, starting with a letter or digit."""
    if not isinstance(value, str) or not _ID.match(value):
        raise BadArgument(
            argument, f"{value!r} is not an agent id (1-128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit)"
        )
    return value


def check_text(value: Any, argument: str, *, limit: int = 10_000, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise BadArgument(argument, f"must be a string, not {type(value).__name__}")
    if not empty and not value.strip():
        raise BadArgument(argument, "must not be empty")
    if len(value) > limit:
        raise BadArgument(argument, f"is {len(value)} characters long; the limit is {limit}")
    return value


def check_names(value: Any, argument: str) -> list[str]:
    """A list of short names (capabilities): strings, no duplicates kept, order kept."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BadArgument(argument, "must be a list of non-empty strings")
    if len(value) > 100:
        raise BadArgument(argument, f"has {len(value)} entries; the limit is 100")
    return list(dict.fromkeys(v.strip() for v in value))


def seconds_since(ts: str | None, now: _dt.datetime) -> float | None:
    if not ts:
        return None
    moment = _dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return max(0.0, (now - moment).total_seconds())


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class AgentDirectory:
    """Registered agents in one store.

    ``circuit``: the engine's circuit-breaker state of an agent (``closed``, ``open``,
    ``half_open``) as the process that executes runs knows it; ``find_agents`` shows it.
    """

    def __init__(self, store: Store, circuit: Callable[[str], str] | None = None) -> None:
        self.store = store
        self.circuit = circuit or (lambda agent_id: "closed")

    # -- registration -------------------------------------------------------------------
    def register(
        self,
        agent_id: str,
        name: str,
        role: str,
        model_type: str = "",
        model_version: str = "",
        capabilities: Sequence[str] | None = None,
        group: str | None = None,
        description: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Create or update a profile; returns it and a fresh token (the old one, if any, stops working)."""
        check_id(agent_id, "id")
        check_text(name, "name", limit=200)
        check_text(role, "role", limit=100)
        check_text(model_type, "model_type", limit=100, empty=True)
        check_text(model_version, "model_version", limit=100, empty=True)
        caps = check_names(capabilities, "capabilities")
        if group is not None:
            check_text(group, "group", limit=100)
        if description is not None:
            check_text(description, "description", empty=True)
        old = self.store.get_agent(agent_id)
        now = now_iso()
        profile = {
            "id": agent_id,
            "name": name,
            "role": role,
            "model_type": model_type,
            "model_version": model_version,
            "capabilities": caps,
            "status": (old or {}).get("status", "available"),
            "current_task": (old or {}).get("current_task"),
            "registered_at": (old or {}).get("registered_at", now),
            "last_heartbeat": now,
            "group": group,
            "description": description,
        }
        token = new_token()
        self.store.put_agent(agent_id, profile)
        self.store.put_token(agent_id, hash_token(token))
        return profile, token

    def deregister(self, agent_id: str) -> bool:
        check_id(agent_id, "agent_id")
        self.store.delete_token(agent_id)
        return self.store.delete_agent(agent_id)

    def rotate_token(self, agent_id: str) -> str:
        self.get(agent_id, "agent_id")
        token = new_token()
        self.store.put_token(agent_id, hash_token(token))
        return token

    def authenticate(self, token: str) -> str | None:
        """The agent this bearer token belongs to, if it still does."""
        if not token.startswith(_TOKEN_PREFIX):
            return None
        agent_id = self.store.agent_for_token(hash_token(token))
        if agent_id is None or self.store.get_agent(agent_id) is None:
            return None
        return agent_id

    # -- reads --------------------------------------------------------------------------
    def get(self, agent_id: str, argument: str = "agent_id") -> dict[str, Any]:
        check_id(agent_id, argument)
        found = self.store.get_agent(agent_id)
        if found is None:
            raise NotFound(f"{argument}: no registered agent {agent_id!r}")
        return self._view(found, utcnow())

    def exists(self, agent_id: str) -> bool:
        return self.store.get_agent(agent_id) is not None

    def all(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [self._view(a, now) for a in self.store.list_agents()]

    def find(
        self,
        capabilities: Sequence[str] | None = None,
        role: str | None = None,
        statuses: Sequence[str] | None = None,
        model_type: str | None = None,
        group: str | None = None,
        active_within_seconds: float | None = None,
    ) -> list[dict[str, Any]]:
        """Agents with every capability asked for, matching each filter given."""
        caps = set(check_names(capabilities, "capabilities"))
        wanted = set(check_names(statuses, "statuses"))
        bad = sorted(wanted - set(STATUSES))
        if bad:
            raise BadArgument("statuses", f"unknown status(es) {', '.join(map(repr, bad))}; known: {', '.join(STATUSES)}")
        if active_within_seconds is not None and (
            isinstance(active_within_seconds, bool)
            or not isinstance(active_within_seconds, int | float)
            or not 0 <= active_within_seconds < 10**9
        ):
            raise BadArgument("active_within_seconds", "must be a number of seconds, 0 or more")
        out = []
        for agent in self.all():
            if caps and not caps <= set(agent["capabilities"]):
                continue
            if role is not None and agent["role"] != role:
                continue
            if wanted and agent["status"] not in wanted:
                continue
            if model_type is not None and agent["model_type"] != model_type:
                continue
            if group is not None and agent.get("group") != group:
                continue
            if active_within_seconds is not None and (
                agent["seconds_since_heartbeat"] is None or agent["seconds_since_heartbeat"] > active_within_seconds
            ):
                continue
            out.append(agent)
        return out

    def _view(self, agent: dict[str, Any], now: _dt.datetime) -> dict[str, Any]:
        view = dict(agent)
        view["seconds_since_heartbeat"] = seconds_since(agent.get("last_heartbeat"), now)
        view["circuit"] = self.circuit(agent["id"])
        return view

    # -- heartbeats -----------------------------------------------------------------------
    def heartbeat(self, agent_id: str, status: str | None = None, current_task: str | None = None) -> dict[str, Any]:
        check_id(agent_id, "agent_id")
        found = self.store.get_agent(agent_id)
        if found is None:
            raise NotFound(f"agent_id: no registered agent {agent_id!r}")
        if status is not None and status not in STATUSES:
            raise BadArgument("status", f"{status!r} is not one of {', '.join(STATUSES)}")
        if current_task is not None:
            check_text(current_task, "current_task", limit=2_000, empty=True)
        found["last_heartbeat"] = now_iso()
        if status is not None:
            found["status"] = status
        if current_task is not None:
            found["current_task"] = current_task or None
        self.store.put_agent(agent_id, {k: v for k, v in found.items() if k != "id"} | {"id": agent_id})
        return self._view(found, utcnow())

    # -- for validation and the engine ------------------------------------------------------
    def specs(self) -> list[AgentSpec]:
        """Registered agents as the engine sees them: pull agents, found by role and capability."""
        return [
            AgentSpec(
                id=a["id"],
                transport=TransportKind.PULL,
                name=a.get("name"),
                role=a.get("role"),
                capabilities=tuple(a.get("capabilities") or ()),
                description=a.get("description"),
                model_type=a.get("model_type") or None,
                model_version=a.get("model_version") or None,
                group=a.get("group"),
                source="registered over MCP",
            )
            for a in self.store.list_agents()
            if a.get("name") is not None  # a profile written by register_agent
        ]
