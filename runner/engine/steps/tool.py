"""A tool step: one MCP ``tools/call`` on the chosen agent, with fallbacks.

Candidates are ordered least loaded first, skipping agents that are down for this run or
whose circuit is open. A call that was never sent (the agent is unreachable) moves on to
the next candidate with the same attempt; a call that may have reached the agent is
never sent again here — its failure goes back to the step's ``retry`` policy, which makes
a new attempt with a new idempotency key (``RUN:STEP:ATTEMPT[:ITEM]`` in ``_meta``).
"""

from __future__ import annotations

from typing import Any

from runner.core.scheduler import Task
from runner.core.selection import order
from runner.engine.steps.base import Produced, StepRun
from runner.errors import ToolFailure
from runner.model import StepSpec
from runner.model import events as ev
from runner.model.data import NotData, as_data

IDEMPOTENCY_META_KEY = "runner/idempotency_key"


_NOT_SENT = frozenset({"unreachable", "circuit_open"})  # failure kinds of calls the agent never saw


def _is_unreachable(exc: ToolFailure) -> bool:
    """A failure of a call that never reached the agent (so another agent may take it).

    ``lost_in_flight`` (the agent died during the call) is not: the call may have run, so it
    goes back to the step's retry policy instead of to the next agent.
    """
    kind = exc.extra.get("kind") if exc.extra else None
    if kind is not None:
        return kind in _NOT_SENT
    return "unreachable" in exc.message


class ToolStep:
    """Dispatches tool steps; built after preflight, so it holds the run's agent tables directly."""

    def __init__(self, run: StepRun) -> None:
        agents = run.agents
        self.ctx = run
        self._candidates = agents.candidates
        self._conns = agents.conns
        self._sems = agents.sems
        self._load = agents.load
        self._unavailable = agents.unavailable
        self._pool = agents.pool
        self._emit = run.journal.emit
        self._circuit_seen: dict[str, float | None] = {}  # agent -> the opening already recorded
        self._flush = run.journal.flush
        self._live = bool(run.journal.sinks)
        self._progress = run.journal.progress

    def _circuit_event(self, conn: Any, aid: str, sid: str, attempt: int) -> None:
        """Record the breaker opening (or staying open after a failed probe) in the run's log."""
        b = conn.breaker
        if self._circuit_seen.get(aid) == b.opened_at:
            return
        self._circuit_seen[aid] = b.opened_at
        self._emit(
            ev.AGENT_CIRCUIT_OPENED,
            sid,
            attempt=attempt,
            agent_id=aid,
            data={"circuit": str(conn.circuit), "failures": b.failures, "cooldown_s": b.cooldown},
        )

    async def run(
        self, task: Task, spec: StepSpec, arguments: Any, chosen: tuple[list[str], int] | None = None
    ) -> Produced:
        """Call ``spec.tool_to_call`` on the best candidate; ``chosen`` overrides the step's
        preflight candidates (a selection rendered for this task: ``per_task.py``)."""
        sid = task.step_id
        tool = spec.tool_to_call
        assert tool is not None
        if not isinstance(arguments, dict):
            raise ToolFailure(
                f"tool_arguments must render to a mapping, got {type(arguments).__name__}", retryable=False
            )
        run = self.ctx
        ids, n_primary = self._candidates[sid] if chosen is None else chosen
        unavailable = self._unavailable
        tripped = self._pool.open_circuits() if self._pool is not None else ()
        if len(ids) > 1 or unavailable or tripped:
            cands = order(ids, n_primary, self._load, unavailable, tripped)
        else:
            cands = ids
        connected = self._conns
        last: ToolFailure | None = None
        index = task.index
        key = f"{run.run_id}:{sid}:{task.attempt}" if index is None else f"{run.run_id}:{sid}:{task.attempt}:{index}"
        load = self._load
        for aid in cands:
            conn = connected.get(aid)
            if conn is None or tool not in conn.tools:
                continue
            if index is None:
                run.step_started(sid, task.attempt, aid)
            else:
                view = run.outcomes[sid].view
                if task.attempt > view["attempts"]:
                    view["attempts"] = task.attempt
                view["agent_id"] = aid
                self._emit(ev.ITEM_STARTED, sid, attempt=task.attempt, agent_id=aid, data={"index": task.index})
            on_progress = None
            if self._live:

                def on_progress(
                    p: float, total: float | None, msg: str | None, _sid: str = sid, _show: Any = self._progress
                ) -> None:
                    _show(_sid, p, total, msg)

            self._flush()
            sem = self._sems.get(aid)
            load[aid] = load.get(aid, 0) + 1
            try:
                if sem is not None:
                    async with sem:
                        r = await conn.call(
                            tool, arguments, timeout=spec.timeout, meta={IDEMPOTENCY_META_KEY: key}, on_progress=on_progress
                        )
                else:
                    r = await conn.call(
                        tool, arguments, timeout=spec.timeout, meta={IDEMPOTENCY_META_KEY: key}, on_progress=on_progress
                    )
            except ToolFailure as exc:
                exc.agent_id = exc.agent_id or aid
                breaker = getattr(conn, "breaker", None)  # fakes in runner.testing have none
                if breaker is not None and breaker.opened_at is not None and exc.extra.get("kind") != "circuit_open":
                    self._circuit_event(conn, aid, sid, task.attempt)
                if _is_unreachable(exc):
                    unavailable.add(aid)
                    last = exc
                    continue
                raise
            finally:
                load[aid] -= 1
            if r.is_error:
                raise ToolFailure(r.text or f"tool '{tool}' reported an error", agent_id=aid)
            result, text, content = r.result, r.text, r.content
            try:  # what goes into the context, the store and the output must be data (a few µs)
                result = as_data(result)
                if content:
                    content = as_data(content)
            except NotData as exc:
                raise ToolFailure(
                    f"tool '{tool}' returned {exc}", retryable=False, agent_id=aid, extra={"kind": "not_data"}
                ) from None
            if run.secrets:
                masker = run.masker
                result, text, content = masker.mask(result), masker.mask_text(text), masker.mask(content)
            return result, text, content
        if last is not None:
            raise last
        raise ToolFailure(
            f"step '{sid}': no available agent offers tool '{tool}'"
            + (f" (unavailable: {', '.join(sorted(unavailable))})" if unavailable else "")
            + (f" (circuit open: {', '.join(sorted(tripped))})" if tripped else "")
        )
