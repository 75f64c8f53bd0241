"""What a run produces and what resuming one needs: ``RunResult``, ``ResumeState``, inputs.

Kept apart from the engine so the CLI, the API and the store-facing resume code can use
them without importing the engine's loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.model.data import NotData, as_data
from runner.model.events import epoch_to_iso
from runner.model.spec import RunStatus, StepOutcome, Workflow
from runner.model.user_schema import schema_problems as user_schema_problems
from runner.model.user_schema import validation_messages


@dataclass
class RunResult:
    """What a finished run produced (the ``--output json`` object of SPEC §4)."""

    run_id: str
    workflow: str
    status: RunStatus
    outputs: dict[str, Any]
    steps: dict[str, StepOutcome]
    started_at: float
    finished_at: float
    preflight_ms: float = 0.0
    error: str | None = None
    tolerated: frozenset[str] = frozenset()
    """Steps whose failure does not fail the run (``continue_on_error``): CI reporters show them passed."""
    skip_reasons: dict[str, str] = field(default_factory=dict)
    """Why each skipped step was skipped (for JUnit's ``<skipped message=...>``)."""

    @property
    def duration_ms(self) -> float:
        return round((self.finished_at - self.started_at) * 1000.0, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": str(self.status),
            "outputs": self.outputs,
            "started_at": epoch_to_iso(self.started_at),
            "finished_at": epoch_to_iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "preflight_ms": round(self.preflight_ms, 3),
            "error": self.error,
            "steps": {
                sid: {
                    "status": str(o.status),
                    "result": o.result,
                    "error": o.error,
                    "attempts": o.attempts,
                    "agent_id": o.agent_id,
                    "duration_ms": o.duration_ms,
                }
                for sid, o in self.steps.items()
            },
        }


@dataclass
class ResumeState:
    """Progress of an earlier session of the same run, read back from the store."""

    run_id: str
    inputs: dict[str, Any]
    completed: dict[str, StepOutcome] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    items: dict[str, dict[int, Any]] = field(default_factory=dict)
    attempt: int = 1  # the run's attempt so far (`runner retry` starts the next one)
    new_attempt: bool = False  # True for `runner retry`: this session is attempt + 1
    # Steps whose call was in flight when the last session ended: sent again as the same
    # attempt, with the same idempotency key (SPEC §6).
    in_flight: set[str] = field(default_factory=set)
    fresh: bool = False  # a queued (or just created) run: its first session starts it
    # The end of the run's last session: a cancel request made before it was already
    # answered (or came too late), so it must not cancel this new session.
    cancel_after: str | None = None
    # Nested runs (``uses:``) that were in flight, by call (``team``, ``teams[2]``): each
    # continues from its own state, read back from this run's event log.
    nested: dict[str, ResumeState] = field(default_factory=dict)
    # The steps of nested runs that are not run again (their ``uses:`` step or item is kept),
    # by nested id (``team/decompose``), for the run's result to show them.
    inner: dict[str, StepOutcome] = field(default_factory=dict)


def resolve_inputs(wf: Workflow, given: Mapping[str, Any]) -> dict[str, Any]:
    """Apply defaults and check each input: JSON data, valid against its JSON Schema (InputInvalid otherwise)."""
    from runner.errors import InputInvalid

    unknown = sorted(set(given) - set(wf.inputs))
    if unknown:
        raise InputInvalid(f"unknown input(s): {', '.join(unknown)} (declared: {', '.join(wf.inputs) or 'none'})")
    values: dict[str, Any] = {}
    missing = []
    for name, schema in wf.inputs.items():
        if name in given:
            values[name] = given[name]
        elif isinstance(schema, dict) and "default" in schema:
            values[name] = schema["default"]
        else:
            missing.append(name)
    if missing:
        raise InputInvalid(f"missing required input(s): {', '.join(missing)} (pass -i NAME=VALUE)")
    for name, value in values.items():
        try:  # inputs are stored, sent and templated: JSON data only (a tuple becomes a list)
            values[name] = value = as_data(value)
        except NotData as exc:
            raise InputInvalid(f"input '{name}': {exc}") from None
        schema = wf.inputs[name]
        if not isinstance(schema, dict):
            continue
        bad = user_schema_problems(schema)
        if bad:
            raise InputInvalid(f"input '{name}': its schema is unusable: {bad[0][1]}")
        messages = validation_messages(schema, value)
        if messages:
            raise InputInvalid(f"input '{name}': {messages[0]}")
    return values
