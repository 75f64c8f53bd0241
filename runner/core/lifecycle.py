"""Pure decisions of the run lifecycle across processes: reports on pull steps and cancels.

Every backend reads the rows inside one transaction, asks these functions what to do, and
writes the answer in that same transaction — so two processes reporting on one step, or a
report racing the step's timeout, can never both win, and the backends cannot disagree.
No I/O here: the functions take records and a timestamp and return a verdict or raise.
"""

from __future__ import annotations

from typing import Any, Literal

from runner.errors import NotFound, Refused
from runner.model import events as ev
from runner.model.events import Event
from runner.model.records import Assignment, RunRecord, StepRecord

# Run statuses in which a pull step may still be reported on: a run whose process died
# (interrupted) keeps its assignments, and the resumed run picks the report up.
REPORTABLE_RUN = frozenset({"running", "interrupted", "pending"})
FINISHED_RUN = frozenset({"completed", "failed", "timed_out", "cancelled"})

ReportVerdict = Literal["accept", "duplicate"]
CancelVerdict = Literal["end", "request", "already"]


def report_body(result: Any, error: str | None) -> dict[str, Any]:
    """What a report says, as stored: ``{"error": msg}`` or ``{"result": value}``."""
    return {"error": error} if error is not None else {"result": result}


def report_event(asg: Assignment, agent_id: str, body: dict[str, Any], error: str | None, now: str) -> Event:
    """The ``step_reported`` event of an accepted report (every backend writes this one)."""
    return Event(
        type=ev.STEP_REPORTED,
        run_id=asg.run_id,
        step_id=asg.step_id,
        attempt=asg.attempt,
        agent_id=agent_id,
        error=error,
        data={"index": asg.index, **body},
        ts=now,
    )


def still_waiting(step: StepRecord | None, asg: Assignment) -> bool:
    """Whether the step is still at the attempt ``asg`` was made for (not retried, timed out, ended)."""
    if asg.status != "waiting" or step is None or step.status != "in_progress":
        return False
    if asg.index is not None:
        return True  # item attempts are counted per step: the item's own row tells
    return step.attempts == asg.attempt and step.error is None


def decide_report(
    run: RunRecord | None,
    step: StepRecord | None,
    asg: Assignment | None,
    *,
    run_id: str,
    step_id: str,
    agent_id: str,
    body: dict[str, Any],
    now: str,
    url: str = "the store",
) -> ReportVerdict:
    """Accept a report, acknowledge a repeat of the same report, or refuse (raise) with why."""
    if run is None:
        raise NotFound.run(run_id, url)
    what = f"step '{step_id}' of run {run_id}"
    if asg is None:
        if step is None:
            raise Refused(f"run {run_id} has no step '{step_id}' waiting for a report (no such step, or not started)")
        raise Refused(f"{what} is not a pull step waiting for a report (it is {step.status})")
    if asg.agent_id is not None and agent_id != asg.agent_id:
        raise Refused(f"{what} is assigned to agent '{asg.agent_id}', not '{agent_id}'")
    if asg.status != "waiting":
        if asg.reported_by == agent_id and asg.report == body:
            return "duplicate"
        raise Refused(
            f"{what} was already reported {asg.status} by agent '{asg.reported_by}' at {asg.reported_at}; "
            "a different report is refused"
        )
    if run.status not in REPORTABLE_RUN:
        raise Refused(f"run {run_id} is {run.status}: {what} no longer waits for a report")
    if not still_waiting(step, asg):
        status = step.status if step is not None else "unknown"
        raise Refused(f"{what} is not waiting for a report any more (it is {status}, attempt {asg.attempt} ended)")
    if asg.deadline is not None and now > asg.deadline:
        raise Refused(f"{what} was due by {asg.deadline}; a late report is refused (the step times out)")
    return "accept"


def decide_cancel(run: RunRecord | None, *, run_id: str, holder_alive: bool, url: str = "the store") -> CancelVerdict:
    """End a run nobody executes now, ask the executing process to cancel, or refuse a finished run."""
    if run is None:
        raise NotFound.run(run_id, url)
    if run.status == "cancelled":
        return "already"
    if run.status in FINISHED_RUN:
        raise Refused(f"run {run_id} already finished ({run.status}); there is nothing to cancel")
    if not holder_alive:
        return "end"  # queued, interrupted, or its executing process died: nobody else will
    return "request"
