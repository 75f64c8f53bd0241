"""Step rows that follow the event log in batches, read exactly through the log's tail.

Why: the event log is the truth (``replay`` rebuilds every row from it); the ``step_rows``
table is a projection kept for readers. Writing a chain step's row in the same commit
as its events cost two more B-trees (the table and its ``(run_id, step_id)`` index),
two more statements and their page writes on every commit: on SQLite ~40 % of the
store's share of a step. So the process executing a run keeps the records of the steps
it changes in memory and writes their rows in one batch, in the same transaction as
the events that make it due:

* every run event (start, resume, interruption, the end) and every ``step_assigned``
  (a pull step is about to be waited on by other processes);
* at least every :data:`WRITE_EVERY_S` seconds or :data:`WRITE_EVERY_N` changed steps,
  so a long run's rows are never far behind.

Between two batches the run row's ``steps_lag`` is the ``seq`` of the last event whose
step changes the rows hold (NULL: they hold all of them). Every reader of step rows —
``get_steps``, ``get_step``, reports, the waiting assignments — folds the step events
after it onto the rows with the same pure projection (``apply_step_event``), so any
process reads exactly what it read when rows were written at every commit. Items of a
``for_each`` are not deferred: their rows are written with their event, as before.

Invariants (what makes the fold exact):

* ``steps_lag`` is set, to the run's highest ``seq``, *before* the first event the rows
  will not hold is inserted, and cleared in the transaction that writes the rows.
* Only the holder of a run's lease writes its step events (fencing), so one process at
  a time defers a run's rows. A process that starts writing a run's steps (a resume, a
  worker taking over a dead one's run) first picks up the tail its predecessor left.
* A failed transaction drops everything kept in memory (``_forget_steps``): the next
  write reads the rows and the tail again, so nothing of a rolled-back batch survives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from runner.core.projection import apply_step_event, is_run_event, is_step_event, unknown_run
from runner.model.events import RUN_INTERRUPTED, RUN_TERMINAL, STEP_ASSIGNED, Event
from runner.model.records import StepRecord
from runner.store.sql_rows import EVENT_COLS, STEP_COLS, event_row, opt_json, step_params, step_row

WRITE_EVERY_S: Final = 1.0
"""Longest a running run's step rows stay behind its log (checked at each commit)."""

WRITE_EVERY_N: Final = 512
"""Most changed steps kept in memory before their rows are written."""

_LIVE: Final = frozenset({"pending", "in_progress"})  # statuses that more events will change
_SESSION_END: Final = frozenset({*RUN_TERMINAL, RUN_INTERRUPTED})  # this process stops writing the run

STEPS_SQL: Final[dict[str, str]] = {
    "steps_lag_get": "SELECT steps_lag FROM runs WHERE run_id = ?{for_update}",
    "steps_lag_read": "SELECT steps_lag FROM runs WHERE run_id = ?",
    # Rows and lag in ONE statement, so they are one snapshot even where each statement sees
    # the latest commit (PostgreSQL's read committed): a batch written between two reads
    # would otherwise pair old rows with a cleared lag, or new rows with the old lag.
    "steps_lagged": "SELECT r.steps_lag, "
    + ", ".join(f"s.{c}" for c in STEP_COLS.split(", "))
    + " FROM runs r LEFT JOIN step_rows s ON s.run_id = r.run_id WHERE r.run_id = ? ORDER BY s.n",
    "step_lagged": "SELECT r.steps_lag, "
    + ", ".join(f"s.{c}" for c in STEP_COLS.split(", "))
    + " FROM runs r LEFT JOIN step_rows s ON s.run_id = r.run_id AND s.step_id = ? WHERE r.run_id = ?",
    "steps_lag_set": "UPDATE runs SET steps_lag = (SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?) "
    "WHERE run_id = ?",
    "steps_lag_clear": "UPDATE runs SET steps_lag = NULL WHERE run_id = ?",
    "step_ids": "SELECT step_id FROM step_rows WHERE run_id = ?",
    "steps_tail": f"SELECT {EVENT_COLS} FROM events WHERE run_id = ? AND seq > ? AND step_id IS NOT NULL ORDER BY seq",
    "step_tail": f"SELECT {EVENT_COLS} FROM events WHERE run_id = ? AND seq > ? AND step_id = ? ORDER BY seq",
}


