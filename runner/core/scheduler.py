"""The scheduler: a pure state machine over a workflow's step DAG (no I/O, no clock).

Modelled on dagster's ``ActiveExecution``: the engine pulls startable work with
``take(limit, now)``, pushes outcomes back with ``complete``/``fail``, and answers the
scheduler's questions (``decisions()``: evaluate this step's ``if`` and ``for_each``, then
``activate`` or ``skip``). Time is passed in, never read, so every path — retries with
backoff, for_each fan-out, skip cascades, finally steps — is unit-tested without
processes and property-tested on random DAGs.

A step moves: PENDING (waiting for dependencies) → READY (the engine must decide) →
ACTIVE (tasks queued or running) → COMPLETED | FAILED | SKIPPED | CANCELLED.
``finally`` steps become eligible only when every main step is terminal.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from runner.model import StepOutcome, StepSpec, StepStatus

# The scheduler's phases of a step (plain strings on the hot path); a DONE step's outcome
# (completed, failed, skipped, cancelled) is its public status, in ``view["status"]``.
_PENDING = "pending"  # waiting for dependencies
_READY = "ready"  # the engine must decide (``if``, ``for_each``)
_ACTIVE = "active"  # tasks queued or running
_DONE = "done"
_COMPLETED = StepStatus.COMPLETED.value
_FAILED = StepStatus.FAILED.value
_FAILED_STATUS = StepStatus.FAILED
_SKIPPED_STATUS = StepStatus.SKIPPED


class Task(NamedTuple):
    """One unit of dispatch: a step, or one item of a ``for_each`` step, at an attempt.

    A named tuple (immutable, hashed and built in C), one a step: cheaper than a frozen
    dataclass on the hot path. Its ``index`` field shadows ``tuple.index``, unused here.
    """

    step_id: str
    index: int | None  # type: ignore[assignment]
    attempt: int


class Transition(NamedTuple):
    """A step reached a terminal status (for the engine to emit as an event)."""

    step_id: str
    status: StepStatus
    reason: str | None = None


# ``Task(...)`` and ``Transition(...)`` call a Python ``__new__`` (namedtuple's); one a step
# each on the hot path, so they are built with the C constructor directly: ``_new(Task, (…))``.
_new = tuple.__new__


class _Step(StepOutcome):
    """A step as the scheduler tracks it — and, being a ``StepOutcome``, the run's one record
    of that step: the engine fills in its outcome and templates read its ``view``."""

    __slots__ = (
        "spec",
        "phase",
        "waiting",
        "dependents",
        "attempt_no",
        "base_attempts",
        "n_items",
        "next_item",
        "running",
        "item_attempts",
        "items_done",
        "in_ready",
    )

    def __init__(self, spec: StepSpec) -> None:
        # StepOutcome's fields, set here directly: one call per step instead of two.
        self.view = {
            "result": None,
            "text": None,
            "content": None,
            "status": _PENDING,
            "error": None,
            "attempts": 0,
            "agent_id": None,
        }
        self.started_at = self.finished_at = None
        self.spec = spec
        self.phase = _PENDING
        self.waiting = 0  # dependencies not yet terminal
        self.dependents: list[str] = _NO_DEPENDENTS
        # The attempt number last handed out: numbering only. ``attempts`` (the outcome)
        # counts what the step was seen to try, and may differ on resume and for_each.
        self.attempt_no = 0
        self.base_attempts = 0  # attempts of earlier sessions (resume): the retry policy starts afresh
        self.n_items: int | None = None  # for_each: number of items once activated
        self.next_item = 0
        self.running = 0
        self.item_attempts: dict[int, int] = _NO_ITEMS  # for_each only (created on activation)
        self.items_done: set[int] = _NO_DONE
        self.in_ready = False


_NO_DEPENDENTS: list[str] = []  # shared, never appended to: _wire gives a step its own list
_NO_ITEMS: dict[int, int] = {}
_NO_DONE: set[int] = set()


class Scheduler:
    """Decides what may run next. See the module docstring for the protocol."""

    def __init__(
        self,
        steps: Sequence[StepSpec],
        *,
        concurrency: int = 16,
        finally_steps: Sequence[StepSpec] = (),
        completed: Iterable[str] = (),
        attempts: Mapping[str, int] | None = None,
        items_done: Mapping[str, Iterable[int]] | None = None,
    ) -> None:
        """``completed``/``attempts``/``items_done`` restore a resumed run's progress."""
        self.concurrency = max(1, concurrency)
        self._steps: dict[str, _Step] = {}
        self._main: list[str] = []
        self._finally: list[str] = []
        for spec in steps:
            self._steps[spec.step_id] = _Step(spec)
            self._main.append(spec.step_id)
        for spec in finally_steps:
            self._steps[spec.step_id] = _Step(spec)
            self._finally.append(spec.step_id)
        self._queue: deque[str] = deque()  # ACTIVE steps with startable work
        self._retries: list[tuple[float, int, Task]] = []  # heap (not_before, seq, task)
        self._seq = 0
        # What ``decisions()`` and ``transitions()`` will hand out: the engine tests these
        # lists (read only) before calling, which saves it a call each, twice a step.
        self.pending_decisions: list[str] = []
        self.pending_transitions: list[Transition] = []
        self._inflight = 0
        self._main_open = len(self._main)
        # Every main step is terminal (a plain attribute, read twice a step by the engine).
        self.main_done = self._main_open == 0
        self._finally_started = False
        self.failed = False  # a step failed without continue_on_error
        self._restoring: set[str] = set()
        attempts = attempts or {}
        for sid, n in attempts.items():
            if sid in self._steps:
                self._steps[sid].attempt_no = self._steps[sid].base_attempts = n
        for sid, idx in (items_done or {}).items():
            if sid in self._steps:
                self._steps[sid].items_done = set(idx)
        done = set(completed)
        self._wire(self._main, done)
        if not self._finally:
            self._finally_started = True
        if self._main_open == 0:
            self._start_finally()

    # -- wiring -------------------------------------------------------------------------
    def _wire(self, ids: list[str], done: set[str]) -> None:
        local = set(ids)
        steps = self._steps
        for sid in ids:  # every count is set before any restored completion is applied
            st = steps[sid]
            waiting = 0
            for dep in st.spec.depends_on:
                if dep in local:
                    waiting += 1
                    d = steps[dep]
                    if d.dependents is _NO_DEPENDENTS:
                        d.dependents = [sid]
                    else:
                        d.dependents.append(sid)
            st.waiting = waiting
        if done:
            self._restoring = done
            for sid in ids:  # restored completions first, in order, so counts are right
                if sid in done:
                    self._finish(sid, StepStatus.COMPLETED, None, record=False)
            self._restoring = set()
        for sid in ids:
            st = steps[sid]
            if st.phase is _PENDING and st.waiting == 0:
                self._become_ready(sid)

    def _start_finally(self) -> None:
        if self._finally_started:
            return
        self._finally_started = True
        self._wire(self._finally, set())

    # -- queries --------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every step, main and finally, is terminal and nothing is in flight."""
        return (
            self._main_open == 0
            and self._finally_started
            and self._inflight == 0
            and all(self._steps[s].phase is _DONE for s in self._finally)
        )

    @property
    def in_flight(self) -> int:
        return self._inflight

    @property
    def outcomes(self) -> Mapping[str, StepOutcome]:
        """Every step's one record (main steps, then finally steps): what the run reports."""
        return self._steps

    def status(self, step_id: str) -> StepStatus:
        st = self._steps[step_id]
        return StepStatus(st.view["status"]) if st.phase is _DONE else StepStatus.PENDING

    def is_active(self, step_id: str) -> bool:
        return self._steps[step_id].phase is _ACTIVE

    def n_items(self, step_id: str) -> int | None:
        return self._steps[step_id].n_items

    def decisions(self) -> list[str]:
        """Steps whose dependencies are done: the engine must ``activate`` or ``skip`` each."""
        out, self.pending_decisions = self.pending_decisions, []
        return out

    def transitions(self) -> list[Transition]:
        """Terminal transitions since the last call (skips from cascades included)."""
        out, self.pending_transitions = self.pending_transitions, []
        return out

    def attempts(self, step_id: str) -> int:
        """Attempts of a step started so far (for a for_each step: its activations)."""
        return self._steps[step_id].attempt_no

    def next_wakeup(self) -> float | None:
        """When the earliest delayed retry becomes startable (None if none waits)."""
        return self._retries[0][0] if self._retries else None

    # -- engine answers -------------------------------------------------------------------
    def activate(self, step_id: str, n_items: int | None = None) -> None:
        """Start a READY step: one task, or ``n_items`` item tasks for a for_each step."""
        st = self._steps[step_id]
        assert st.phase is _READY, (step_id, st.phase)
        st.phase = _ACTIVE
        if n_items is not None:
            # One activation is one attempt of the whole fan-out; item attempts count on
            # from it, so a resumed or retried run never reuses an earlier attempt number
            # (and with it the idempotency key an agent may de-duplicate on).
            st.attempt_no += 1
            st.n_items = n_items
            if st.items_done is _NO_DONE:
                st.items_done = set()
            st.item_attempts = {}
            if len(st.items_done) >= n_items and all(i in st.items_done for i in range(n_items)):
                self._finish(step_id, StepStatus.COMPLETED, None)
                return
            while st.next_item < n_items and st.next_item in st.items_done:
                st.next_item += 1
        if not st.in_ready:  # _enqueue, written out
            st.in_ready = True
            self._queue.append(step_id)

    def skip(self, step_id: str, reason: str | None = None) -> None:
        """A READY step's ``if`` was false (or its for_each could not be rendered)."""
        self._finish(step_id, StepStatus.SKIPPED, reason)

    def fail_step(self, step_id: str, reason: str) -> None:
        """A READY/ACTIVE step failed before dispatch (e.g. its ``for_each`` did not render)."""
        self._finish(step_id, StepStatus.FAILED, reason)

    def take(self, limit: int, now: float) -> list[Task]:
        """Tasks to start now, at most ``limit`` and within the run's concurrency."""
        cap = self.concurrency - self._inflight
        if limit < cap:
            cap = limit
        out: list[Task] = []
        while cap > 0 and self._retries and self._retries[0][0] <= now:
            task = heapq.heappop(self._retries)[2]
            st = self._steps[task.step_id]
            if st.phase is not _ACTIVE:
                continue  # the step failed or was cancelled meanwhile
            st.running += 1
            out.append(task)
            cap -= 1
        q = self._queue
        while cap > 0 and q:
            sid = q[0]
            st = self._steps[sid]
            if st.phase is not _ACTIVE:
                q.popleft()
                st.in_ready = False
                continue
            if st.n_items is None:
                q.popleft()
                st.in_ready = False
                st.attempt_no += 1
                st.running += 1
                out.append(_new(Task, (sid, None, st.attempt_no)))
                cap -= 1
                continue
            limit_par = st.spec.max_parallel or st.n_items
            while cap > 0 and st.next_item < st.n_items and st.running < limit_par:
                i = st.next_item
                st.next_item += 1
                while st.next_item < st.n_items and st.next_item in st.items_done:
                    st.next_item += 1
                att = st.item_attempts.get(i, st.attempt_no - 1) + 1
                st.item_attempts[i] = att
                st.running += 1
                out.append(_new(Task, (sid, i, att)))
                cap -= 1
            if st.next_item >= st.n_items or st.running >= limit_par:
                q.popleft()
                st.in_ready = False
        self._inflight += len(out)
        return out

    def complete(self, task: Task) -> bool:
        """A task succeeded. Returns True when this completed the whole step."""
        st = self._steps[task.step_id]  # _release, written out (once a step)
        st.running -= 1
        self._inflight -= 1
        if st.phase is not _ACTIVE:
            return False
        if task.index is None:
            self._finish(task.step_id, StepStatus.COMPLETED, None)
            return True
        st.items_done.add(task.index)
        if st.n_items is not None and len(st.items_done) >= st.n_items:
            self._finish(task.step_id, StepStatus.COMPLETED, None)
            return True
        self._enqueue(st)
        return False

    def fail(self, task: Task, error: str, now: float, *, retryable: bool = True, delay: float = 0.0) -> float | None:
        """A task failed. Returns the retry time if it will be retried, else None.

        ``delay`` is the backoff the engine computed (with jitter) from the step's policy;
        the decision whether attempts remain is made here.
        """
        st = self._release(task)
        if st.phase is not _ACTIVE:
            return None
        policy = st.spec.retry
        if retryable and task.attempt - st.base_attempts < policy.max_attempts:
            nxt = Task(task.step_id, task.index, task.attempt + 1)
            if task.index is None:
                st.attempt_no = nxt.attempt
            else:
                st.item_attempts[task.index] = nxt.attempt
            at = now + max(0.0, delay)
            self._seq += 1
            heapq.heappush(self._retries, (at, self._seq, nxt))
            return at
        self._finish(task.step_id, StepStatus.FAILED, error)
        return None

    def cancel_pending(self, reason: str = "cancelled") -> list[str]:
        """Cancel every non-terminal main step (run timeout / cancel). Returns their ids.

        Tasks already in flight stay counted until the engine reports them; ``finally``
        steps then run as usual.
        """
        out: list[str] = []
        for sid in self._main:
            st = self._steps[sid]
            if st.phase is not _DONE:
                out.append(sid)
                self._finish(sid, StepStatus.CANCELLED, reason, cascade=False)
        return out

    def cancel_all(self, reason: str = "cancelled") -> list[str]:
        """Cancel everything not terminal, finally steps included (second Ctrl-C)."""
        out = self.cancel_pending(reason)
        self._start_finally()
        for sid in self._finally:
            st = self._steps[sid]
            if st.phase is not _DONE:
                out.append(sid)
                self._finish(sid, StepStatus.CANCELLED, reason, cascade=False)
        return out

    # -- internals ------------------------------------------------------------------------
    def _release(self, task: Task) -> _Step:
        st = self._steps[task.step_id]
        st.running -= 1
        self._inflight -= 1
        return st

    def _enqueue(self, st: _Step) -> None:
        if not st.in_ready:
            st.in_ready = True
            self._queue.append(st.spec.step_id)

    def _become_ready(self, sid: str) -> None:
        skip = self._ready_or_skip(sid)
        if skip is not None:
            self._finish(sid, StepStatus.SKIPPED, skip)

    def _ready_or_skip(self, sid: str) -> str | None:
        """Mark a step whose dependencies are all terminal READY; or return why it is skipped."""
        if sid in self._restoring:
            return None  # completed in an earlier session; finished by _wire right after
        st = self._steps[sid]
        steps = self._steps
        for dep in st.spec.depends_on:
            d = steps.get(dep)
            if d is not None and d.view["status"] != _COMPLETED and self._blocks(d, st):
                return f"dependency '{dep}' {d.view['status'] if d.phase is _DONE else d.phase}"
        st.phase = _READY
        self.pending_decisions.append(sid)
        return None

    @staticmethod
    def _blocks(d: _Step, st: _Step) -> bool:
        """Whether a terminal dependency ``d`` prevents ``st`` from running."""
        if st.spec.is_finally and not d.spec.is_finally:
            return False  # finally steps always run; main deps only order them
        status = d.view["status"] if d.phase is _DONE else d.phase
        if status == _COMPLETED:
            return False
        return not (status == _FAILED and d.spec.continue_on_error)

    def _finish(
        self, sid: str, status: StepStatus, reason: str | None, *, record: bool = True, cascade: bool = True
    ) -> None:
        """Make a step terminal and cascade to its dependents — iteratively, so a skip
        running down a 100,000-step chain needs no recursion."""
        steps = self._steps
        work: deque[tuple[str, StepStatus, str | None, bool]] | None = None  # cascaded skips, if any
        rec = record
        while True:
            st = steps[sid]
            if st.phase is not _DONE:
                st.phase = _DONE
                st.view["status"] = status._value_
                if rec:
                    self.pending_transitions.append(_new(Transition, (sid, status, reason)))
                if status is _FAILED_STATUS and not st.spec.continue_on_error:
                    self.failed = True
                if not st.spec.is_finally:
                    self._main_open -= 1
                for dep_id in st.dependents:
                    d = steps[dep_id]
                    if d.phase is not _PENDING:
                        continue
                    d.waiting -= 1
                    if d.waiting == 0 and cascade:
                        skip = self._ready_or_skip(dep_id)
                        if skip is not None:
                            if work is None:
                                work = deque()
                            work.append((dep_id, _SKIPPED_STATUS, skip, True))
            if not work:
                break
            sid, status, reason, rec = work.popleft()
        if self._main_open == 0:
            self.main_done = True
            if not self._finally_started:
                self._start_finally()
