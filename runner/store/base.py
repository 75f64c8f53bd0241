"""The Store protocol: one durable home for agents, workflows, runs, steps and events.

Events are the write path: ``append(event)`` persists the event *and* updates the derived
run and step rows in one transaction, so a crash never leaves a step row that disagrees
with the event log. Reads (``get_run``, ``get_steps``) serve history, ``runs show`` and
resume. The protocol is synchronous on purpose: SQLite and psycopg are synchronous, and a
write must be durable before the engine acts on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from runner.events import Event


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


@runtime_checkable
class Store(Protocol):
    """What the engine, the CLI and the MCP server need from persistence."""

    url: str
    # False for a store only this process can reach (memory://): nothing another process
    # does (a report, a cancel) can reach a run kept there.
    shared: bool

    # workflows (versioned by content hash)
    def put_workflow(self, wf: WorkflowRecord) -> WorkflowRecord: ...
    def get_workflow(self, name: str, content_hash: str | None = None) -> WorkflowRecord | None: ...
    def list_workflows(self) -> list[WorkflowRecord]: ...

    # runs
    def create_run(self, run: RunRecord) -> None: ...
    def append(self, event: Event) -> None: ...
    def append_many(self, events: Sequence[Event], fence: Lease | None = None) -> None:
        """Store ``events`` in one transaction; with ``fence``, only while that lease holds (else ``LeaseLost``)."""
        ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> list[RunRecord]: ...
    def get_steps(self, run_id: str) -> list[StepRecord]: ...
    def get_events(self, run_id: str) -> list[Event]: ...

    # run leases: the process executing a run holds it, so no other process resumes it.
    # A claim by a new owner starts a new epoch; ``renew_run`` is False once it is lost.
    def claim_run(self, run_id: str, owner: str, ttl_s: float) -> Claim: ...
    def renew_run(self, run_id: str, owner: str, ttl_s: float) -> bool: ...
    def release_run(self, run_id: str, owner: str) -> None: ...

    # the run lifecycle across processes
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

    # agents (registry)
    def put_agent(self, agent_id: str, data: dict[str, Any]) -> None: ...
    def get_agent(self, agent_id: str) -> dict[str, Any] | None: ...
    def list_agents(self) -> list[dict[str, Any]]: ...
    def delete_agent(self, agent_id: str) -> bool: ...

    def close(self) -> None: ...

    # --- added with the durable stores -------------------------------------------------
    # Every stored event gets a ``seq`` that grows with each append (``get_events_after``).
    def schema_version(self) -> int: ...
    def list_workflow_versions(self, name: str) -> list[WorkflowRecord]: ...
    def find_run(self, prefix: str) -> RunRecord: ...
    def get_step(self, run_id: str, step_id: str) -> StepRecord | None: ...
    def get_events_after(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 1000
    ) -> list[tuple[int, Event]]: ...

    # messages (``since``: only messages created after that ISO timestamp)
    def add_message(self, sender_id: str, recipient_id: str, content: str, urgent: bool = False) -> dict[str, Any]: ...
    def get_messages(
        self, agent_id: str, since: str | None = None, unread_only: bool = False, mark_read: bool = False
    ) -> list[dict[str, Any]]: ...
    def sent_messages(self, sender_id: str, since: str | None = None) -> list[dict[str, Any]]: ...

    # file locks: leases that expire; ``acquire_lock`` renews a lease its holder already has
    def acquire_lock(self, file_path: str, agent_id: str, ttl_s: float) -> bool: ...
    def release_lock(self, file_path: str, agent_id: str, force: bool = False) -> bool: ...
    def get_lock(self, file_path: str) -> dict[str, Any] | None: ...

    # projects and goals
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

    # audit log
    def add_audit(
        self, actor: str, action: str, target: str | None = None, detail: dict[str, Any] | None = None
    ) -> int: ...
    def list_audit(
        self, actor: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    # agent tokens (hashes only; ``delete_agent`` also revokes the agent's token)
    def put_token(self, agent_id: str, token_hash: str) -> None: ...
    def get_token_hash(self, agent_id: str) -> str | None: ...
    def agent_for_token(self, token_hash: str) -> str | None: ...
    def delete_token(self, agent_id: str) -> bool: ...


def content_hash_of(wf: WorkflowRecord) -> str:
    """``wf.content_hash``, or when left empty the loader's hash of its source text."""
    if wf.content_hash:
        return wf.content_hash
    from runner.loader import workflow_hash  # the one definition of a workflow's version hash

    return workflow_hash(wf.source_text)


