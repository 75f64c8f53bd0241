"""The engine: drives the pure scheduler, dispatches tasks to agents, emits events.

One ``Engine`` runs one workflow run. It owns the async loop: it answers the scheduler's
decisions (``if``, ``for_each``), starts tasks, and feeds outcomes back. Every state change
becomes an ``Event`` handed to the sinks (store, progress, events file) *before* the engine
acts on it, so a crash leaves a store that ``resume`` can continue from.

Speed (SPEC §7: ≤ 50 µs of runner overhead per step): templates are compiled once per
step, completions come back through a deque + one ``asyncio.Event`` (no ``asyncio.wait``
over all tasks), and timers are ``call_at`` callbacks rather than ``wait_for`` tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import events as ev
from runner.errors import AgentError, Problem, RunnerError, StoreError, ToolFailure, WorkflowInvalid
from runner.events import Event, EventSink
from runner.instantiate import describe_need, instantiate, positioned, render_agent
from runner.model import AgentSpec, RunStatus, StepOutcome, StepSpec, StepStatus, TransportKind, Workflow
from runner.outcomes import ResumeState, RunResult, new_run_id, resolve_inputs
from runner.scheduler import Scheduler, Task
from runner.selection import eligible, order
from runner.store.base import LEASE_TTL_S, take_lease
from runner.templates import Compiled, Masker, TemplateError, compile_value, render_condition

if TYPE_CHECKING:
    from runner.agents.pool import AgentPool
    from runner.store.base import Store

IDEMPOTENCY_META_KEY = "runner/idempotency_key"

__all__ = ["IDEMPOTENCY_META_KEY", "Engine", "ResumeState", "RunResult", "new_run_id", "resolve_inputs"]


class Engine:
    """Runs one workflow once. Construct, then ``await engine.run(inputs)``."""

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
        on_progress: Callable[[str, float, float | None, str | None], None] | None = None,
        lease_owner: str | None = None,
    ) -> None:
        self.wf = workflow
        self.store = store
        self.sinks: list[EventSink] = list(sinks)
        self.secrets = dict(secrets or {})
        self.masker = Masker(self.secrets.values())
        self.base_dir = base_dir or (str(Path(workflow.source).resolve().parent) if workflow.source else None)
        self.agents: dict[str, AgentSpec] = {a.id: a for a in registry}
        self.agents.update({a.id: a for a in workflow.agents})
        self._pool = pool
        self._own_pool = pool is None
        self._on_progress = on_progress
        self.outcomes: dict[str, StepOutcome] = {}
        self._items: dict[str, list[Any]] = {}
        self._item_results: dict[str, dict[int, Any]] = {}
        self._finished: deque[tuple[Task, Any, ToolFailure | None]] = deque()
        self._running: dict[Task, asyncio.Task[None]] = {}
        self._load: dict[str, int] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._unavailable: set[str] = set()
        self._compiled: dict[str, tuple[Compiled, Compiled | None, Compiled | None]] = {}
        self._candidates: dict[str, tuple[list[str], int]] = {}
        self._conns: dict[str, Any] = {}
        self._pending: list[Event] = []
        self._specs: dict[str, StepSpec] = {}
        self._fatal: BaseException | None = None
        self._pull: dict[tuple[str, int | None], tuple[asyncio.Future[Any], str | None, Any]] = {}
        self.run_id = ""
        self._ctx: dict[str, Any] = {}
        self._main_status: RunStatus | None = None
        self._timed_out = False
        self._cancelled = False
        # This engine's lease on the run (stores only). `runner resume` claims it before it
        # reads the run's state (so that state cannot be stale) and hands it in here.
        self._owner: str | None = lease_owner
        self.run_stored = False  # the store holds this run (so `runner resume` can continue it)
        self._lease_timer: asyncio.TimerHandle | None = None
        self._preflight_task: asyncio.Future[None] | None = None
        self._lease_lost = False
        self._started = time.time()  # reset when the run starts; kept for partial results
        self._preflight_ms = 0.0
        self._base_attempts: dict[str, int] = {}  # attempts of each step before this session

    # -- events ---------------------------------------------------------------------------
    def emit(self, type_: str, step_id: str | None = None, **kw: Any) -> None:
        if self.store is None and not self.sinks:
            return  # nobody listens: do not even build the event
        data = kw.pop("data", None) or {}
        if self.secrets:
            data = self.masker.mask(data)
            if kw.get("error"):
                kw["error"] = self.masker.mask_text(kw["error"])
        e = Event(type=type_, run_id=self.run_id, step_id=step_id, data=data, **kw)
        if self.store is not None:
            self._pending.append(e)
        for sink in self.sinks:
            sink(e)

    def flush(self) -> None:
        """Make every emitted event durable, in one store transaction (group commit).

        Called before every effect outside the runner — an MCP call, a pull assignment, a
        nested run, the end of the run — so the write-ahead rule holds: what the store says
        always precedes what happened. A chain step thus costs one commit, not two.
        """
        if self._lease_lost:
            self._pending.clear()
            return
        if self._pending and self.store is not None:
            batch, self._pending = self._pending, []
            self.store.append_many(batch)

    def _emit_progress(self, sid: str, progress: float, total: float | None, message: str | None) -> None:
        """Progress notifications go to the live sinks only, not to the store (they are chatty)."""
        if message and self.secrets:
            message = self.masker.mask_text(message)
        e = Event(
            type=ev.STEP_PROGRESS,
            run_id=self.run_id,
            step_id=sid,
            data={"progress": progress, "total": total, "message": message},
        )
        for sink in self.sinks:
            sink(e)
        if self._on_progress is not None:
            self._on_progress(sid, progress, total, message)

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
        }
        wf = self.wf = instantiate(wf, {"inputs": values, "workflow": self._ctx["workflow"]})
        self._specs = {s.step_id: s for s in wf.all_steps}
        for s in wf.all_steps:
            self.outcomes[s.step_id] = StepOutcome()
        if resume is not None:
            self._base_attempts = dict(resume.attempts)
        if self.store is not None and resume is not None:
            self._claim()
            self.run_stored = True
        if resume is not None:
            for sid, o in resume.completed.items():
                if sid in self.outcomes:
                    self.outcomes[sid] = o
                    self._ctx["steps"][sid] = o.as_context()
            for sid, items in resume.items.items():
                self._item_results[sid] = dict(items)
            for sid in sorted(reset):
                self.emit(ev.STEP_RESET, sid, data={"reason": "retry --from"})
            data: dict[str, Any] = {"workflow": wf.name, "reset": sorted(reset)}
            if self.store is not None and wf.source_text is not None:
                # The version this session runs (after `--force`, a newer one than the run
                # started with): later resumes compare the file against it.
                from runner.loader import workflow_hash
                from runner.store.base import WorkflowRecord

                h = workflow_hash(wf.source_text)
                self.store.put_workflow(WorkflowRecord(name=wf.name, content_hash=h, source_text=wf.source_text))
                data["workflow_hash"] = h
            self.emit(ev.RUN_RESUMED, attempt=resume.attempt + 1 if resume.new_attempt else None, data=data)
        else:
            if self.store is not None:
                from runner.loader import workflow_hash
                from runner.store.base import RunRecord, WorkflowRecord

                text = wf.source_text or ""
                h = workflow_hash(text)
                self.store.put_workflow(WorkflowRecord(name=wf.name, content_hash=h, source_text=text))
                self.store.create_run(
                    RunRecord(
                        run_id=self.run_id,
                        workflow_name=wf.name,
                        workflow_hash=h,
                        status="pending",
                        inputs=self.masker.mask(values),
                        source=str(Path(wf.source).resolve()) if wf.source else None,
                    )
                )
                self._claim()
                self.run_stored = True
            self.emit(ev.RUN_STARTED, data={"workflow": wf.name, "inputs": values})
        self.flush()
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            try:
                self._preflight_task = asyncio.ensure_future(self._preflight())
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
                self.emit(ev.RUN_FAILED, error=str(exc), data={"outputs": {}})
                self.flush()
                res = self._result(started, RunStatus.FAILED, {}, (time.perf_counter() - t0) * 1000, str(exc))
                exc.result = res  # type: ignore[attr-defined]
                raise
            preflight_ms = self._preflight_ms = (time.perf_counter() - t0) * 1000
            # The run timeout counts from the first step: agent start-up has its own bound
            # (the connect timeout), and a slow machine must not eat the steps' time.
            deadline = loop.time() + wf.timeout if wf.timeout else None
            self._sched = Scheduler(
                wf.steps,
                concurrency=wf.concurrency,
                finally_steps=wf.finally_steps,
                completed=(resume.completed if resume else {}).keys(),
                attempts=self._base_attempts,
                items_done={k: v.keys() for k, v in self._item_results.items()},
            )
            try:
                await self._loop(deadline)
            except asyncio.CancelledError:
                await self._cancel_running()
                self.emit(ev.RUN_INTERRUPTED, error="interrupted by the user")
                self.flush()
                raise
            status = self._final_status()
            outputs = self._render_outputs(status)
            error = None
            if status == RunStatus.FAILED:
                tolerated = {s.step_id for s in wf.all_steps if s.continue_on_error}
                failed = [s for s, o in self.outcomes.items() if o.status == StepStatus.FAILED and s not in tolerated]
                error = f"step(s) failed: {', '.join(failed)}" if failed else "run failed"
            elif status == RunStatus.TIMED_OUT:
                error = f"run timed out after {wf.timeout:g}s"
            term = {
                RunStatus.COMPLETED: ev.RUN_COMPLETED,
                RunStatus.FAILED: ev.RUN_FAILED,
                RunStatus.TIMED_OUT: ev.RUN_TIMED_OUT,
                RunStatus.CANCELLED: ev.RUN_CANCELLED,
            }[status]
            self.emit(term, error=error, data={"outputs": outputs})
            self.flush()
            return self._result(started, status, outputs, preflight_ms, error)
        finally:
            if self._lease_timer is not None:
                self._lease_timer.cancel()
            try:
                self.flush()
                if self._owner is not None and self.store is not None:
                    self.store.release_run(self.run_id, self._owner)
            except RunnerError:
                pass  # the store already failed; that error is the one being raised
            if self._own_pool and self._pool is not None:
                await self._pool.close()

    def _claim(self) -> None:
        """Take the run's lease, or refuse: two processes must never execute one run."""
        assert self.store is not None
        if self._owner is None:
            self._owner = take_lease(self.store, self.run_id)
        # Renewed from now on, agent start-up included (a slow agent must not let it lapse).
        self._lease_timer = asyncio.get_running_loop().call_later(LEASE_TTL_S / 3, self._renew)

    def _renew(self) -> None:
        """Keep the lease alive while the run goes on (a timer callback on the loop)."""
        if self._owner is None or self.store is None:
            return
        from runner.errors import RunBusy

        fatal: RunnerError | None = None
        try:
            if not self.store.renew_run(self.run_id, self._owner, LEASE_TTL_S):
                fatal = RunBusy(f"run {self.run_id} lost its lease to another runner; this runner stopped")
        except StoreError as exc:
            fatal = exc
        if fatal is None:
            self._lease_timer = asyncio.get_running_loop().call_later(LEASE_TTL_S / 3, self._renew)
            return
        self._fatal = fatal
        self._owner = None  # not ours any more: never release another runner's lease
        self._lease_lost = isinstance(fatal, RunBusy)  # and write nothing more about the run
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()
        elif self._preflight_task is not None:
            self._preflight_task.cancel()

    def cancel(self) -> None:
        """Ask a running run to stop: pending steps are cancelled, ``finally`` still runs."""
        self._cancelled = True
        if hasattr(self, "_wake"):
            self._wake.set()

    # -- preflight ----------------------------------------------------------------------------
    async def _preflight(self) -> None:
        """Connect every agent the workflow can use, in parallel, and check every tool name."""
        wf = self.wf
        actx = {"inputs": self._ctx["inputs"], "secrets": self.secrets, "workflow": self._ctx["workflow"]}
        for aid, a in list(self.agents.items()):
            try:
                self.agents[aid] = render_agent(a, actx)
            except TemplateError as exc:
                raise AgentError(self.masker.mask_text(f"agent '{aid}': {exc}"), agent_id=aid) from None
        needed: dict[str, AgentSpec] = {}
        problems: list[Problem] = []
        for s in wf.all_steps:
            if s.uses is not None:
                continue
            cands = eligible(s, self.agents)
            self._candidates[s.step_id] = cands
            if not cands[0]:
                problems.append(
                    Problem(
                        f"step '{s.step_id}': no agent can run it ({describe_need(s)})",
                        path=f"$.steps[{s.step_id}]",
                        file=wf.source or "<string>",
                    )
                )
            for aid in cands[0]:
                needed[aid] = self.agents[aid]
        if problems:
            raise WorkflowInvalid(positioned(self.wf, problems))
        remote = [a for a in needed.values() if a.transport != TransportKind.PULL]
        if remote and self._pool is None:
            from runner.agents.pool import AgentPool

            self._pool = AgentPool()
        if remote:
            assert self._pool is not None
            connect_timeout = 30.0
            if wf.timeout:
                # The steps get the whole `timeout` (their clock starts after preflight), but
                # no agent may take longer than that to start: a dead URL must not hold a
                # `timeout: 3s` run for the 30 s default connect timeout.
                connect_timeout = min(connect_timeout, wf.timeout)
                remote = [
                    dataclasses.replace(a, timeout=wf.timeout) if a.timeout and a.timeout > wf.timeout else a
                    for a in remote
                ]
            errors = await self._pool.open(remote, base_dir=self.base_dir, connect_timeout=connect_timeout)
            for aid, err in errors.items():
                if err is None:
                    continue
                spec = self.agents[aid]
                if spec.required:
                    msg = str(err)
                    if aid not in msg:
                        msg = f"agent '{aid}' could not be reached: {msg}"
                    raise AgentError(self.masker.mask_text(msg), agent_id=aid)
                self._unavailable.add(aid)
        connected = self._conns = self._pool.connected() if self._pool is not None else {}
        for aid, a in needed.items():
            if a.max_concurrency:
                self._sems[aid] = asyncio.Semaphore(a.max_concurrency)
        for s in wf.all_steps:
            if not s.tool_to_call:
                continue
            ids = [c for c in self._candidates[s.step_id][0] if c in connected]
            if ids and not any(s.tool_to_call in connected[c].tools for c in ids):

                def tools(c: str) -> str:
                    return ", ".join(sorted(connected[c].tools)) or "(no tools)"

                if len(ids) == 1:
                    detail = f"agent '{ids[0]}' has no tool '{s.tool_to_call}'; it offers: {tools(ids[0])}"
                else:
                    detail = f"none of the agents {', '.join(ids)} has a tool '{s.tool_to_call}'; " + "; ".join(
                        f"'{c}' offers: {tools(c)}" for c in ids
                    )
                problems.append(
                    Problem(
                        f"step '{s.step_id}': {detail}",
                        path=f"$.steps[{s.step_id}].tool_to_call",
                        file=wf.source or "<string>",
                    )
                )
        if problems:
            raise WorkflowInvalid(positioned(self.wf, problems))

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self, deadline: float | None) -> None:
        sched = self._sched
        loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        timers: list[asyncio.TimerHandle] = []
        if deadline is not None:
            timers.append(loop.call_at(deadline, wake.set))
        armed_retry: float | None = None
        finished = self._finished
        try:
            while True:
                self._decide()
                self._drain()
                if self._cancelled or (deadline is not None and not self._timed_out and loop.time() >= deadline):
                    if not self._cancelled:
                        self._timed_out = True
                    if self._main_status is None:
                        reason = "run timed out" if self._timed_out else "run cancelled"
                        sched.cancel_pending(reason)
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
                    # Task and two event-loop hops per step. Ctrl-C still cancels it.
                    await self._exec(started[0], inline=True)
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
                if cond_c is not None:
                    try:
                        ok = render_condition(cond_c, ctx)
                    except TemplateError as exc:
                        sched.fail_step(sid, f"if: {exc}")
                        continue
                    if not ok:
                        sched.skip(sid, "if: condition was false")
                        continue
                if each_c is not None:
                    try:
                        items = each_c.render(ctx)
                    except TemplateError as exc:
                        sched.fail_step(sid, f"for_each: {exc}")
                        continue
                    if isinstance(items, dict):
                        items = list(items.items())
                    if not isinstance(items, list):
                        sched.fail_step(sid, f"for_each: expected a list, got {type(items).__name__}")
                        continue
                    self._items[sid] = items
                    self._item_results.setdefault(sid, {})
                    sched.activate(sid, len(items))
                    self._step_started(sid, sched.attempts(sid), None)
                else:
                    sched.activate(sid)
            if self._main_status is None and sched.main_done:
                self._enter_finally()

    def _enter_finally(self) -> None:
        """The main DAG is over: fix ``run.status`` as ``finally`` steps will see it."""
        if self._timed_out:
            st = RunStatus.TIMED_OUT
        elif self._cancelled:
            st = RunStatus.CANCELLED
        elif self._sched.failed:
            st = RunStatus.FAILED
        else:
            st = RunStatus.COMPLETED
        self._main_status = st
        self._ctx["run"] = {"id": self.run_id, "status": str(st)}

    def _final_status(self) -> RunStatus:
        if self._main_status is None:
            self._enter_finally()
        assert self._main_status is not None
        if self._main_status == RunStatus.COMPLETED and self._sched.failed:
            return RunStatus.FAILED  # a finally step failed
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
        for tr in self._sched.transitions():
            sid = tr.step_id
            o = self.outcomes[sid]
            o.status = tr.status
            if o.finished_at is None or tr.status != StepStatus.COMPLETED:
                o.finished_at = time.time()
            if tr.status == StepStatus.COMPLETED:
                if sid in self._items:
                    res = self._item_results.get(sid, {})
                    o.result = [res.get(i) for i in range(len(self._items[sid]))]
                    o.text = None
                self._ctx["steps"][sid] = o.as_context()
                self.emit(
                    ev.STEP_COMPLETED,
                    sid,
                    attempt=o.attempts or None,
                    agent_id=o.agent_id,
                    data={"result": o.result, "text": o.text, "content": o.content, "duration_ms": o.duration_ms},
                )
            else:
                if tr.status != StepStatus.SKIPPED:
                    o.error = tr.reason
                if sid in self._items and self._item_results.get(sid):
                    # A failed fan-out still reports what its finished items produced
                    # (None where an item failed or never ran), like a failed run does.
                    res = self._item_results[sid]
                    o.result = [res.get(i) for i in range(len(self._items[sid]))]
                self._ctx["steps"][sid] = o.as_context()
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
                o.result, o.text, o.content = res
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
    def _step_started(self, sid: str, attempt: int | None, agent_id: str | None) -> None:
        o = self.outcomes[sid]
        if o.started_at is None:
            o.started_at = time.time()
        if attempt is not None:
            o.attempts = max(o.attempts, attempt)
        if agent_id is not None:
            o.agent_id = agent_id
        o.status = StepStatus.IN_PROGRESS
        self.emit(ev.STEP_STARTED, sid, attempt=attempt, agent_id=agent_id)

    async def _exec(self, task: Task, inline: bool = False) -> None:
        try:
            res = await self._dispatch(task)
            self._finished.append((task, res, None))
        except ToolFailure as exc:
            self._finished.append((task, None, exc))
        except asyncio.CancelledError:
            self._finished.append((task, None, ToolFailure("cancelled", retryable=False)))
            if inline:
                raise  # the run itself is being cancelled (Ctrl-C)
        except TemplateError as exc:
            where = "with" if self._specs[task.step_id].uses is not None else "tool_arguments"
            self._finished.append((task, None, ToolFailure(f"{where}: {exc}", retryable=False)))
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
        args_c = self._compile(spec)[0]
        ctx = self._ctx
        if task.index is not None:
            ctx = {**ctx, "item": self._items[sid][task.index], "index": task.index}
        arguments = args_c.render(ctx)
        if spec.uses is not None:
            return await self._run_uses(sid, spec, task, arguments)
        if spec.tool_to_call is None:
            return await self._await_pull(sid, spec, task, arguments)
        if not isinstance(arguments, dict):  # noqa: SIM102
            raise ToolFailure(
                f"tool_arguments must render to a mapping, got {type(arguments).__name__}", retryable=False
            )
        ids, n_primary = self._candidates[sid]
        tripped = self._pool.open_circuits() if self._pool is not None else ()
        busy = len(ids) > 1 or self._unavailable or tripped
        cands = order(ids, n_primary, self._load, self._unavailable, tripped) if busy else ids
        connected = self._conns
        last: ToolFailure | None = None
        key = f"{self.run_id}:{sid}:{task.attempt}" + (f":{task.index}" if task.index is not None else "")
        for aid in cands:
            conn = connected.get(aid)
            if conn is None or spec.tool_to_call not in conn.tools:
                continue
            if task.index is None:
                self._step_started(sid, task.attempt, aid)
            else:
                o = self.outcomes[sid]
                o.attempts = max(o.attempts, task.attempt)
                o.agent_id = aid
                self.emit(ev.ITEM_STARTED, sid, attempt=task.attempt, agent_id=aid, data={"index": task.index})
            on_progress = None
            if self.sinks:

                def on_progress(p: float, total: float | None, msg: str | None, _sid: str = sid) -> None:
                    self._emit_progress(_sid, p, total, msg)

            self.flush()
            sem = self._sems.get(aid)
            self._load[aid] = self._load.get(aid, 0) + 1
            try:
                if sem is not None:
                    async with sem:
                        r = await conn.call(
                            spec.tool_to_call,
                            arguments,
                            timeout=spec.timeout,
                            meta={IDEMPOTENCY_META_KEY: key},
                            on_progress=on_progress,
                        )
                else:
                    r = await conn.call(
                        spec.tool_to_call,
                        arguments,
                        timeout=spec.timeout,
                        meta={IDEMPOTENCY_META_KEY: key},
                        on_progress=on_progress,
                    )
            except ToolFailure as exc:
                exc.agent_id = exc.agent_id or aid
                if _is_unreachable(exc):
                    self._unavailable.add(aid)
                    last = exc
                    continue
                raise
            finally:
                self._load[aid] -= 1
            if r.is_error:
                raise ToolFailure(r.text or f"tool '{spec.tool_to_call}' reported an error", agent_id=aid)
            result, text, content = r.result, r.text, r.content
            if self.secrets:
                result, text = self.masker.mask(result), self.masker.mask_text(text)
                content = self.masker.mask(content)
            return result, text, content
        if last is not None:
            raise last
        raise ToolFailure(
            f"step '{sid}': no available agent offers tool '{spec.tool_to_call}'"
            + (f" (unavailable: {', '.join(sorted(self._unavailable))})" if self._unavailable else "")
            + (f" (circuit open: {', '.join(sorted(tripped))})" if tripped else "")
        )

    async def _await_pull(
        self, sid: str, spec: StepSpec, task: Task, arguments: Any
    ) -> tuple[Any, str | None, list[Any] | None]:
        """A pull step: assign it, then wait for ``report()`` (from ``report_step_completion``)."""
        ids, n_primary = self._candidates.get(sid, ([], 0))
        cands = order(ids, n_primary, self._load, self._unavailable)
        aid = cands[0] if cands else None
        if task.index is None:
            self._step_started(sid, task.attempt, aid)
        self.flush()
        fut: asyncio.Future[tuple[Any, str | None]] = asyncio.get_running_loop().create_future()
        self._pull[(sid, task.index)] = (fut, aid, arguments)
        try:
            if spec.timeout is not None:
                result, error = await asyncio.wait_for(fut, spec.timeout)
            else:
                result, error = await fut
        except asyncio.TimeoutError:
            raise ToolFailure(
                f"pull step '{sid}' was not reported within {spec.timeout:g}s" + (f" by agent '{aid}'" if aid else "")
            ) from None
        finally:
            self._pull.pop((sid, task.index), None)
        if error is not None:
            raise ToolFailure(error, agent_id=aid)
        text = result if isinstance(result, str) else None
        return (self.masker.mask(result) if self.secrets else result), text, None

    def assigned(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        """Pull steps waiting for a report (for ``list_assigned_steps``)."""
        return [
            {"run_id": self.run_id, "step_id": sid, "index": idx, "agent_id": aid, "arguments": args}
            for (sid, idx), (_f, aid, args) in self._pull.items()
            if agent_id is None or aid == agent_id
        ]

    def report(
        self,
        step_id: str,
        *,
        result: Any = None,
        error: str | None = None,
        agent_id: str | None = None,
        index: int | None = None,
    ) -> None:
        """Complete (or fail, with ``error``) a waiting pull step. Raises KeyError if none waits."""
        entry = self._pull.get((step_id, index))
        if entry is None:
            raise KeyError(f"step '{step_id}' of run {self.run_id} is not waiting for a report")
        fut, aid, _args = entry
        if agent_id is not None and aid is not None and agent_id != aid:
            raise PermissionError(f"step '{step_id}' is assigned to agent '{aid}', not '{agent_id}'")
        if not fut.done():
            fut.set_result((result, error))

    async def _run_uses(
        self, sid: str, spec: StepSpec, task: Task, with_values: dict[str, Any]
    ) -> tuple[Any, str | None, list[Any] | None]:
        """A ``uses:`` step: run the pattern (or workflow file) as a nested run on the same agents.

        The pattern sees only its own ``inputs`` (the rendered ``with``) and its own steps;
        its step events reach this run's sinks and store as ``<step>.<inner step>``.
        Its result is the pattern's ``outputs``.
        """
        from runner.loader import load_workflow
        from runner.patterns import resolve_uses

        path = resolve_uses(spec.uses or "", self.wf.source)
        registry = list(self.agents.values())
        child_wf = load_workflow(str(path), registry=registry)
        if task.index is None:
            self._step_started(sid, task.attempt, None)

        self.flush()

        def forward(e: Event) -> None:
            if e.step_id is None or e.type.startswith("run_"):
                return
            fwd = dataclasses.replace(e, run_id=self.run_id, step_id=f"{sid}.{e.step_id}")
            if self.store is not None and fwd.type != ev.STEP_PROGRESS:
                self._pending.append(fwd)
                if fwd.type == ev.STEP_STARTED:
                    self.flush()
            for sink in self.sinks:
                sink(fwd)

        child = Engine(
            child_wf,
            sinks=[forward],
            registry=registry,
            secrets=self.secrets,
            pool=self._pool,
            base_dir=str(path.parent),
        )
        # The attempt is part of the nested run's id, so its steps' idempotency keys change
        # when the `uses:` step is retried or resumed (an agent must not see a repeat).
        res = await child.run(with_values, run_id=f"{self.run_id}/{sid}@{task.attempt}")
        if res.status != RunStatus.COMPLETED:
            raise ToolFailure(f"uses {spec.uses}: {res.status}: {res.error or 'failed'}", retryable=True)
        return res.outputs, None, None

    # -- outputs --------------------------------------------------------------------------------
    def _render_outputs(self, status: RunStatus) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, tmpl in self.wf.outputs.items():
            try:
                out[name] = compile_value(tmpl).render(self._ctx)
            except TemplateError as exc:
                out[name] = None
                if status == RunStatus.COMPLETED:
                    self.emit("output_failed", error=f"outputs.{name}: {exc}", data={"output": name})
        return self.masker.mask(out) if self.secrets else out

    def partial_result(self, status: RunStatus, error: str) -> RunResult | None:
        """The result so far of a run that stopped abnormally (Ctrl-C): what had finished."""
        if not self.run_id:
            return None
        return self._result(self._started, status, {}, self._preflight_ms, error)

    def _result(
        self, started: float, status: RunStatus, outputs: dict[str, Any], preflight_ms: float, error: str | None
    ) -> RunResult:
        return RunResult(
            run_id=self.run_id,
            workflow=self.wf.name,
            status=status,
            outputs=outputs,
            steps=dict(self.outcomes),
            started_at=started,
            finished_at=time.time(),
            preflight_ms=preflight_ms,
            error=error,
        )


def _is_unreachable(exc: ToolFailure) -> bool:
    kind = exc.extra.get("kind") if exc.extra else None
    if kind is not None:
        return kind == "unreachable"
    return "unreachable" in exc.message
