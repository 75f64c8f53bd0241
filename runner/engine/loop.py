"""The run loop: drives the pure scheduler, hands tasks to step handlers, journals events.

One ``Engine`` executes one session of one run. It answers the scheduler's decisions
(``if``, ``for_each``), starts tasks on the handler of their step's kind (``steps/``:
tool, pull, uses), and feeds outcomes back. Its other jobs live beside it: the event
journal (``journal.py``), the lease and the run's signals (``lease.py``, ``control.py``),
agent start-up (``preflight.py``), one task's call, errors and outcome (``tasks.py``),
a session's start and a resumed run's restored state (``resume.py``), and the run's
verdict and result (``finish.py``). Every state change is journalled *before* the engine acts
on it, so a crash leaves a store that ``resume`` can continue from.

Speed (SPEC §7): templates are compiled once per step, completions come back through a
deque + one ``asyncio.Event`` (no ``asyncio.wait`` over all tasks), a lone task is
awaited in line (a chain step costs no Task), and timers are ``call_at`` callbacks.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.core.scheduler import Scheduler, Task
from runner.engine.control import RunControl
from runner.engine.finish import TERMINAL_EVENT, build_result, conclude, main_status, stop_reason
from runner.engine.journal import Journal, ProgressFn
from runner.engine.lease import RunLease, SignalPoller
from runner.engine.positions import step_error
from runner.engine.preflight import Agents, preflight, step_kind
from runner.engine.resume import Resumption
from runner.engine.steps import IDEMPOTENCY_META_KEY, PerTaskStep, PullStep, StepHandler, ToolStep, UsesStep
from runner.engine.tasks import TaskRunner
from runner.errors import RunnerError, ToolFailure
from runner.load.instantiate import agents_context, instantiate
from runner.model import AgentSpec, RunStatus, StepOutcome, StepSpec, Workflow
from runner.model import events as ev
from runner.model.events import EventSink
from runner.model.ids import new_run_id
from runner.model.outcomes import ResumeState, RunResult, resolve_inputs
from runner.template import Compiled, Masker, TemplateError, limit_renders, render_condition

if TYPE_CHECKING:
    from runner.agents.pool import AgentPool
    from runner.store.base import Lease, Store

__all__ = ["IDEMPOTENCY_META_KEY", "Engine"]


class Engine(RunControl, TaskRunner, Resumption):
    """Executes one session of one run. Construct, then ``await engine.run(...)``.

    With a ``store``, the run must exist there: the service layer creates it (queued or
    claimed) and hands in ``resume`` (a ``ResumeState``, ``fresh`` for a first session)
    and the ``lease`` it took. Without a store the run is ephemeral (nested ``uses:``
    runs, tests, embedding): ``run(inputs)`` starts it in memory.
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        store: Store | None = None,
        sinks: Sequence[EventSink] = (),
        registry: Sequence[AgentSpec] = (),
        secrets: Mapping[str, str] | None = None,
        base_dir: str | None = None,
        pool: AgentPool | None = None,
        on_progress: ProgressFn | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.wf = workflow
        # What bounds the steps (SPEC: the workflow's `timeout`); a nested run's is also
        # bounded by its `uses:` step's `timeout` (set by `child`), agent start-up excluded.
        self.steps_timeout = workflow.timeout
        self.store = store
        self.secrets = dict(secrets or {})
        self.masker = Masker(self.secrets.values())
        self.journal = Journal(store, sinks, self.masker, masking=bool(self.secrets), on_progress=on_progress)
        self.emit = self.journal.emit
        self.flush = self.journal.flush
        self.journal.on_lost = self._on_lease_lost
        self.journal.on_broken = self.abort
        self.sinks = self.journal.sinks
        self.base_dir = base_dir or (str(Path(workflow.source).resolve().parent) if workflow.source else None)
        specs: dict[str, AgentSpec] = {a.id: a for a in registry}
        specs.update({a.id: a for a in workflow.agents})
        self.agents = Agents(specs=specs, pool=pool)
        self._own_pool = pool is None
        # Each step's one record (the scheduler's; templates read its ``view``), set at the start.
        self.outcomes: Mapping[str, StepOutcome] = {}
        self._items: dict[str, list[Any]] = {}
        self._item_results: dict[str, dict[int, Any]] = {}
        self._finished: deque[tuple[Task, Any, ToolFailure | None]] = deque()
        self._running: dict[Task, asyncio.Task[None]] = {}
        self._compiled: dict[str, tuple[Compiled, Compiled | None, Compiled | None]] = {}
        self._deadline: float | None = None  # the run's, in loop time, once steps run
        self._specs: dict[str, StepSpec] = {}
        self._kinds: dict[str, str] = {}
        self._fatal: BaseException | None = None
        # Handlers that live as long as the engine see it through a weak proxy (no cycle).
        me = weakref.proxy(self)
        self.pull = PullStep(me)
        self._handlers: dict[str, StepHandler] = {"pull": self.pull, "uses": UsesStep(me)}
        self._inline_task: asyncio.Task[Any] | None = None
        self._inline_cancel = False
        self.run_id = ""
        self._ctx: dict[str, Any] = {}
        self._main_status: RunStatus | None = None
        self._timed_out = False
        self._cancelled = False
        self._aborted: str | None = None  # the run must fail for this reason (``abort``)
        self._given_lease = lease
        self._cancel_after: str | None = None
        self._lease: RunLease | None = None
        self._signals: SignalPoller | None = None
        self.run_stored = False  # the store holds this run (so `runner resume` can continue it)
        self._preflight_task: asyncio.Future[None] | None = None
        self._started = time.time()  # reset when the run starts; kept for partial results
        self._preflight_ms = 0.0
        self._base_attempts: dict[str, int] = {}  # attempts of each step before this session
        self.inner: dict[str, StepOutcome] = {}  # the steps of nested runs (``team/decompose``)
        self.nested_resume: dict[str, ResumeState] = {}  # nested runs to continue, by call

    # -- what step handlers use (``steps.base.StepRun``) --------------------------------------
    def step_started(
        self, sid: str, attempt: int | None, agent_id: str | None, data: dict[str, Any] | None = None
    ) -> None:
        o = self.outcomes[sid]
        if o.started_at is None:
            o.started_at = time.time()
        view = o.view
        if attempt is not None and attempt > view["attempts"]:
            view["attempts"] = attempt
        if agent_id is not None:
            view["agent_id"] = agent_id
        view["status"] = "in_progress"  # StepStatus.IN_PROGRESS, as the view holds it
        self.emit(ev.STEP_STARTED, sid, attempt=attempt, agent_id=agent_id, data=data)

    def child(
        self, wf: Workflow, *, sinks: Sequence[EventSink], base_dir: str | None, timeout: float | None = None
    ) -> Engine:
        """An ephemeral engine for a nested run on this run's agents, connections and limits."""
        if self.agents.pool is None:  # this run's own steps needed no agent: its children share one pool all the same
            from runner.agents.pool import AgentPool

            self.agents.pool = AgentPool()  # closed with this run (_own_pool), not with each child
        specs, pool = list(self.agents.specs.values()), self.agents.pool
        eng = Engine(wf, sinks=sinks, registry=specs, secrets=self.secrets, pool=pool, base_dir=base_dir)
        if timeout is not None and (wf.timeout is None or timeout < wf.timeout):
            eng.steps_timeout = timeout
        eng.agents.limit = self.agents.limit  # a max_concurrency held across processes holds in it too
        eng.journal.upstream = self.journal.flush  # its events are ours: so are its flushes
        return eng

    # -- public entry -----------------------------------------------------------------------
    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        resume: ResumeState | None = None,
        reset: Iterable[str] = (),
    ) -> RunResult:
        """Run to the end and return the result; raise for preflight failures.

        A preflight failure (agent down, unknown tool) raises ``AgentError`` or
        ``WorkflowInvalid`` with ``.result`` set to the failed ``RunResult``.
        """
        gc_before = gc.get_threshold()
        # The SDK and the engine allocate many short-lived objects per step; with the default
        # gen-0 threshold (700) the collector runs every few steps and each pass walks a
        # young generation full of run state. A larger threshold halved the per-step cost.
        gc.set_threshold(max(gc_before[0], 20_000), *gc_before[1:])
        try:
            return await self._run(inputs, run_id=run_id, resume=resume, reset=reset)
        finally:
            gc.set_threshold(*gc_before)

    async def _run(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        run_id: str | None,
        resume: ResumeState | None,
        reset: Iterable[str],
    ) -> RunResult:
        wf = self.wf
        started = self._started = time.time()
        if resume is not None:
            self.run_id = resume.run_id
            values = dict(resume.inputs)
        else:
            self.run_id = run_id or new_run_id()
            values = resolve_inputs(wf, inputs or {})
        self._ctx = {
            "inputs": values,
            "steps": {},
            "run": {"id": self.run_id, "status": "running"},
            "workflow": {"name": wf.name},
            "secrets": self.secrets,
            "agents": agents_context(self.agents.specs, [a.id for a in wf.agents]),
        }
        fixed = {"inputs": values, "workflow": self._ctx["workflow"], "agents": self._ctx["agents"]}
        wf = self.wf = instantiate(wf, fixed)
        self._specs = {s.step_id: s for s in wf.all_steps}
        per_task = wf.per_task
        self._kinds = {s.step_id: step_kind(s, s.step_id in per_task) for s in wf.all_steps}
        self.journal.run_id = self.run_id
        if resume is not None:
            self._restore_counts(resume)
        # The plan, built before preflight: its records are the step outcomes from the start.
        self._sched = Scheduler(
            wf.steps,
            concurrency=wf.concurrency,
            finally_steps=wf.finally_steps,
            completed=(resume.completed if resume else {}).keys(),
            attempts=self._base_attempts,
            items_done={k: v.keys() for k, v in self._item_results.items()},
        )
        self.outcomes = self._sched.outcomes
        self._cancel_after = resume.cancel_after if resume is not None else None
        if self.store is not None:
            if resume is None:
                raise RunnerError("a stored run is created by the service (RunService.start), not by the engine")
            self._hold(self.store)
            self.run_stored = True
        self._announce(resume, reset, values)
        self.flush()
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            try:
                self._preflight_task = asyncio.ensure_future(self._preflight(values))
                try:
                    await self._preflight_task
                finally:
                    self._preflight_task = None
            except asyncio.CancelledError:  # Ctrl-C while agents start: resumable, and says so
                if self._fatal is not None:  # the lease was lost while agents started
                    raise self._fatal from None
                self.emit(ev.RUN_INTERRUPTED, error=self.interrupt_reason)
                self.flush()
                raise
            except RunnerError as exc:
                # "raised": the error also reaches the caller, whose face reports it (once)
                self.emit(ev.RUN_FAILED, error=str(exc), data={"outputs": {}, "raised": True})
                self.flush()
                res = self._result(started, RunStatus.FAILED, {}, (time.perf_counter() - t0) * 1000, str(exc))
                exc.result = res  # type: ignore[attr-defined]
                raise
            preflight_ms = self._preflight_ms = (time.perf_counter() - t0) * 1000
            tool = self._handlers["tool"] = ToolStep(self)
            self._handlers["tool_per_task"] = self._handlers["pull_per_task"] = PerTaskStep(self, tool, self.pull)
            # The run timeout counts from the first step: agent start-up has its own bound
            # (the connect timeout), and a slow machine must not eat the steps' time.
            deadline = loop.time() + self.steps_timeout if self.steps_timeout else None
            try:
                await self._loop(deadline)
            except asyncio.CancelledError:
                await self._cancel_running()
                self.emit(ev.RUN_INTERRUPTED, error=self.interrupt_reason)
                self.flush()
                raise
            status = self._final_status()
            masker = self.masker if self.secrets else None
            status, outputs, error = conclude(
                wf, self._ctx, status, self.outcomes, masker, self.emit, self._aborted, self.steps_timeout
            )
            self.emit(TERMINAL_EVENT[status], error=error, data={"outputs": outputs})
            self.flush()
            if self._aborted is not None and status == RunStatus.COMPLETED:  # the journal stored run_failed
                status, error = RunStatus.FAILED, self._aborted
            return self._result(started, status, outputs, preflight_ms, error)
        finally:
            if self._signals is not None:
                self._signals.stop()
            try:
                self.flush()
            except RunnerError:
                pass  # the store already failed (or the lease was lost); that error is the one raised
            if self._lease is not None:
                self._lease.release()
            if self._own_pool and self.agents.pool is not None:
                await self.agents.pool.close()
            self._let_go()

    def _let_go(self) -> None:
        """Break cycles (handlers, journal, lease, poller): state is freed by refcount, not a GC pass."""
        self.journal.on_lost = None
        self.journal.on_broken = None
        self._handlers = {"pull": self.pull}
        self._lease = None
        self._signals = None

    async def _preflight(self, values: Mapping[str, Any]) -> None:
        context = {"inputs": values, "secrets": self.secrets, "workflow": self._ctx["workflow"]}
        await preflight(
            self.wf, self.agents, context=context, masker=self.masker, base_dir=self.base_dir, emit=self.emit
        )

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self, deadline: float | None) -> None:
        sched = self._sched
        loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        me = asyncio.current_task()  # the task that awaits a lone step in line
        timers: list[asyncio.TimerHandle] = []
        if deadline is not None:
            timers.append(loop.call_at(deadline, wake.set))
        armed_retry: float | None = None
        finished = self._finished
        self._deadline = deadline
        try:
            while True:
                self._decide()
                if sched.pending_transitions:
                    self._drain()
                stopping = self._cancelled or self._aborted is not None
                if stopping or (deadline is not None and not self._timed_out and loop.time() >= deadline):
                    if not stopping:
                        self._timed_out = True
                    if self._main_status is None:
                        sched.cancel_pending(stop_reason(self._timed_out, self._aborted))
                        await self._cancel_running(main_only=True)
                        self._drain()
                        self._decide()
                        self._drain()
                # The clock only matters to delayed retries: not read when none waits.
                retry_at = sched.next_wakeup()
                started = sched.take(1 << 30, loop.time() if retry_at is not None else 0.0)
                if retry_at is not None:
                    retry_at = sched.next_wakeup()
                if len(started) == 1 and not self._running and deadline is None and not finished and retry_at is None:
                    # One task and nothing else in flight (a chain): await it here, saving a
                    # Task and two event-loop hops per step. Ctrl-C still cancels it, and
                    # so do a cancel request and a lost lease (``_interrupt_inline``).
                    self._inline_task = me
                    try:
                        await self._exec(started[0], inline=True)
                    finally:
                        self._inline_task = None
                    started = []
                for task in started:
                    self._running[task] = asyncio.ensure_future(self._exec(task))
                if self._fatal is not None:
                    raise self._fatal
                if not finished:
                    if sched.done:
                        return
                    if not started:
                        self.flush()  # new tasks flush before their calls; else persist before waiting
                    wake.clear()
                    nxt = sched.next_wakeup()
                    if nxt is not None and nxt != armed_retry:
                        armed_retry = nxt
                        timers.append(loop.call_at(nxt, wake.set))
                    if not finished:
                        await wake.wait()
                while finished:
                    task, res, err = finished.popleft()
                    self._running.pop(task, None)
                    self._settle(task, res, err)
                if sched.pending_transitions:
                    self._drain()
        finally:
            for t in timers:
                t.cancel()
            limit_renders(None, None)

    def _decide(self) -> None:
        """Answer the scheduler: evaluate ``if`` and ``for_each`` of steps that became ready."""
        sched = self._sched
        while sched.pending_decisions:
            for sid in sched.decisions():
                spec = self._specs[sid]
                if self._main_status is None and sched.main_done:
                    self._enter_finally()
                args_c, cond_c, each_c = self._compile(spec)
                ctx = self._ctx
                if cond_c is not None or each_c is not None:
                    limit_renders(spec.timeout, None if spec.is_finally else self._deadline)
                if cond_c is not None:
                    try:
                        ok = render_condition(cond_c, ctx)
                    except TemplateError as exc:
                        sched.fail_step(sid, step_error(self.wf, spec, "if", exc))
                        continue
                    if not ok:
                        sched.skip(sid, "if: condition was false")
                        continue
                if each_c is not None:
                    try:
                        items = each_c.render(ctx)
                    except TemplateError as exc:
                        sched.fail_step(sid, step_error(self.wf, spec, "for_each", exc))
                        continue
                    if isinstance(items, dict):
                        items = [[k, v] for k, v in items.items()]  # item is [key, value]: data, not a tuple
                    if not isinstance(items, list):
                        sched.fail_step(sid, f"for_each: expected a list, got {type(items).__name__}")
                        continue
                    self._items[sid] = items
                    done = len(self._item_results.setdefault(sid, {}))
                    sched.activate(sid, len(items))
                    # How many items there are (and, resumed, how many an earlier session
                    # finished): the live view shows a fan-out's progress as ``fan 3/10``.
                    fan = {"of": len(items), "done": done} if done else {"of": len(items)}
                    self.step_started(sid, sched.attempts(sid), None, fan)
                    if not sched.is_active(sid):  # no item to run (0 items, or all done before a resume):
                        self.outcomes[sid].view["status"] = "completed"  # StepStatus.COMPLETED, set by activate
                else:
                    sched.activate(sid)
            if self._main_status is None and sched.main_done:
                self._enter_finally()

    def _enter_finally(self) -> None:
        """The main DAG is over: fix ``run.status`` as ``finally`` steps will see it."""
        st = self._main_status = main_status(
            timed_out=self._timed_out, aborted=self._aborted, cancelled=self._cancelled, failed=self._sched.failed
        )
        self._ctx["run"] = {"id": self.run_id, "status": str(st)}

    def _final_status(self) -> RunStatus:
        if self._main_status is None:
            self._enter_finally()
        assert self._main_status is not None
        if self._main_status == RunStatus.COMPLETED and (self._sched.failed or self._aborted is not None):
            return RunStatus.FAILED  # a finally step failed, or the run was aborted during them
        return self._main_status

    # -- results --------------------------------------------------------------------------------
    def partial_result(self, status: RunStatus, error: str) -> RunResult | None:
        """The result so far of a run that stopped abnormally (Ctrl-C): what had finished."""
        if not self.run_id:
            return None
        return self._result(self._started, status, {}, self._preflight_ms, error)

    def _result(
        self, started: float, status: RunStatus, outputs: dict[str, Any], preflight_ms: float, error: str | None
    ) -> RunResult:
        return build_result(
            self.run_id,
            self.wf,
            status,
            self.outcomes,
            started=started,
            preflight_ms=preflight_ms,
            outputs=outputs,
            error=error,
            inner=self.inner,
        )
