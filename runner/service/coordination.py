"""Messages, collaboration sessions, assistance requests, evaluations, projects, goals and
the anti-jam checks, computed from what the store holds.

Nothing here is canned: a message is a stored row that its recipient reads once; an
assistance request reaches the agents that have the capabilities asked for and answer
heartbeats; the anti-jam checks count real heartbeats and real messages over the window
the caller gives. Identity and permissions are the server's job; this layer checks that
the agents named exist and that every argument is sane (``BadArgument`` names the one at
fault, before anything is written).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Sequence
from typing import Any

from runner.errors import BadArgument, NotFound
from runner.model.events import now_iso
from runner.service.registry import AgentDirectory, check_id, check_names, check_text, seconds_since, utcnow
from runner.store.base import Store

URGENCIES = ("low", "normal", "high", "critical")
OPERATOR = "operator"


def check_seconds(value: Any, argument: str, *, minimum: float = 0.0, maximum: float = 30 * 86400) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadArgument(argument, f"must be a number of seconds, not {value!r}")
    if not minimum <= value <= maximum:
        raise BadArgument(argument, f"must be between {minimum:g} and {maximum:g} seconds, not {value:g}")
    return float(value)


def iso_ago(seconds: float) -> str:
    return (utcnow() - _dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Coordination:
    """The coordination and anti-jam tools over one store and its agent registry."""

    def __init__(self, store: Store, agents: AgentDirectory) -> None:
        self.store = store
        self.agents = agents

    def _known(self, agent_id: Any, argument: str) -> str:
        check_id(agent_id, argument)
        if agent_id != OPERATOR and not self.agents.exists(agent_id):
            raise NotFound(f"{argument}: no registered agent {agent_id!r}")
        return str(agent_id)

    # -- messages -----------------------------------------------------------------------------
    def send_message(self, sender_id: str, recipient_id: str, content: str, urgent: bool = False) -> dict[str, Any]:
        self._known(sender_id, "sender_id")
        self._known(recipient_id, "recipient_id")
        check_text(content, "content", limit=100_000)
        if not isinstance(urgent, bool):
            raise BadArgument("urgent", "must be true or false")
        message = self.store.add_message(sender_id, recipient_id, content, urgent)
        return {"message": message, "recipient": self._presence(recipient_id)}

    def get_messages(self, agent_id: str, since: str | None = None, unread_only: bool = False) -> list[dict[str, Any]]:
        """The agent's messages, oldest first; those returned are marked read."""
        self._known(agent_id, "agent_id")
        if since is not None:
            check_text(since, "since", limit=64)
        if not isinstance(unread_only, bool):
            raise BadArgument("unread_only", "must be true or false")
        try:
            return self.store.get_messages(agent_id, since=since, unread_only=unread_only, mark_read=True)
        except Exception as exc:  # an unparsable `since` is the caller's mistake
            if "since" in str(exc):
                raise BadArgument("since", str(exc)) from None
            raise

    def _presence(self, agent_id: str) -> dict[str, Any]:
        if agent_id == OPERATOR:
            return {"agent_id": agent_id, "status": "available", "seconds_since_heartbeat": None}
        agent = self.agents.get(agent_id)
        return {
            "agent_id": agent_id,
            "status": agent["status"],
            "seconds_since_heartbeat": agent["seconds_since_heartbeat"],
            "circuit": agent["circuit"],
        }

    # -- sessions, assistance, evaluations -------------------------------------------------------
    def create_session(
        self, title: str, description: str, participant_model_ids: Sequence[str], coordinator_model_id: str
    ) -> dict[str, Any]:
        check_text(title, "title", limit=500)
        check_text(description, "description", empty=True)
        coordinator = self._known(coordinator_model_id, "coordinator_model_id")
        participants = check_names(list(participant_model_ids) if isinstance(participant_model_ids, list | tuple) else participant_model_ids, "participant_model_ids")
        if not participants:
            raise BadArgument("participant_model_ids", "must name at least one agent")
        for p in participants:
            self._known(p, "participant_model_ids")
        session: dict[str, Any] = {
            "session_id": "sess_" + os.urandom(8).hex(),
            "title": title,
            "description": description,
            "coordinator_model_id": coordinator,
            "participant_model_ids": participants,
            "status": "active",
            "created_at": now_iso(),
        }
        self.store.put_record("session", session["session_id"], session)
        for p in participants:
            if p != coordinator:
                self.store.add_message(
                    coordinator,
                    p,
                    f"[session {session['session_id']}] You were added to '{title}' by {coordinator}: {description}",
                )
        return session

    def request_assistance(
        self,
        requesting_agent_id: str,
        task_description: str,
        target_agent_id: str | None = None,
        required_capabilities: Sequence[str] | None = None,
        urgency: str | None = None,
    ) -> dict[str, Any]:
        requester = self._known(requesting_agent_id, "requesting_agent_id")
        check_text(task_description, "task_description", limit=100_000)
        caps = check_names(required_capabilities, "required_capabilities")
        level = urgency or "normal"
        if level not in URGENCIES:
            raise BadArgument("urgency", f"{urgency!r} is not one of {', '.join(URGENCIES)}")
        if target_agent_id is not None:
            target = self._known(target_agent_id, "target_agent_id")
            if target == requester:
                raise BadArgument("target_agent_id", "an agent cannot ask itself for assistance")
            recipients = [target]
            missing = sorted(set(caps) - set(self.agents.get(target)["capabilities"])) if target != OPERATOR else []
        else:
            missing = []
            found = self.agents.find(capabilities=caps, statuses=["available", "idle", "working"])
            found = [a for a in found if a["id"] != requester and a["circuit"] != "open"]
            # The freshest heartbeats first: an agent that answers is worth more than one that might.
            found.sort(key=lambda a: (a["seconds_since_heartbeat"] is None, a["seconds_since_heartbeat"] or 0, a["id"]))
            recipients = [a["id"] for a in found[:5]]
        request: dict[str, Any] = {
            "request_id": "help_" + os.urandom(8).hex(),
            "requesting_agent_id": requester,
            "task_description": task_description,
            "required_capabilities": caps,
            "urgency": level,
            "recipients": recipients,
            "status": "sent" if recipients else "no_candidates",
            "created_at": now_iso(),
        }
        if missing:
            request["warning"] = f"{recipients[0]} lacks capabilities: {', '.join(missing)}"
        self.store.put_record("assistance", request["request_id"], request)
        for r in recipients:
            self.store.add_message(
                requester,
                r,
                f"[assistance {request['request_id']}] ({level}) {task_description}",
                urgent=level in ("high", "critical"),
            )
        return request

    def evaluate_contribution(
        self,
        evaluating_agent_id: str,
        contributing_agent_id: str,
        contribution_ref: str,
        evaluation_criteria: dict[str, Any] | None = None,
        comments: str | None = None,
    ) -> dict[str, Any]:
        evaluator = self._known(evaluating_agent_id, "evaluating_agent_id")
        contributor = self._known(contributing_agent_id, "contributing_agent_id")
        if evaluator == contributor:
            raise BadArgument("contributing_agent_id", "an agent cannot evaluate its own contribution")
        check_text(contribution_ref, "contribution_ref", limit=2_000)
        criteria = evaluation_criteria or {}
        if not isinstance(criteria, dict):
            raise BadArgument("evaluation_criteria", "must be an object of criterion -> score (number) or note (string)")
        scores: dict[str, float] = {}
        for name, value in criteria.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise BadArgument("evaluation_criteria", f"criterion {name!r}: a score must be a finite number or a note a string")
            if not isinstance(value, str):
                scores[name] = float(value)
        if comments is not None:
            check_text(comments, "comments", limit=20_000, empty=True)
        evaluation: dict[str, Any] = {
            "evaluation_id": "eval_" + os.urandom(8).hex(),
            "evaluating_agent_id": evaluator,
            "contributing_agent_id": contributor,
            "contribution_ref": contribution_ref,
            "evaluation_criteria": criteria,
            "overall_score": round(sum(scores.values()) / len(scores), 4) if scores else None,
            "comments": comments,
            "created_at": now_iso(),
        }
        self.store.put_record("evaluation", evaluation["evaluation_id"], evaluation)
        history = [e for e in self.store.list_records("evaluation", limit=100_000) if e["contributing_agent_id"] == contributor]
        rated = [e["overall_score"] for e in history if e.get("overall_score") is not None]
        evaluation["contributor_average_score"] = round(sum(rated) / len(rated), 4) if rated else None
        evaluation["contributor_evaluations"] = len(history)
        return evaluation

    # -- anti-jam -----------------------------------------------------------------------------------
    def agent_responsiveness(self, agent_id: str, threshold_seconds: float) -> dict[str, Any]:
        limit = check_seconds(threshold_seconds, "threshold_seconds", minimum=0.001)
        agent = self.agents.get(agent_id)
        age = agent["seconds_since_heartbeat"]
        responsive = age is not None and age <= limit and agent["status"] not in ("offline", "error")
        reason = (
            "no heartbeat recorded" if age is None
            else f"last heartbeat {age:.1f}s ago (threshold {limit:g}s)" if age > limit
            else f"status is {agent['status']}" if not responsive
            else f"heartbeat {age:.1f}s ago"
        )
        if agent["circuit"] != "closed":
            reason += f"; the engine's circuit for it is {agent['circuit']}"
        return {
            "agent_id": agent_id,
            "responsive": responsive and agent["circuit"] != "open",
            "status": agent["status"],
            "seconds_since_heartbeat": age,
            "threshold_seconds": limit,
            "circuit": agent["circuit"],
            "reason": reason,
        }

    def recipient_status(
        self, sender_id: str, time_window_seconds: float, responsiveness_threshold_seconds: float
    ) -> dict[str, Any]:
        sender = self._known(sender_id, "sender_id")
        window = check_seconds(time_window_seconds, "time_window_seconds", minimum=0.001)
        limit = check_seconds(responsiveness_threshold_seconds, "responsiveness_threshold_seconds", minimum=0.001)
        sent = self.store.sent_messages(sender, since=iso_ago(window))
        now = utcnow()
        by_recipient: dict[str, list[dict[str, Any]]] = {}
        for m in sent:
            by_recipient.setdefault(m["recipient_id"], []).append(m)
        recipients: list[dict[str, Any]] = []
        for rid, msgs in sorted(by_recipient.items()):
            agent = self.store.get_agent(rid)
            unread = [m for m in msgs if m["read_at"] is None]
            age = seconds_since(agent.get("last_heartbeat"), now) if agent else None
            oldest_unread = max((seconds_since(m["created_at"], now) or 0.0 for m in unread), default=0.0)
            responsive = (
                agent is not None
                and age is not None
                and age <= limit
                and agent.get("status") not in ("offline", "error")
                and oldest_unread <= limit
            )
            recipients.append(
                {
                    "recipient_id": rid,
                    "registered": agent is not None,
                    "status": agent.get("status") if agent else None,
                    "messages_sent": len(msgs),
                    "unread": len(unread),
                    "oldest_unread_seconds": round(oldest_unread, 3) if unread else None,
                    "seconds_since_heartbeat": age,
                    "responsive": responsive,
                }
            )
        stuck = [r["recipient_id"] for r in recipients if not r["responsive"]]
        return {
            "sender_id": sender,
            "time_window_seconds": window,
            "responsiveness_threshold_seconds": limit,
            "recipients": recipients,
            "unresponsive": stuck,
            "advice": (
                f"stop waiting on {', '.join(stuck)}: reassign or pick another agent with find_agents"
                if stuck else "every recipient is responsive"
            ),
        }

    def message_frequency(self, agent_id: str, time_window_seconds: float, frequency_threshold: int) -> dict[str, Any]:
        sender = self._known(agent_id, "agent_id")
        window = check_seconds(time_window_seconds, "time_window_seconds", minimum=0.001)
        if isinstance(frequency_threshold, bool) or not isinstance(frequency_threshold, int) or frequency_threshold < 1:
            raise BadArgument("frequency_threshold", "must be a whole number of messages, 1 or more")
        sent = self.store.sent_messages(sender, since=iso_ago(window))
        per_recipient: dict[str, int] = {}
        for m in sent:
            per_recipient[m["recipient_id"]] = per_recipient.get(m["recipient_id"], 0) + 1
        flooding = len(sent) > frequency_threshold
        return {
            "agent_id": sender,
            "time_window_seconds": window,
            "message_count": len(sent),
            "frequency_threshold": frequency_threshold,
            "messages_per_minute": round(len(sent) * 60.0 / window, 3),
            "per_recipient": per_recipient,
            "flooding": flooding,
            "warning": (
                f"{sender} sent {len(sent)} messages in {window:g}s (threshold {frequency_threshold}): possible flooding or a loop"
                if flooding else None
            ),
        }

    # -- projects and goals ---------------------------------------------------------------------------
    def create_project(
        self, name: str, description: str, lead_agent_id: str | None = None, initial_status: str | None = None
    ) -> dict[str, Any]:
        check_text(name, "name", limit=500)
        check_text(description, "description", empty=True)
        if lead_agent_id is not None:
            self._known(lead_agent_id, "lead_agent_id")
        status = check_text(initial_status, "initial_status", limit=50) if initial_status is not None else "active"
        return self.store.create_project(name, description, lead_agent_id, status)

    def create_goal(
        self, name: str, description: str, project_id: str | None = None, initial_status: str | None = None
    ) -> dict[str, Any]:
        check_text(name, "name", limit=500)
        check_text(description, "description", empty=True)
        status = check_text(initial_status, "initial_status", limit=50) if initial_status is not None else "pending"
        if project_id is not None:
            check_text(project_id, "project_id", limit=100)
            if self.store.get_project(project_id) is None:
                raise NotFound(f"project_id: no project {project_id!r}")
        return self.store.create_goal(name, description, project_id, status)
