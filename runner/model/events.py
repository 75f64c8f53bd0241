"""Events: the contract between the engine, the store, progress output and resume.

The engine emits one ``Event`` per state change, *before* acting on it (write-ahead), to
every sink: the store persists it and derives run/step state from it, the progress printer
shows it, ``--events F`` writes it as a JSON line. Resume replays the stored state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.model.clock import epoch_to_iso, now_iso

# Event types (SPEC §8). Item events carry ``data["index"]`` for one for_each item.
RUN_STARTED = "run_started"
RUN_RESUMED = "run_resumed"
RUN_COMPLETED = "run_completed"
RUN_FAILED = "run_failed"
RUN_TIMED_OUT = "run_timed_out"
RUN_CANCELLED = "run_cancelled"
RUN_INTERRUPTED = "run_interrupted"  # Ctrl-C: the run stays resumable
RUN_QUEUED = "run_queued"  # `run --detach`: stored, waiting for a process to execute it
RUN_CANCEL_REQUESTED = "run_cancel_requested"  # `runner cancel` from any process (log only)
STEP_STARTED = "step_started"
STEP_RETRYING = "step_retrying"
STEP_COMPLETED = "step_completed"
STEP_FAILED = "step_failed"
STEP_SKIPPED = "step_skipped"
STEP_CANCELLED = "step_cancelled"
STEP_PROGRESS = "step_progress"
STEP_RESET = "step_reset"  # `retry --from`: the step is pending again (history keeps the old events)
ITEM_STARTED = "item_started"
ITEM_COMPLETED = "item_completed"
ITEM_FAILED = "item_failed"
STEP_ASSIGNED = "step_assigned"  # a pull step waits for its agent's report (an assignment row)
STEP_REPORTED = "step_reported"  # an agent's report on a pull step, written by any process
AGENT_CIRCUIT_OPENED = "agent_circuit_opened"  # an agent's circuit breaker opened: selection skips it

# What another process writes into a run's log for the executing process to act on.
SIGNAL_TYPES = (STEP_REPORTED, RUN_CANCEL_REQUESTED)

RUN_TERMINAL = {
    RUN_COMPLETED: "completed",
    RUN_FAILED: "failed",
    RUN_TIMED_OUT: "timed_out",
    RUN_CANCELLED: "cancelled",
}


@dataclass(slots=True)
class Event:
    """One state change of a run. ``data`` holds type-specific fields (result, outputs…).

    Treat it as immutable (``dataclasses.replace`` for a changed copy). It is not declared
    ``frozen``: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, 1.1 µs more per event on the engine's hot path (two a step).
    """

    type: str
    run_id: str
    ts: str = field(default_factory=now_iso)
    step_id: str | None = None
    attempt: int | None = None
    agent_id: str | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines shape of SPEC §8: fixed keys first, then ``data`` merged in."""
        out: dict[str, Any] = {"ts": self.ts, "run_id": self.run_id, "type": self.type}
        if self.step_id is not None:
            out["step_id"] = self.step_id
        if self.attempt is not None:
            out["attempt"] = self.attempt
        if self.agent_id is not None:
            out["agent_id"] = self.agent_id
        if self.error is not None:
            out["error"] = self.error
        for k, v in self.data.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Event:
        fixed = {"ts", "run_id", "type", "step_id", "attempt", "agent_id", "error"}
        return cls(
            type=obj["type"],
            run_id=obj["run_id"],
            ts=obj.get("ts") or now_iso(),
            step_id=obj.get("step_id"),
            attempt=obj.get("attempt"),
            agent_id=obj.get("agent_id"),
            error=obj.get("error"),
            data={k: v for k, v in obj.items() if k not in fixed},
        )


EventSink = Callable[[Event], None]

__all__ = ["Event", "EventSink", "epoch_to_iso", "now_iso"]