class Deferred:
    """One run's step changes this process made and has not written as rows yet."""

    __slots__ = ("records", "dirty", "known", "lagging", "since")

    def __init__(self, known: set[str], lagging: bool) -> None:
        self.records: dict[str, StepRecord] = {}  # current record of each step changed or still live
        self.dirty: dict[str, None] = {}  # ids whose row is behind, in the order they first changed
        self.known = known  # ids that have a row
        self.lagging = lagging  # the run row's steps_lag is set
        self.since = time.monotonic()  # when the rows were last written


class SqlStepRows:
    """The deferred step projection; needs SqlStore's ``_cur``, ``_sql`` and ``_insert_event``."""

    _sql: dict[str, str]
    _cur: Any
    _deferred: dict[str, Deferred]

    def _insert_event(self, e: Event) -> None:
        raise NotImplementedError

    # --- the write path -----------------------------------------------------------------
    def _prepared(self, event: Event) -> bool:
        """True when ``event`` may be inserted before anything else is written for it.

        A step event of a run whose rows are not lagging yet needs ``steps_lag`` set
        first (so the lease check cannot ride on its INSERT; see ``append_many``).
        """
        if not is_step_event(event.type):
            return True
        d = self._deferred.get(event.run_id)
        return d is not None and d.lagging

    def _step_event(self, event: Event, logged: bool) -> None:
        """Log a step or item event; its step's row is brought up to date later, in a batch."""
        run_id, step_id = event.run_id, event.step_id
        if step_id is None:
            apply_step_event(None, event)  # raises: a step event without a step_id
            return
        cur, sql = self._cur, self._sql
        d = self._deferred.get(run_id)
        if d is None:
            d = self._adopt(event)
        if not d.lagging:
            cur.execute(sql["steps_lag_set"], (run_id, run_id))
            d.lagging = True
        old = d.records.get(step_id)
        if old is None and step_id in d.known:
            old = self._row(run_id, step_id)  # written at the last batch, unchanged since
        change = apply_step_event(old, event)
        if not logged:
            self._insert_event(event)
        step = change.step
        if step is not None:
            d.records[step_id] = step
            d.dirty[step_id] = None
        if change.clear_items:
            cur.execute(sql["items_clear"], (run_id, step_id))
        if change.item is not None:
            index, result = change.item
            cur.execute(sql["item_put"], (run_id, step_id, index, opt_json(result, f"item {index} of {step_id}")))

    def _adopt(self, event: Event) -> Deferred:
        """Start keeping a run's step changes: its row ids, and the tail a predecessor left."""
        cur, run_id = self._cur, event.run_id
        cur.execute(self._sql["steps_lag_get"], (run_id,))
        row = cur.fetchone()
        if row is None:
            raise unknown_run(event)
        cur.execute(self._sql["step_ids"], (run_id,))
        d = Deferred({r[0] for r in cur.fetchall()}, lagging=row[0] is not None)
        if row[0] is not None:
            for e in self._tail(run_id, int(row[0])):
                sid = e.step_id
                assert sid is not None
                old = d.records.get(sid)
                if old is None and sid in d.known:
                    old = self._row(run_id, sid)
                change = apply_step_event(old, e)
                if change.step is not None:
                    d.records[sid] = change.step
                    d.dirty[sid] = None
        self._deferred[run_id] = d
        return d

    def _write_due(self, events: Sequence[Event]) -> None:
        """At the end of a batch: write the step rows that are due (see the module docstring)."""
        run_id = events[0].run_id
        force = ended = False
        for e in events:
            if e.run_id != run_id:  # not the engine's batch (one run): settle each run alone
                self._write_due_runs(events)
                return
            if is_run_event(e.type) or e.type == STEP_ASSIGNED:
                force = True
                ended = ended or e.type in _SESSION_END
        self._settle(run_id, force, ended, time.monotonic())

    def _write_due_runs(self, events: Iterable[Event]) -> None:
        forced = {e.run_id for e in events if is_run_event(e.type) or e.type == STEP_ASSIGNED}
        ended = {e.run_id for e in events if e.type in _SESSION_END}
        now = time.monotonic()
        for run_id in dict.fromkeys(e.run_id for e in events):
            self._settle(run_id, run_id in forced, run_id in ended, now)

    def _settle(self, run_id: str, force: bool, ended: bool, now: float) -> None:
        """Write a run's rows if due; forget the run when this session of it ended."""
        d = self._deferred.get(run_id)
        if d is None:
            return
        if d.lagging and (force or len(d.dirty) >= WRITE_EVERY_N or now - d.since >= WRITE_EVERY_S):
            self._write_rows(run_id, d)
        if ended:
            # Nothing more is written for it here (a resume claims it first, and so starts
            # afresh): a long-lived server or worker keeps nothing of the runs it finished.
            del self._deferred[run_id]

    def _write_rows(self, run_id: str, d: Deferred) -> None:
        """Write every row that is behind and clear ``steps_lag`` (one transaction with the batch)."""
        cur, sql = self._cur, self._sql
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for sid in d.dirty:
            rec = d.records[sid]
            if sid in d.known:
                updates.append((*step_params(rec), run_id, sid))
            else:
                inserts.append((run_id, sid, *step_params(rec)))
        if inserts:
            cur.executemany(sql["step_insert"], inserts)
            d.known.update(p[1] for p in inserts)
        if updates:
            cur.executemany(sql["step_update"], updates)
        cur.execute(sql["steps_lag_clear"], (run_id,))
        d.dirty.clear()
        d.lagging = False
        d.since = time.monotonic()
        # Finished steps leave memory: their rows are exact now, and a later event reads them.
        d.records = {k: v for k, v in d.records.items() if v.status in _LIVE}

    def _forget_steps(self, run_id: str | None = None) -> None:
        """Drop what is kept (all runs, or one): the next write reads rows and tail again."""
        if run_id is None:
            self._deferred.clear()
        else:
            self._deferred.pop(run_id, None)

    # --- the read path ------------------------------------------------------------------
    def _row(self, run_id: str, step_id: str) -> StepRecord | None:
        self._cur.execute(self._sql["step_get"], (run_id, step_id))
        row = self._cur.fetchone()
        return step_row(row) if row else None

    def _tail(self, run_id: str, lag: int, step_id: str | None = None) -> list[Event]:
        """The step events the rows do not hold yet (after ``lag``), oldest first.

        Read after the rows, this may include events committed since: only the lease
        holder writes step events, one batch after another, so they extend the rows'
        state in order — the result is exact as of this later read.
        """
        if step_id is None:
            self._cur.execute(self._sql["steps_tail"], (run_id, lag))
        else:
            self._cur.execute(self._sql["step_tail"], (run_id, lag, step_id))
        return [e for e in (event_row(r)[1] for r in self._cur.fetchall()) if is_step_event(e.type)]

    def _read_steps(self, run_id: str) -> list[StepRecord]:
        """A run's step records, exact: the rows, and the tail of the log folded onto them."""
        cur = self._cur
        cur.execute(self._sql["steps_lagged"], (run_id,))
        rows = cur.fetchall()
        steps = [step_row(r[1:]) for r in rows if r[1] is not None]
        lag = rows[0][0] if rows else None
        if lag is None:
            return steps
        by_id = {s.step_id: s for s in steps}
        for e in self._tail(run_id, int(lag)):
            sid = e.step_id
            assert sid is not None
            change = apply_step_event(by_id.get(sid), e)
            if change.step is not None:
                by_id[sid] = change.step  # a new step goes last, as its row would have
        return list(by_id.values())

    def _read_step(self, run_id: str, step_id: str) -> StepRecord | None:
        """One step's record, exact (see ``_read_steps``)."""
        self._cur.execute(self._sql["step_lagged"], (step_id, run_id))
        row = self._cur.fetchone()
        if row is None:
            return None
        step = step_row(row[1:]) if row[1] is not None else None
        if row[0] is not None:
            for e in self._tail(run_id, int(row[0]), step_id):
                change = apply_step_event(step, e)
                if change.step is not None:
                    step = change.step
        return step
