"""The run lifecycle on SQL: pull-step assignments, reports and cancels from any process.

A mixin of :class:`runner.store.sql.SqlStore` (kept apart so neither module grows past a
few hundred lines). Each public method is one transaction that locks the run's row
first — the row the executing process locks for its own writes — so a report, a cancel
and the engine's group commit take turns, and the decision (``lifecycle.py``, pure) is
made on rows nobody can change under it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from runner.core.lifecycle import decide_cancel, decide_report, report_body, report_event, still_waiting
from runner.model import events as ev
from runner.model.events import Event, now_iso
from runner.store.base import Assignment, RunRecord, StepRecord
from runner.store.leases import lease_is_free
from runner.store.sql_rows import event_row, run_row, to_json

_ASG_COLS = "run_id, step_id, idx, agent_id, attempt, arguments, assigned_at, deadline, status, reported_at, reported_by, report"
_SIGNALS = "('" + "', '".join(ev.SIGNAL_TYPES) + "')"  # spelled as the partial index spells it

LIFECYCLE_SQL: dict[str, str] = {
    "asg_put": f"INSERT INTO assignments ({_ASG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'waiting', NULL, NULL, NULL) "
    "ON CONFLICT (run_id, step_id, idx) DO UPDATE SET agent_id = excluded.agent_id, attempt = excluded.attempt, "
    "arguments = excluded.arguments, assigned_at = excluded.assigned_at, deadline = excluded.deadline, "
    "status = 'waiting', reported_at = NULL, reported_by = NULL, report = NULL "
    # a resumed run re-assigns the same attempt: a report made meanwhile must stay
    "WHERE assignments.attempt <> excluded.attempt OR assignments.status = 'waiting'",
    "asg_get": f"SELECT {_ASG_COLS} FROM assignments WHERE run_id = ? AND step_id = ? AND idx = ?",
    "asg_report": "UPDATE assignments SET status = ?, reported_at = ?, reported_by = ?, report = ? "
    "WHERE run_id = ? AND step_id = ? AND idx = ?",
    "asg_waiting": "SELECT "
    + ", ".join(f"a.{c}" for c in _ASG_COLS.split(", "))
    + ", r.workflow_name, s.status, s.attempts, s.error, r.steps_lag FROM assignments a "
    "JOIN runs r ON r.run_id = a.run_id LEFT JOIN step_rows s ON s.run_id = a.run_id AND s.step_id = a.step_id "
    "WHERE a.status = 'waiting' AND r.status IN ('running', 'interrupted')",
    # A run ended by `runner cancel` while nobody held its lease: the lease is taken from
    # whoever held it last (a runner paused past it may wake), so its writes are refused.
    "run_unclaim": "UPDATE runs SET owner = NULL, lease_until = NULL, epoch = epoch + 1 WHERE run_id = ?",
    "signals": "SELECT seq, run_id, ts, type, step_id, attempt, agent_id, error, data FROM events "
    f"WHERE run_id = ? AND seq > ? AND type IN {_SIGNALS} ORDER BY seq",
}


def _asg_row(r: Sequence[Any]) -> Assignment:
    return Assignment(
        run_id=r[0],
        step_id=r[1],
        index=None if r[2] < 0 else int(r[2]),
        agent_id=r[3],
        attempt=int(r[4]),
        arguments=None if r[5] is None else json.loads(r[5]),
        assigned_at=r[6],
        deadline=r[7],
        status=r[8],
        reported_at=r[9],
        reported_by=r[10],
        report=None if r[11] is None else json.loads(r[11]),
    )


class SqlLifecycle:
    """Assignments, reports, cancels and signals; needs SqlStore's ``_tx``, ``_sql`` and helpers."""

    url: str
    _sql: dict[str, str]
    _cur: Any

    # Provided by SqlStore (declared for the type checker).
    def _tx(self, write: bool = True) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _adapt(self, stmt: str) -> str:
        raise NotImplementedError

    def _project(self, event: Event) -> None:
        raise NotImplementedError

    def _read_step(self, run_id: str, step_id: str) -> StepRecord | None:
        raise NotImplementedError

    def _lifecycle_sql(self) -> dict[str, str]:
        return {name: self._adapt(stmt) for name, stmt in LIFECYCLE_SQL.items()}

    def _put_assignment(self, e: Event) -> None:
        """The row of a ``step_assigned`` event (inside the engine's transaction)."""
        d = e.data
        index = d.get("index")
        self._cur.execute(
            self._sql["asg_put"],
            (
                e.run_id,
                e.step_id,
                -1 if index is None else int(index),
                e.agent_id,
                e.attempt or 1,
                to_json(d.get("arguments"), f"the arguments of step {e.step_id}"),
                e.ts,
                d.get("deadline"),
            ),
        )

    def get_signals(self, run_id: str, after_seq: int = 0) -> list[tuple[int, Event]]:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["signals"], (run_id, after_seq))
            return [event_row(r) for r in cur.fetchall()]

    def list_assignments(self, agent_id: str | None = None, run_id: str | None = None) -> list[Assignment]:
        stmt, params = self._sql["asg_waiting"], []
        if agent_id is not None:
            stmt += " AND a.agent_id = ?"
            params.append(agent_id)
        if run_id is not None:
            stmt += " AND a.run_id = ?"
            params.append(run_id)
        stmt += " ORDER BY a.assigned_at, a.run_id, a.step_id, a.idx"
        out = []
        with self._tx(write=False) as cur:
            cur.execute(self._adapt(stmt), params)
            for r in cur.fetchall():
                asg = _asg_row(r[:12])
                asg.workflow_name = r[12]
                step = None
                if r[16] is not None:  # the step rows lag behind the log: fold its tail
                    step = self._read_step(asg.run_id, asg.step_id)
                elif r[13] is not None:
                    step = StepRecord(run_id=asg.run_id, step_id=asg.step_id, status=r[13], attempts=r[14], error=r[15])
                if still_waiting(step, asg):
                    out.append(asg)
        return out

    def get_assignment(self, run_id: str, step_id: str, index: int | None = None) -> Assignment | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["asg_get"], (run_id, step_id, -1 if index is None else index))
            row = cur.fetchone()
        return _asg_row(row) if row else None

    def _locked_run(self, cur: Any, run_id: str) -> RunRecord | None:
        cur.execute(self._sql["run_lock"], (run_id,))
        row = cur.fetchone()
        return run_row(row) if row else None

    def report_step(
        self,
        run_id: str,
        step_id: str,
        agent_id: str,
        *,
        index: int | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> str:
        body = report_body(result, error)
        encoded = to_json(body, f"the report on step {step_id}")
        idx = -1 if index is None else index
        with self._tx() as cur:
            run = self._locked_run(cur, run_id)
            step = self._read_step(run_id, step_id)
            cur.execute(self._sql["asg_get"], (run_id, step_id, idx))
            arow = cur.fetchone()
            asg = _asg_row(arow) if arow else None
            now = now_iso()
            verdict = decide_report(
                run,
                step,
                asg,
                run_id=run_id,
                step_id=step_id,
                agent_id=agent_id,
                body=body,
                now=now,
                url=self.url,
            )
            if verdict == "duplicate":
                return "duplicate"
            assert asg is not None
            self._project(report_event(asg, agent_id, body, error, now))
            status = "failed" if error is not None else "completed"
            cur.execute(self._sql["asg_report"], (status, now, agent_id, encoded, run_id, step_id, idx))
        return "accepted"

    def cancel_run(self, run_id: str) -> str:
        with self._tx() as cur:
            run = self._locked_run(cur, run_id)
            cur.execute(self._sql["run_owner"], (run_id,))
            row = cur.fetchone()
            alive = bool(row and row[0]) and not lease_is_free(row[0], row[1], "")
            verdict = decide_cancel(run, run_id=run_id, holder_alive=alive, url=self.url)
            if verdict == "end":
                self._project(Event(type=ev.RUN_CANCELLED, run_id=run_id, error="cancelled", data={"outputs": {}}))
                cur.execute(self._sql["run_unclaim"], (run_id,))
                return "cancelled"
            if verdict == "request":
                self._project(Event(type=ev.RUN_CANCEL_REQUESTED, run_id=run_id))
                return "requested"
            return "already"


