"""How a session begins: a first session's ``run_started``, or a resumed run's state restored.

A base class of ``Engine``, split from ``loop.py`` by job. A resumed session starts from
what the store holds (``ResumeState``): the attempts each step already made (so
idempotency keys stay unique, except for a call whose outcome is unknown), the finished
items of fan-outs, the completed steps' outcomes (which templates read again), the steps
``retry --from`` resets, and the version of the workflow this session runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runner.engine.journal import Journal
from runner.model import StepOutcome, Workflow
from runner.model import events as ev
from runner.model.ids import workflow_hash
from runner.model.outcomes import ResumeState
from runner.model.records import WorkflowRecord
from runner.template import Masker

if TYPE_CHECKING:
    from runner.store.base import Store

__all__ = ["Resumption"]


class Resumption:
    """Restores a resumed run's state and journals how the session starts."""

    wf: Workflow
    store: Store | None
    journal: Journal
    masker: Masker
    emit: Callable[..., None]
    outcomes: Mapping[str, StepOutcome]
    _ctx: dict[str, Any]
    _item_results: dict[str, dict[int, Any]]
    _base_attempts: dict[str, int]
    inner: dict[str, StepOutcome]
    nested_resume: dict[str, ResumeState]

    def _restore_counts(self, resume: ResumeState) -> None:
        """Attempts and finished items from earlier sessions (read by the scheduler, built next)."""
        self._base_attempts = dict(resume.attempts)
        # A call in flight when the last session died is sent again as the SAME attempt
        # (same idempotency key): its outcome is unknown and the agent may have done it.
        for sid in resume.in_flight:
            if self._base_attempts.get(sid, 0) > 0:
                self._base_attempts[sid] -= 1
        if not resume.fresh:
            # Nested runs: the steps of kept calls (for the result), the calls to continue.
            self.inner, self.nested_resume = dict(resume.inner), dict(resume.nested)
            for sid, items in resume.items.items():
                self._item_results[sid] = dict(items)

    def _announce(self, resume: ResumeState | None, reset: Iterable[str], values: dict[str, Any]) -> None:
        """Journal the session's start; a resumed one first takes back its completed steps."""
        wf = self.wf
        # Who executes this session (`runner runs show`): the lease holder (a worker's id).
        owner = {"owner": self.journal.fence.owner} if self.journal.fence is not None else {}
        if resume is not None and resume.fresh:
            self.emit(ev.RUN_STARTED, data={"workflow": wf.name, "inputs": self.masker.mask(values), **owner})
        elif resume is not None:
            for sid, o in resume.completed.items():
                if sid in self.outcomes:
                    self.outcomes[sid].adopt(o)
                    self._ctx["steps"][sid] = self.outcomes[sid].view
            for sid in sorted(reset):
                self.emit(ev.STEP_RESET, sid, data={"reason": "retry --from"})
            data: dict[str, Any] = {"workflow": wf.name, "reset": sorted(reset), **owner}
            if self.store is not None and wf.source_text is not None:
                # The version this session runs (after `--force`, a newer one than the run
                # started with): later resumes compare the file against it.
                h = workflow_hash(wf.source_text)
                self.store.put_workflow(WorkflowRecord(name=wf.name, content_hash=h, source_text=wf.source_text))
                data["workflow_hash"] = h
            self.emit(ev.RUN_RESUMED, attempt=resume.attempt + 1 if resume.new_attempt else None, data=data)
        else:
            self.emit(ev.RUN_STARTED, data={"workflow": wf.name, "inputs": values})
