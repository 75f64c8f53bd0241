"""The Store protocol: one durable home for agents, workflows, runs, steps and events.

Events are the write path: ``append(event)`` persists the event *and* updates the derived
run and step rows in one transaction, so a crash never leaves a step row that disagrees
with the event log. Reads (``get_run``, ``get_steps``) serve history, ``runs show`` and
resume. The protocol is synchronous on purpose: SQLite and psycopg are synchronous, and a
write must be durable before the engine acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class Store(Protocol):
    """What the engine, the CLI and the MCP server need from persistence."""

    url: str

    # workflows (versioned by content hash)
    def put_workflow(self, wf: WorkflowRecord) -> WorkflowRecord: ...
    def get_workflow(self, name: str, content_hash: str | None = None) -> WorkflowRecord | None: ...
    def list_workflows(self) -> list[WorkflowRecord]: ...

    # runs
    def create_run(self, run: RunRecord) -> None: ...
    def append(self, event: Event) -> None: ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> list[RunRecord]: ...
    def get_steps(self, run_id: str) -> list[StepRecord]: ...
    def get_events(self, run_id: str) -> list[Event]: ...

    # agents (registry)
    def put_agent(self, agent_id: str, data: dict[str, Any]) -> None: ...
    def get_agent(self, agent_id: str) -> dict[str, Any] | None: ...
    def list_agents(self) -> list[dict[str, Any]]: ...
    def delete_agent(self, agent_id: str) -> bool: ...

    def close(self) -> None: ...


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


__all__: Sequence[str] = ["RunRecord", "StepRecord", "WorkflowRecord", "Store", "open_store"]
