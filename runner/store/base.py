"""The store's Protocols, one per role, and the few helpers every backend shares.

Events are the write path: ``append(event)`` persists the event *and* updates the derived
run and step rows in one transaction, so a crash never leaves a step row that disagrees
with the event log. The protocols are synchronous on purpose: SQLite and psycopg are
synchronous, and a write must be durable before the engine acts on it.

A store plays seven roles (``RunLog``, ``Leases``, ``Workers``, ``Catalog``, ``Registry``,
``Coordination``, ``Audit``); a part of runner that needs one of them asks for that
Protocol, and ``Store`` is all seven with the connection's own ``close``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from runner.errors import NotFound
from runner.model.events import Event
from runner.model.ids import workflow_hash
from runner.model.records import Assignment, Claim, Claimed, Lease, RunRecord, StepRecord, WorkerRecord, WorkflowRecord


class Catalog(Protocol):
    """Workflows, versioned by content hash."""

    def put_workflow(self, wf: WorkflowRecord) -> WorkflowRecord: ...
    def get_workflow(self, name: str, content_hash: str | None = None) -> WorkflowRecord | None: ...
    def list_workflows(self) -> list[WorkflowRecord]: ...
    def list_workflow_versions(self, name: str) -> list[WorkflowRecord]: ...


class RunLog(Protocol):
    """Runs, their steps and their event log; the lifecycle requests of other processes.

    Every stored event gets a ``seq`` that grows with each append (``get_events_after``).
    """

    url: str
    # False for a store only this process can reach (memory://): nothing another process
    # does (a report, a cancel) can reach a run kept there.
    shared: bool

    def create_run(self, run: RunRecord) -> None: ...
    def append(self, event: Event) -> None: ...
    def append_many(self, events: Sequence[Event], fence: Lease | None = None) -> None:
        """Store ``events`` in one transaction; with ``fence``, only while that lease holds (else ``LeaseLost``)."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...
    def find_run(self, prefix: str) -> RunRecord: ...
    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> list[RunRecord]: ...
    def get_steps(self, run_id: str) -> list[StepRecord]: ...
    def get_step(self, run_id: str, step_id: str) -> StepRecord | None: ...
    def get_events(self, run_id: str) -> list[Event]: ...
    def get_events_after(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 1000
    ) -> list[tuple[int, Event]]: ...

    def get_signals(self, run_id: str, after_seq: int = 0) -> list[tuple[int, Event]]:
        """Reports and cancel requests written into ``run_id``'s log after ``after_seq``."""
        ...

    def list_assignments(self, agent_id: str | None = None, run_id: str | None = None) -> list[Assignment]:
        """Pull steps waiting for a report (of live runs, current attempt), oldest first."""
        ...

    def get_assignment(self, run_id: str, step_id: str, index: int | None = None) -> Assignment | None: ...

    def report_step(
        self,
        run_id: str,
        step_id: str,
        agent_id: str,
        *,
        index: int | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> str:
        """Record an agent's report on a waiting pull step, atomically: ``accepted`` or ``duplicate``.

        ``Refused``/``NotFound`` (nothing written) when the step is not waiting for this agent.
        """
        ...

    def cancel_run(self, run_id: str) -> str:
        """``cancelled`` (queued or interrupted: ended now), ``requested`` (running: the
        executing process will cancel it), ``already`` (cancelled before); ``Refused`` if finished."""
        ...


class Leases(Protocol):
    """Run leases: the process executing a run holds it, so no other process executes it.

    A claim by a new owner starts a new epoch; ``renew_run`` is False once it is lost.
    """

    def claim_run(self, run_id: str, owner: str, ttl_s: float) -> Claim: ...
    def renew_run(self, run_id: str, owner: str, ttl_s: float) -> bool: ...
    def release_run(self, run_id: str, owner: str) -> None: ...


class Workers(Protocol):
    """Scale out: ``runner worker`` processes claim runs and keep one heartbeat each, and agent slots.

    ``claim_next_run`` claims, in one short transaction, the oldest run the worker may
    execute: a queued run, or a run in the workers' care whose lease expired or was handed
    back (never a run an interactive runner holds or left); all of its ``runs_on`` labels
    must be among ``labels``; ``exclude`` names runs this worker gave up on.
    """

    def claim_next_run(
        self, owner: str, labels: Sequence[str], ttl_s: float, exclude: Sequence[str] = ()
    ) -> Claimed | None: ...
    def register_worker(self, worker: WorkerRecord) -> None: ...
    def heartbeat_worker(
        self, worker_id: str, stopped: bool = False, leases: Sequence[tuple[str, Lease]] = (), ttl_s: float = 0.0
    ) -> list[str]:
        """The worker is alive (or stopped), ``leases`` renewed in one statement; returns the runs that lost theirs."""
        ...

    def list_workers(self, limit: int = 100) -> list[WorkerRecord]: ...

    # Agent slots: an agent's ``max_concurrency`` across processes. A slot is held by a
    # run's lease (owner and epoch) and is free again once that lease is gone or expired.
    def take_agent_slot(self, agent_id: str, limit: int, run_id: str, lease: Lease) -> int | None:
        """A free slot among ``limit`` for this run's lease, taken in one short transaction; None: all taken."""
        ...

    def release_agent_slot(self, agent_id: str, slot: int, run_id: str, lease: Lease) -> None: ...
    def agent_slots_held(self, agent_id: str) -> list[tuple[int, str]]: ...


class Registry(Protocol):
    """Agents and their tokens (hashes only; ``delete_agent`` also revokes the token)."""

    def put_agent(self, agent_id: str, data: dict[str, Any]) -> None: ...
    def get_agent(self, agent_id: str) -> dict[str, Any] | None: ...
    def list_agents(self) -> list[dict[str, Any]]: ...
    def delete_agent(self, agent_id: str) -> bool: ...
    def put_token(self, agent_id: str, token_hash: str) -> None: ...
    def get_token_hash(self, agent_id: str) -> str | None: ...
    def agent_for_token(self, token_hash: str) -> str | None: ...
    def delete_token(self, agent_id: str) -> bool: ...


class Coordination(Protocol):
    """Messages, file locks (leases that expire), projects and goals."""

    # ``since``: only messages created after that ISO timestamp
    def add_message(self, sender_id: str, recipient_id: str, content: str, urgent: bool = False) -> dict[str, Any]: ...
    def get_messages(
        self, agent_id: str, since: str | None = None, unread_only: bool = False, mark_read: bool = False
    ) -> list[dict[str, Any]]: ...
    def sent_messages(self, sender_id: str, since: str | None = None) -> list[dict[str, Any]]: ...

    # File locks: leases over normalized glob patterns, one per (pattern, agent); the rules
    # are runner.core.filelocks'. A lock is {file_path, agent_id, exclusive, fencing_token,
    # acquired_at, expires_at}; expired locks are free and never returned.
    def acquire_lock(self, file_path: str, agent_id: str, exclusive: bool, ttl_s: float) -> dict[str, Any]:
        """Grant atomically across processes, or refuse and change nothing.

        ``{"granted": True, "renewed": bool, "lock": lock}``: a new lock gets the next
        fencing token of its pattern; the agent's own live lock on the same pattern is
        extended (``renewed``, same token). ``{"granted": False, "conflicts": [lock]}``.
        """
        ...

    def renew_lock(self, file_path: str, agent_id: str, ttl_s: float) -> dict[str, Any] | None:
        """The agent's live lock on the pattern, extended (same token); None if it holds none."""
        ...

    def release_lock(self, file_path: str, agent_id: str, force: bool = False) -> list[dict[str, Any]]:
        """Drop the agent's lock on the pattern (``force``: every holder's); the live locks dropped."""
        ...

    def list_locks(self) -> list[dict[str, Any]]:
        """Every live lock, by pattern then agent."""
        ...

    def create_project(
        self, name: str, description: str = "", lead_agent_id: str | None = None, status: str = "active"
    ) -> dict[str, Any]: ...
    def get_project(self, project_id: str) -> dict[str, Any] | None: ...
    def list_projects(self) -> list[dict[str, Any]]: ...
    def create_goal(
        self, name: str, description: str = "", project_id: str | None = None, status: str = "pending"
    ) -> dict[str, Any]: ...
    def get_goal(self, goal_id: str) -> dict[str, Any] | None: ...
    def list_goals(self, project_id: str | None = None) -> list[dict[str, Any]]: ...

    # Small typed documents of the coordination tools (collaboration sessions,
    # assistance requests, evaluations, delegated tasks): ``kind`` names the collection.
    def put_record(self, kind: str, record_id: str, data: dict[str, Any]) -> None: ...
    def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...
    def list_records(self, kind: str, limit: int = 1000) -> list[dict[str, Any]]: ...


class Audit(Protocol):
    """The audit log of significant actions."""

    def add_audit(
        self, actor: str, action: str, target: str | None = None, detail: dict[str, Any] | None = None
    ) -> int: ...
    def list_audit(
        self, actor: str | None = None, action: str | None = None, limit: int = 100, since: str | None = None
    ) -> list[dict[str, Any]]: ...


@runtime_checkable
class Store(RunLog, Leases, Workers, Catalog, Registry, Coordination, Audit, Protocol):
    """All seven roles in one durable home (memory, SQLite or PostgreSQL)."""

    def schema_version(self) -> int: ...
    def close(self) -> None: ...


def content_hash_of(wf: WorkflowRecord) -> str:
    """``wf.content_hash``, or when left empty the hash of its source text."""
    return wf.content_hash or workflow_hash(wf.source_text)


def require_run(store: Store, run_id: str) -> RunRecord:
    """``store.get_run`` for callers that need the run: an unknown id is ``NotFound`` (exit 2)."""
    run = store.get_run(run_id)
    if run is None:
        raise NotFound.run(run_id, store.url)
    return run


def pick_run_id(url: str, prefix: str, candidates: Sequence[str]) -> str:
    """The one run id among ``candidates`` (ids starting with ``prefix``), else ``NotFound``."""
    if len(candidates) == 1 and prefix:
        return candidates[0]
    if not candidates or not prefix:
        raise NotFound.run(prefix, url)
    shown = ", ".join(sorted(candidates)[:5])
    raise NotFound(
        f"run id prefix {prefix!r} is ambiguous in {url}: matches {shown}{', …' if len(candidates) > 5 else ''}"
    )


__all__: Sequence[str] = [
    "Assignment",
    "Audit",
    "Catalog",
    "Claim",
    "Claimed",
    "Coordination",
    "Lease",
    "Leases",
    "Registry",
    "RunLog",
    "RunRecord",
    "StepRecord",
    "Store",
    "WorkerRecord",
    "Workers",
    "WorkflowRecord",
    "content_hash_of",
    "pick_run_id",
    "require_run",
]