def _pid_namespace() -> str:
    """This process's PID namespace (``4026531836``), or "" where /proc cannot tell."""
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return link.rsplit("[", 1)[-1].rstrip("]")


def lease_owner_id() -> str:
    """Who executes a run: ``host:pid:nonce:pidns``.

    The nonce tells two engines of one process apart; the PID namespace tells a container
    that shares the host's name (``--network host``) from the host, whose PIDs differ.
    """
    import socket
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie, killed but unreaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def lease_is_free(holder: str | None, until: str | None, claimant: str) -> bool:
    """May ``claimant`` take a run whose lease is held by ``holder`` until ``until``?

    Yes when nobody holds it, the claimant already does, the lease has expired, or the
    holder is a process on this host that no longer exists (a runner killed with SIGKILL
    must be resumable at once, not only after its lease runs out).
    """
    if not holder or holder == claimant:
        return True
    from runner.events import now_iso

    if until is None or until < now_iso():
        return True
    import socket

    parts = holder.split(":")
    if len(parts) < 4 or not parts[1].isdigit():
        return False  # not an id this runner writes: wait for the lease to expire
    host, pid_text, ns = parts[0], parts[1], parts[3]
    if host == socket.gethostname() and ns and ns == _pid_namespace():
        return not _pid_alive(int(pid_text))
    return False


LEASE_TTL_S = 30.0  # a run's lease; its holder renews it every lease_ttl() / 3


def lease_ttl() -> float:
    """The run lease's lifetime: ``RUNNER_LEASE_TTL`` seconds (tests shorten it), else 30 s."""
    raw = os.environ.get("RUNNER_LEASE_TTL")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0 and value == value and value < 86400 * 365:
            return value
        from runner.errors import InputInvalid

        raise InputInvalid(f"RUNNER_LEASE_TTL: expected a positive number of seconds, got {raw!r}")
    return LEASE_TTL_S


def take_lease(store: Store, run_id: str) -> Lease:
    """Claim ``run_id`` for this process; ``RunBusy`` if a live runner holds it."""
    from runner.errors import RunBusy

    claim = store.claim_run(run_id, lease_owner_id(), lease_ttl())
    if claim.lease is None:
        raise RunBusy(
            f"run {run_id} is being executed by another runner ({claim.holder}); "
            "wait for it to finish or stop it, then resume"
        )
    return claim.lease


def require_run(store: Store, run_id: str) -> RunRecord:
    """``store.get_run`` for callers that need the run: an unknown id is ``NotFound`` (exit 2)."""
    run = store.get_run(run_id)
    if run is None:
        from runner.errors import NotFound

        raise NotFound(f"no run with id {run_id!r} in {store.url}")
    return run


def pick_run_id(url: str, prefix: str, candidates: Sequence[str]) -> str:
    """The one run id among ``candidates`` (ids starting with ``prefix``), else ``NotFound``."""
    from runner.errors import NotFound

    if len(candidates) == 1 and prefix:
        return candidates[0]
    if not candidates or not prefix:
        raise NotFound(f"no run with id {prefix!r} in {url}")
    shown = ", ".join(sorted(candidates)[:5])
    raise NotFound(
        f"run id prefix {prefix!r} is ambiguous in {url}: matches {shown}{', …' if len(candidates) > 5 else ''}"
    )


def open_store(url: str) -> Store:
    """Open a store by URL: ``memory://``, ``sqlite:///rel/path``, ``sqlite:////abs``, ``postgresql://…``."""
    if url.startswith("memory:"):
        from runner.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:"):
        from runner.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from runner.store.postgres import PostgresStore

        return PostgresStore(url)
    from runner.errors import InputInvalid

    raise InputInvalid(f"--store: unsupported store URL {url!r} (use memory://, sqlite:///PATH or postgresql://…)")


__all__: Sequence[str] = [
    "Assignment",
    "Claim",
    "Lease",
    "lease_ttl",
    "RunRecord",
    "StepRecord",
    "WorkflowRecord",
    "Store",
    "open_store",
    "require_run",
    "pick_run_id",
    "content_hash_of",
    "lease_is_free",
    "lease_owner_id",
    "take_lease",
    "LEASE_TTL_S",
]
