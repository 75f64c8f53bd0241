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
    runs_on: list[str] | None = None  # labels a worker must have to claim the run (`runs_on:`)
    worker: str | None = None  # the worker that last claimed it (None: not in the workers' care)


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


class Claimed(NamedTuple):
    """A run a worker claimed with ``claim_next_run``: its id, the lease, and whether it was
    taken over from a worker whose lease ran out (or that handed it back) rather than queued."""

    run_id: str
    lease: Lease
    recovered: bool = False


@dataclass
class WorkerRecord:
    """A ``runner worker`` process (or ``runner serve`` executing queued runs) in the workers table."""

    worker_id: str  # the owner id of the leases it takes (``host:pid:nonce:pidns``)
    host: str
    pid: int
    labels: list[str] = field(default_factory=list)
    concurrency: int = 1
    started_at: str = ""
    heartbeat_at: str = ""
    ttl_s: float = 30.0  # its heartbeat is stale once older than this
    stopped_at: str | None = None
    runs_held: int = 0  # filled by listings: runs whose lease it holds now


class Claim(NamedTuple):
    """The answer to ``claim_run``: the new lease, or (``lease`` None) the live holder."""

    lease: Lease | None
    holder: str | None = None
