"""The workflow model: frozen dataclasses and string enums, no I/O.

Field names follow the seed (``step_id``, ``assigned_role``, ``assigned_agent_id``,
``depends_on``, ``tool_to_call``, ``tool_arguments``) so a workflow read from YAML, sent
over MCP, or stored, speaks one vocabulary. Everything here is immutable: the scheduler,
engine and store share these objects without copying.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from runner.model.frozen import quick_init


class StrEnum(str, Enum):
    """``enum.StrEnum`` spelled so it behaves the same on 3.10."""

    def __str__(self) -> str:
        return str(self.value)


class StepStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.IN_PROGRESS)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # Ctrl-C or a lost runner: not an ending, `runner resume` continues it

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.INTERRUPTED)


class TransportKind(StrEnum):
    STDIO = "stdio"
    HTTP = "http"
    INPROCESS = "inprocess"
    PULL = "pull"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


MAX_DURATION = 1_000_000_000
"""Largest duration given as a number of seconds (~31 years; the schema's ``maximum``)."""


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: object) -> float:
    """``500ms``, ``30s``, ``10m``, ``1h`` or a number of seconds → seconds (float).

    Raises ValueError with a message fit for a validation error.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        if not value <= MAX_DURATION:  # also NaN; and a huge int never reaches float()
            raise ValueError(f"invalid duration {_preview(value)}: at most {MAX_DURATION:g} seconds")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and len(m.group(1)) <= 20:
            seconds = float(m.group(1)) * _UNIT[m.group(2)]
            if seconds <= MAX_DURATION * 3600:  # the schema allows 9 digits of hours
                return seconds
    raise ValueError(f"invalid duration {_preview(value)}: use e.g. 500ms, 30s, 10m, 1h or seconds")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing step is tried again."""

    max_attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0  # fraction of the delay, 0..1, added at random

    def delay_before(self, attempt: int) -> float:
        """Delay (seconds, without jitter) before ``attempt`` (2 = first retry)."""
        d = self.delay * (self.backoff ** max(0, attempt - 2))
        if self.max_delay is not None:
            d = min(d, self.max_delay)
        return d


@dataclass(frozen=True)
class AgentSpec:
    """An agent: an MCP server the runner dispatches steps to (seed ``RegisteredAgent``)."""

    id: str
    transport: TransportKind = TransportKind.STDIO
    name: str | None = None
    role: str | None = None
    capabilities: tuple[str, ...] = ()
    description: str | None = None
    # stdio
    command: str | None = None
    args: tuple[Any, ...] = ()
    env: Mapping[str, Any] = field(default_factory=dict)
    cwd: str | None = None
    # http
    url: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    # inprocess: "package.module:attribute" naming an MCPServer (or a zero-arg factory)
    module: str | None = None
    max_concurrency: int | None = None
    required: bool | None = None  # True: fail the run if unreachable; None: only if a step needs it
    timeout: float | None = None  # connect timeout, seconds
    model_type: str | None = None
    model_version: str | None = None
    group: str | None = None
    source: str | None = None  # file that declared it (for messages)

    @property
    def label(self) -> str:
        return self.name or self.id


@quick_init  # built once per step of every workflow: its fields are set in one go
@dataclass(frozen=True)
class StepSpec:
    """One step of a workflow (seed ``WorkflowStep`` plus the runner's control fields)."""

    step_id: str
    description: str | None = None
    assigned_role: str | None = None
    assigned_agent_id: str | None = None
    required_capabilities: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    tool_to_call: str | None = None
    tool_arguments: Any = None
    condition: str | None = None  # YAML key `if`
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    continue_on_error: bool = False
    for_each: Any = None  # a template string or a literal list
    max_parallel: int | None = None
    fallback_agents: tuple[str, ...] = ()
    uses: str | None = None
    with_: Mapping[str, Any] = field(default_factory=dict)  # YAML key `with`
    is_finally: bool = False
    # YAML key `workflow`: a callee written in place, as validated plain data. The built
    # callee is ``Workflow.children[step_id]``, exactly as for ``uses:``, so the engine
    # runs both the same way; this keeps what was written (two steps differ if it does).
    inline: Mapping[str, Any] | None = None

    @property
    def calls_workflow(self) -> bool:
        """Whether the step runs a nested workflow (``uses:`` or an inline ``workflow:``)."""
        return self.uses is not None or self.inline is not None

    @property
    def is_pull(self) -> bool:
        return self.tool_to_call is None and not self.calls_workflow


