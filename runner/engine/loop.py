"""The run loop: drives the pure scheduler, hands tasks to step handlers, journals events.

One ``Engine`` executes one session of one run. It answers the scheduler's decisions
(``if``, ``for_each``), starts tasks on the handler of their step's kind (``steps/``:
tool, pull, uses), and feeds outcomes back. Its other jobs live beside it: the event
journal (``journal.py``), the lease and the run's signals (``lease.py``), and agent
start-up (``preflight.py``). Every state change is journalled *before* the engine acts
on it, so a crash leaves a store that ``resume`` can continue from.

Speed (SPEC §7): templates are compiled once per step, completions come back through a
deque + one ``asyncio.Event`` (no ``asyncio.wait`` over all tasks), a lone task is
awaited in line (a chain step costs no Task), and timers are ``call_at`` callbacks.
"""

from __future__ import annotations

import asyncio
import gc
import random
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
from runner.engine.steps import IDEMPOTENCY_META_KEY, PerTaskStep, PullStep, StepHandler, ToolStep, UsesStep
from runner.engine.steps.per_task import SELECTION_FAILED
from runner.errors import RunnerError, StoreError, ToolFailure
from runner.load.instantiate import agents_context, instantiate
from runner.model import AgentSpec, RunStatus, StepOutcome, StepSpec, StepStatus, Workflow
from runner.model import events as ev
from runner.model.events import EventSink
from runner.model.ids import new_run_id, workflow_hash
from runner.model.outcomes import ResumeState, RunResult, resolve_inputs
from runner.model.records import WorkflowRecord
from runner.template import Compiled, Masker, TemplateError, compile_value, limit_renders, render_condition

if TYPE_CHECKING:
    from runner.agents.pool import AgentPool
    from runner.store.base import Lease, Store

__all__ = ["IDEMPOTENCY_META_KEY", "Engine"]


