"""What the store holds, as typed records: runs, steps, workflow versions, assignments, leases.

Plain dataclasses shared by every store backend, the pure projection and the service
layer; JSON-like values only, so any backend can keep them as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass
class RunRecord:
    run_id: str
    workflow_name: str
    workflow_hash: str
    status: str = "pending"
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    started_at: str | None = None  # ISO 8601 UTC
    finished_at: str | None = None
    source: str | None = None  # workflow file path, if any
    attempt: int = 1  # incremented by `runner retry`
    parent_run_id: str | None = None


@dataclass
class StepRecord:
    run_id: str
    step_id: str
    status: str = "pending"
    attempts: int = 0
    agent_id: str | None = None
    result: Any = None
    text: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    content: list[Any] | None = None  # the tool's content blocks (steps.<id>.content)
    items: dict[int, Any] = field(default_factory=dict)  # for_each: index -> item result (completed items)


@dataclass
class WorkflowRecord:
    name: str
    content_hash: str
    source_text: str
    version: int = 1
    created_at: str | None = None
    creator_id: str | None = None
    agent_modifiable: bool = False
    origin: str = "operator"  # "operator" (files, CLI) or "mcp"


@dataclass
class Assignment:
    """A pull step waiting for (or answered by) its agent's report: one row per step or item."""

    run_id: str
    step_id: str
    index: int | None
    agent_id: str | None
    attempt: int
    arguments: Any = None
    assigned_at: str = ""
    deadline: str | None = None  # ISO 8601 UTC; a report after it is refused
    status: str = "waiting"  # waiting | completed | failed
    reported_at: str | None = None
    reported_by: str | None = None
    report: dict[str, Any] | None = None  # {"result": …} or {"error": "…"}
    workflow_name: str | None = None  # filled by listings


class Lease(NamedTuple):
    """Who executes a run, and which claim of it: every write of that process is fenced by both."""

    owner: str
    epoch: int


class Claim(NamedTuple):
    """The answer to ``claim_run``: the new lease, or (``lease`` None) the live holder."""

    lease: Lease | None
    holder: str | None = None