@dataclass(frozen=True)
class Workflow:
    """A validated workflow. ``steps`` are in file order; ``finally_steps`` run after the DAG."""

    name: str
    steps: tuple[StepSpec, ...]
    description: str | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)  # name -> JSON Schema
    agents: tuple[AgentSpec, ...] = ()
    concurrency: int = 16
    timeout: float | None = None
    runs_on: tuple[str, ...] = ()  # labels a `runner worker` must have to claim its runs
    finally_steps: tuple[StepSpec, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)
    agent_modifiable: bool = False
    source: str | None = None  # the file it was read from
    source_text: str | None = None  # exact text, for content hashing and resume checks
    warnings: tuple[Any, ...] = ()  # validation Problems of severity "warning" (they never block a run)
    # step_id -> the workflow its `uses:` calls, loaded with this one (the engine reads no files)
    children: Mapping[str, Workflow] = field(default_factory=dict)
    # step_id -> (field, template) pairs of a templated ``timeout``, ``retry.max_attempts`` or
    # ``retry.delay``: the step's fields hold their defaults until ``instantiate`` renders them.
    # Kept here, not on StepSpec: a field more on every step is paid by every step built.
    step_templates: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # step_id -> the selection fields / ``tool_to_call`` whose templates read ``item``, ``index``,
    # ``previous`` or ``steps``: set by ``instantiate``; the engine renders them per task.
    per_task: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def step(self, step_id: str) -> StepSpec:
        for s in self.steps:
            if s.step_id == step_id:
                return s
        for s in self.finally_steps:
            if s.step_id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def all_steps(self) -> tuple[StepSpec, ...]:
        return self.steps + self.finally_steps


# What a template may read of a step: steps.<id>.<one of these> (the keys of StepOutcome.view).
STEP_ATTRIBUTES = ("result", "text", "content", "status", "error", "attempts", "agent_id")

_STATUS_OF: dict[str, StepStatus] = {s.value: s for s in StepStatus}


class StepOutcome:
    """Everything one step of a run has done so far: the one copy of that state.

    The seven fields templates see as ``steps.<id>`` (SPEC §2: ``result``, ``text``,
    ``content``, ``status``, ``error``, ``attempts``, ``agent_id``) live only in
    :attr:`view`, a plain dict that the template context holds by reference; the
    attributes of the same names read and write it. The scheduler's per-step record
    (``core.scheduler``) extends this class, so a step's progress, its outcome and its
    template view are one object, not three kept in step with each other.
    """

    __slots__ = ("view", "started_at", "finished_at")

    def __init__(
        self,
        status: StepStatus = StepStatus.PENDING,
        result: Any = None,
        text: str | None = None,
        content: list[Any] | None = None,
        error: str | None = None,
        attempts: int = 0,
        agent_id: str | None = None,
        started_at: float | None = None,  # epoch seconds
        finished_at: float | None = None,
    ) -> None:
        # Key order is the order `{{ steps.x }}` prints in.
        self.view: dict[str, Any] = {
            "result": result,
            "text": text,
            "content": content,
            "status": str(status),
            "error": error,
            "attempts": attempts,
            "agent_id": agent_id,
        }
        self.started_at = started_at
        self.finished_at = finished_at

    @property
    def status(self) -> StepStatus:
        return _STATUS_OF[self.view["status"]]

    @status.setter
    def status(self, value: StepStatus) -> None:
        self.view["status"] = str(value)

    @property
    def result(self) -> Any:
        return self.view["result"]

    @result.setter
    def result(self, value: Any) -> None:
        self.view["result"] = value

    @property
    def text(self) -> str | None:
        return self.view["text"]

    @text.setter
    def text(self, value: str | None) -> None:
        self.view["text"] = value

    @property
    def content(self) -> list[Any] | None:
        return self.view["content"]

    @content.setter
    def content(self, value: list[Any] | None) -> None:
        self.view["content"] = value

    @property
    def error(self) -> str | None:
        return self.view["error"]

    @error.setter
    def error(self, value: str | None) -> None:
        self.view["error"] = value

    @property
    def attempts(self) -> int:
        return self.view["attempts"]

    @attempts.setter
    def attempts(self, value: int) -> None:
        self.view["attempts"] = value

    @property
    def agent_id(self) -> str | None:
        return self.view["agent_id"]

    @agent_id.setter
    def agent_id(self, value: str | None) -> None:
        self.view["agent_id"] = value

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at) * 1000.0, 3)

    def adopt(self, other: StepOutcome) -> None:
        """Take over ``other``'s outcome (a step completed in an earlier session)."""
        self.view.update(other.view)
        self.started_at = other.started_at
        self.finished_at = other.finished_at

    def as_context(self) -> dict[str, Any]:
        """The ``steps.<id>`` view templates see (the live dict, not a copy; keys: :data:`STEP_ATTRIBUTES`)."""
        return self.view

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepOutcome):
            return NotImplemented
        return (self.view, self.started_at, self.finished_at) == (other.view, other.started_at, other.finished_at)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.view.items())
        return f"StepOutcome({fields}, started_at={self.started_at!r}, finished_at={self.finished_at!r})"