class Engine(RunControl):
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

    # -- what step handlers use (``steps.base.StepRun``) --------------------------------------
    def step_started(self, sid: str, attempt: int | None, agent_id: str | None) -> None:
        o = self.outcomes[sid]
        if o.started_at is None:
            o.started_at = time.time()
        view = o.view
        if attempt is not None and attempt > view["attempts"]:
            view["attempts"] = attempt
        if agent_id is not None:
            view["agent_id"] = agent_id
        view["status"] = "in_progress"  # StepStatus.IN_PROGRESS, as the view holds it
        self.emit(ev.STEP_STARTED, sid, attempt=attempt, agent_id=agent_id)

    def child(self, wf: Workflow, *, sinks: Sequence[EventSink], base_dir: str | None) -> Engine:
        """An ephemeral engine for a nested run on this run's agents and connections."""
        return Engine(
            wf,
            sinks=sinks,
            registry=list(self.agents.specs.values()),
            secrets=self.secrets,
            pool=self.agents.pool,
            base_dir=base_dir,
        )

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
            "agents": agents_context(self.agents.specs),
        }
        fixed = {"inputs": values, "workflow": self._ctx["workflow"], "agents": self._ctx["agents"]}
        wf = self.wf = instantiate(wf, fixed)
        self._specs = {s.step_id: s for s in wf.all_steps}
        self._kinds = {s.step_id: "per_task" if s.per_task else step_kind(s) for s in wf.all_steps}
        self.journal.run_id = self.run_id
        if resume is not None:
            self._base_attempts = dict(resume.attempts)
            # A call in flight when the last session died is sent again as the SAME attempt
            # (same idempotency key): its outcome is unknown and the agent may have done it.
            for sid in resume.in_flight:
                if self._base_attempts.get(sid, 0) > 0:
                    self._base_attempts[sid] -= 1
            if not resume.fresh:
                for sid, items in resume.items.items():
                    self._item_results[sid] = dict(items)
        # The plan, built before preflight: its records are the step outcomes from the start.
        self._sched = Scheduler(
            wf.steps, concurrency=wf.concurrency, finally_steps=wf.finally_steps,
            completed=(resume.completed if resume else {}).keys(), attempts=self._base_attempts,
            items_done={k: v.keys() for k, v in self._item_results.items()},
        )
        self.outcomes = self._sched.outcomes
        self._cancel_after = resume.cancel_after if resume is not None else None
        if self.store is not None:
            if resume is None:
                raise RunnerError("a stored run is created by the service (RunService.start), not by the engine")
            self._hold(self.store)
            self.run_stored = True
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
                self.emit(ev.RUN_INTERRUPTED, error="interrupted by the user")
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
            self._handlers["per_task"] = PerTaskStep(self, tool, self.pull)
            # The run timeout counts from the first step: agent start-up has its own bound
            # (the connect timeout), and a slow machine must not eat the steps' time.
            deadline = loop.time() + wf.timeout if wf.timeout else None
            try:
                await self._loop(deadline)
            except asyncio.CancelledError:
                await self._cancel_running()
                self.emit(ev.RUN_INTERRUPTED, error="interrupted by the user")
                self.flush()
                raise
            status = self._final_status()
            masker = self.masker if self.secrets else None
            status, outputs, error = conclude(wf, self._ctx, status, self.outcomes, masker, self.emit, self._aborted)
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
                now = loop.time()
                started = sched.take(1 << 30, now)
                if (
                    len(started) == 1
                    and not self._running
                    and deadline is None
                    and not finished
                    and sched.next_wakeup() is None
                ):
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
                    self._settle(task, res, err, loop.time())
                self._drain()
        finally:
            for t in timers:
                t.cancel()
            limit_renders(None, None)

    def _decide(self) -> None:
        """Answer the scheduler: evaluate ``if`` and ``for_each`` of steps that became ready."""
        sched = self._sched
        while ds := sched.decisions():
            for sid in ds:
                spec = self._specs[sid]
                if self._main_status is None and sched.main_done:
                    self._enter_finally()
                args_c, cond_c, each_c = self._compile(spec)
                ctx = self._ctx
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
                    self._item_results.setdefault(sid, {})
                    sched.activate(sid, len(items))
                    self.step_started(sid, sched.attempts(sid), None)
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

    def _compile(self, spec: StepSpec) -> tuple[Compiled, Compiled | None, Compiled | None]:
        c = self._compiled.get(spec.step_id)
        if c is None:
            cond = spec.condition
            args = spec.with_ if spec.uses is not None else spec.tool_arguments
            c = (
                compile_value(args if args is not None else {}),
                compile_value(cond) if cond is not None else None,
                compile_value(spec.for_each) if spec.for_each is not None else None,
            )
            self._compiled[spec.step_id] = c
        return c

    def _drain(self) -> None:
        """Turn the scheduler's terminal transitions into outcomes and events."""
        steps_ctx = self._ctx["steps"]
        for tr in self._sched.transitions():
            sid = tr.step_id
            view = (o := self.outcomes[sid]).view  # the scheduler has set its status
            if o.finished_at is None or tr.status is not StepStatus.COMPLETED:
                o.finished_at = time.time()
            if tr.status is StepStatus.COMPLETED:
                if sid in self._items:
                    res = self._item_results.get(sid, {})
                    view["result"] = [res.get(i) for i in range(len(self._items[sid]))]
                    view["text"] = None
                steps_ctx[sid] = view
                self.emit(
                    ev.STEP_COMPLETED,
                    sid,
                    attempt=view["attempts"] or None,
                    agent_id=view["agent_id"],
                    data={"result": view["result"], "text": view["text"], "content": view["content"],
                          "duration_ms": o.duration_ms},
                )
            else:
                if tr.status is not StepStatus.SKIPPED:
                    view["error"] = tr.reason
                if sid in self._items and self._item_results.get(sid):
                    # A failed fan-out still reports what its finished items produced
                    # (None where an item failed or never ran), like a failed run does.
                    res = self._item_results[sid]
                    view["result"] = [res.get(i) for i in range(len(self._items[sid]))]
                steps_ctx[sid] = view
                kind = {
                    StepStatus.FAILED: ev.STEP_FAILED,
                    StepStatus.SKIPPED: ev.STEP_SKIPPED,
                    StepStatus.CANCELLED: ev.STEP_CANCELLED,
                }[tr.status]
                self.emit(
                    kind,
                    sid,
                    attempt=o.attempts or None,
                    agent_id=o.agent_id,
                    error=o.error,
                    data={"reason": tr.reason} if tr.status == StepStatus.SKIPPED else None,
                )
                if tr.status == StepStatus.FAILED and sid in self._items:
                    for t, fut in list(self._running.items()):
                        if t.step_id == sid:
                            fut.cancel()

    def _settle(self, task: Task, res: Any, err: ToolFailure | None, now: float) -> None:
        """Feed one finished task back to the scheduler."""
        sched = self._sched
        sid = task.step_id
        o = self.outcomes[sid]
        if err is None:
            if task.index is None:
                view = o.view
                view["result"], view["text"], view["content"] = res
                o.finished_at = time.time()
            else:
                self._item_results[sid][task.index] = res[0]
                self.emit(
                    ev.ITEM_COMPLETED,
                    sid,
                    attempt=task.attempt,
                    agent_id=o.agent_id,
                    data={"index": task.index, "result": res[0]},
                )
            sched.complete(task)
            return
        spec = self._specs[sid]
        if err.extra.get("kind") == "cancelled" and (self._cancelled or self._aborted) and self._main_status is None:
            # Stopped by the run's cancel (not a failure of the step): the step is cancelled,
            # with the pending ones, before the scheduler could count it as failed.
            sched.cancel_pending("run cancelled")
        delay = 0.0
        # `retry` counts attempts within this session: attempt numbers go on across sessions
        # (for unique idempotency keys), but a re-run step gets its whole retry policy again.
        tries = task.attempt - self._base_attempts.get(sid, 0)
        if err.retryable and tries < spec.retry.max_attempts:
            delay = spec.retry.delay_before(task.attempt + 1)
            if spec.retry.jitter:
                delay *= 1.0 + random.uniform(0.0, spec.retry.jitter)
        msg = self.masker.mask_text(str(err)) if self.secrets else str(err)
        if task.index is not None:
            if err.extra.get("kind") != SELECTION_FAILED:  # that message names the item already
                msg = f"item {task.index}: {msg}"
            self.emit(
                ev.ITEM_FAILED, sid, attempt=task.attempt, agent_id=err.agent_id, error=msg, data={"index": task.index}
            )
        was_active = sched.is_active(sid)
        at = sched.fail(task, msg, now, retryable=err.retryable, delay=delay)
        if at is not None:
            self.emit(
                ev.STEP_RETRYING,
                sid,
                attempt=task.attempt + 1,
                agent_id=err.agent_id,
                error=msg,
                data={"delay_s": round(delay, 3), **({"index": task.index} if task.index is not None else {})},
            )
        elif was_active:  # not a late report from a step the run already cancelled
            o.error = msg

    async def _cancel_running(self, main_only: bool = False) -> None:
        tasks = [f for t, f in self._running.items() if not (main_only and self._specs[t.step_id].is_finally)]
        for f in tasks:
            f.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one task -------------------------------------------------------------------------------
    async def _exec(self, task: Task, inline: bool = False) -> None:
        try:
            res = await self._dispatch(task)
            self._finished.append((task, res, None))
        except ToolFailure as exc:
            self._finished.append((task, None, exc))
        except asyncio.CancelledError:
            self._finished.append((task, None, ToolFailure("cancelled", retryable=False, extra={"kind": "cancelled"})))
            if inline:
                if not self._inline_cancel:
                    raise  # the run itself is being cancelled (Ctrl-C)
                self._inline_cancel = False
                me = asyncio.current_task()
                if me is not None and hasattr(me, "uncancel"):
                    me.uncancel()
        except TemplateError as exc:
            msg = step_error(self.wf, self._specs[task.step_id], None, exc)  # tool_arguments or with
            self._finished.append((task, None, ToolFailure(msg, retryable=False)))
        except StoreError as exc:  # the store failed: the run cannot go on safely
            self._fatal = exc
        except RunnerError as exc:  # a nested pattern that is invalid or whose agents are down
            self._finished.append((task, None, ToolFailure(str(exc), retryable=False)))
        except Exception as exc:  # a bug in runner or an agent transport: fail the step, not the runner
            self._finished.append(
                (task, None, ToolFailure(f"internal error: {type(exc).__name__}: {exc}", retryable=False))
            )
        self._wake.set()

    async def _dispatch(self, task: Task) -> tuple[Any, str | None, list[Any] | None]:
        sid = task.step_id
        spec = self._specs[sid]
        ctx = self._ctx
        if task.index is not None:
            i = task.index
            prev = self._item_results[sid].get(i - 1) if i else None
            ctx = {**ctx, "item": self._items[sid][i], "index": i, "previous": prev}
        limit_renders(spec.timeout, None if spec.is_finally else self._deadline)  # renders block the loop
        arguments = self._compile(spec)[0].render(ctx)
        return await self._handlers[self._kinds[sid]].run(task, spec, arguments)

    def task_context(self, task: Task) -> Mapping[str, Any]:
        """The template context of ``task`` (as ``_dispatch`` builds it), for per-task selection."""
        if task.index is None:
            return self._ctx
        i, sid = task.index, task.step_id
        prev = self._item_results[sid].get(i - 1) if i else None
        return {**self._ctx, "item": self._items[sid][i], "index": i, "previous": prev}

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
            self.run_id, self.wf, status, self.outcomes, started=started, preflight_ms=preflight_ms, outputs=outputs, error=error
        )
