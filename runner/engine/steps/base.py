"""The contract between the run loop and its step handlers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from runner.core.scheduler import Task
from runner.engine.journal import Journal
from runner.engine.preflight import Agents
from runner.model import StepOutcome, StepSpec, Workflow
from runner.model.events import EventSink
from runner.model.outcomes import ResumeState, RunResult
from runner.template import Masker

if TYPE_CHECKING:
    from runner.store.base import Store

Produced = tuple[Any, str | None, list[Any] | None]  # result, text, content


class ChildRun(Protocol):
    """A nested run (``uses:``), as the uses handler drives it."""

    outcomes: Mapping[str, StepOutcome]
    inner: dict[str, StepOutcome]

    async def run(self, inputs: Any, *, run_id: str | None = None, resume: ResumeState | None = None) -> RunResult: ...

    def cancel(self) -> None: ...


class StepRun(Protocol):
    """What a step handler may use of the run executing it."""

    run_id: str
    wf: Workflow
    secrets: dict[str, str]
    masker: Masker
    journal: Journal
    agents: Agents
    outcomes: Mapping[str, StepOutcome]
    store: Store | None
    inner: dict[str, StepOutcome]  # the steps of this run's nested runs, by nested id (team/decompose)
    nested_resume: dict[str, ResumeState]  # nested runs to continue, by call (team, teams[2])

    def step_started(self, sid: str, attempt: int | None, agent_id: str | None) -> None: ...

    def task_context(self, task: Task) -> Mapping[str, Any]:
        """The template context of one task (``item``, ``index``, ``previous`` for an item)."""
        ...

    def poll_signals(self) -> None: ...

    def stopping_gracefully(self) -> bool:
        """Whether the run is stopping its steps for a cancel, a timeout or an abort (their
        ``finally`` steps run), as opposed to Ctrl-C or a lost lease."""
        ...

    def child(
        self, wf: Workflow, *, sinks: Sequence[EventSink], base_dir: str | None, timeout: float | None = None
    ) -> ChildRun: ...


class StepHandler(Protocol):
    """Runs one task of one step kind."""

    async def run(self, task: Task, spec: StepSpec, arguments: Any) -> Produced: ...
