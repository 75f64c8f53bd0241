"""One task's life in the run loop: its call, its errors, its outcome, its step's end.

A base class of ``Engine``, split from ``loop.py`` by job: the loop decides what runs
and when; these methods run one task (arguments rendered from the step's compiled
templates, the handler of its step's kind called), map whatever it raised to a
``ToolFailure`` (or to a fatal stop, for a failing store), feed the outcome back to
the scheduler (retry or not), and turn the scheduler's terminal transitions into the
step's view (``steps.<id>`` in templates) and its journalled event.

These are per-step code: plain methods on the engine (no helper objects, no extra
calls), so a step costs what it cost when they lived in ``loop.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from runner.core.scheduler import Scheduler, Task
from runner.engine.positions import step_error
from runner.engine.steps import StepHandler
from runner.engine.steps.per_task import SELECTION_FAILED
from runner.errors import RunnerError, StoreError, ToolFailure
from runner.model import RunStatus, StepOutcome, StepSpec, StepStatus, Workflow
from runner.model import events as ev
from runner.template import Compiled, Masker, TemplateError, compile_value, limit_renders

__all__ = ["TaskRunner"]

_COMPLETED = StepStatus.COMPLETED


class TaskRunner:
    """Runs, settles and concludes the engine's tasks (the engine's state, declared here)."""

    wf: Workflow
    secrets: dict[str, str]
    masker: Masker
    emit: Callable[..., None]
    outcomes: Mapping[str, StepOutcome]
    _sched: Scheduler
    _ctx: dict[str, Any]
    _items: dict[str, list[Any]]
    _item_results: dict[str, dict[int, Any]]
    _finished: deque[tuple[Task, Any, ToolFailure | None]]
    _running: dict[Task, asyncio.Task[None]]
    _compiled: dict[str, tuple[Compiled, Compiled | None, Compiled | None]]
    _deadline: float | None
    _specs: dict[str, StepSpec]
    _kinds: dict[str, str]
    _handlers: dict[str, StepHandler]
    _base_attempts: dict[str, int]
    _fatal: BaseException | None
    _inline_cancel: bool
    _cancelled: bool
    _aborted: str | None
    _main_status: RunStatus | None
    _wake: asyncio.Event

    def _compile(self, spec: StepSpec) -> tuple[Compiled, Compiled | None, Compiled | None]:
        c = self._compiled.get(spec.step_id)
        if c is None:
            cond = spec.condition
            args = spec.with_ if spec.calls_workflow else spec.tool_arguments
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
        for sid, status, reason in self._sched.transitions():
            view = (o := self.outcomes[sid]).view  # the scheduler has set its status
            if o.finished_at is None or status is not _COMPLETED:
                o.finished_at = time.time()
            if status is _COMPLETED:
                if sid in self._items:
                    res = self._item_results.get(sid, {})
                    view["result"] = [res.get(i) for i in range(len(self._items[sid]))]
                    view["text"] = None
                steps_ctx[sid] = view
                began = o.started_at  # o.duration_ms, written out (once a step)
                ms = None if began is None else round((o.finished_at - began) * 1000.0, 3)
                self.emit(
                    ev.STEP_COMPLETED,
                    sid,
                    attempt=view["attempts"] or None,
                    agent_id=view["agent_id"],
                    data={"result": view["result"], "text": view["text"], "content": view["content"], "duration_ms": ms},
                )
            else:
                if status is not StepStatus.SKIPPED:
                    view["error"] = reason
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
                }[status]
                if status is StepStatus.SKIPPED:
                    data: dict[str, Any] | None = {"reason": reason}
                else:
                    # A failed or cancelled step that ran says how long, as a completed one
                    # does: `runs show` reads it from the stored step row. One that failed
                    # before its call started took 0 ms, as in the run's result (finish.py).
                    ms = o.duration_ms
                    if ms is None and status is StepStatus.FAILED:
                        ms = 0.0
                    data = {"duration_ms": ms} if ms is not None else None
                self.emit(kind, sid, attempt=o.attempts or None, agent_id=o.agent_id, error=o.error, data=data)
                if status == StepStatus.FAILED and sid in self._items:
                    for t, fut in list(self._running.items()):
                        if t.step_id == sid:
                            fut.cancel()

    def _settle(self, task: Task, res: Any, err: ToolFailure | None) -> None:
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
                    data={"index": task.index, "of": len(self._items[sid]), "result": res[0]},
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
                ev.ITEM_FAILED,
                sid,
                attempt=task.attempt,
                agent_id=err.agent_id,
                error=msg,
                data={"index": task.index, "of": len(self._items[sid])},
            )
        was_active = sched.is_active(sid)
        now = asyncio.get_running_loop().time()  # a retry's backoff counts from now
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
            # The arguments rendered and the handler awaited here, not in a coroutine of their own.
            sid = task.step_id
            spec = self._specs[sid]
            ctx = self._ctx
            if task.index is not None:
                i = task.index
                prev = self._item_results[sid].get(i - 1) if i else None
                ctx = {**ctx, "item": self._items[sid][i], "index": i, "previous": prev}
            limit_renders(spec.timeout, None if spec.is_finally else self._deadline)  # renders block the loop
            compiled = self._compiled.get(sid)
            arguments = (compiled if compiled is not None else self._compile(spec))[0].render(ctx)
            res = await self._handlers[self._kinds[sid]].run(task, spec, arguments)
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
        if not inline:  # the loop awaits an inline task itself: nothing to wake
            self._wake.set()

    def task_context(self, task: Task) -> Mapping[str, Any]:
        """The template context of ``task`` as ``_exec`` builds it (for per-task selection:
        ``item``, ``index`` and ``previous``, the result of the item before, for an item)."""
        if task.index is None:
            return self._ctx
        i, sid = task.index, task.step_id
        prev = self._item_results[sid].get(i - 1) if i else None
        return {**self._ctx, "item": self._items[sid][i], "index": i, "previous": prev}
