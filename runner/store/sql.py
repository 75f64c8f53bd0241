"""The store on SQL: one implementation for SQLite and PostgreSQL, dialects as small hooks.

Statements are written once with ``?`` placeholders (psycopg gets ``%s``). Values that
are not scalars (inputs, results, agent records, audit details) are JSON text — never
pickles — so any runner version, ``sqlite3`` or ``psql`` can read them. Every public
method is one transaction, under a lock because a store object may be shared by threads.

The write path is :meth:`SqlStore.append_many`: it stores the events and updates the run
row in the same transaction, using the pure projection of ``projection.py`` that the
memory store uses too; step rows follow in batches (``sql_steps.py``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from runner.core.projection import apply_run_event, apply_step_event, is_run_event, is_step_event, unknown_run
from runner.errors import LeaseLost, NotFound, StoreError
from runner.model.clock import iso_after, normalize_ts
from runner.model.events import RUN_QUEUED, STEP_ASSIGNED, Event, now_iso
from runner.store.base import Claim, Lease, RunRecord, StepRecord, WorkflowRecord, content_hash_of, pick_run_id
from runner.store.leases import lease_is_free
from runner.store.migrations import BOOTSTRAP, MIGRATIONS, SCHEMA_VERSION, statements
from runner.store.sql_coordination import SqlCoordination
from runner.store.sql_lifecycle import SqlLifecycle
from runner.store.sql_rows import (
    RUN_READ,
    SQL,
    changed,
    event_row,
    one_line,
    opt_loads,
    run_params,
    run_row,
    to_json,
    wf_row,
)
from runner.store.sql_slots import SqlSlots
from runner.store.sql_steps import STEPS_SQL, Deferred, SqlStepRows
from runner.store.sql_workers import SqlWorkers


class NoRunnerSchema(Exception):
    """A read-only open found no runner schema (nothing ever ran there); ``open_store`` reads it as empty."""

class SqlStore(SqlStepRows, SqlLifecycle, SqlCoordination, SqlWorkers, SqlSlots):
    """Everything but the connection: subclasses supply the dialect hooks below."""

    shared = True  # other processes (and, on PostgreSQL, machines) reach the same rows

    url: str
    placeholder: ClassVar[str] = "?"
    seq_pk: ClassVar[str]  # the auto-numbered primary key column type
    for_update: ClassVar[str] = ""  # row lock suffix of SELECTs on the write path
    for_update_run: ClassVar[str] = ""  # the same, for the run row of a join
    db_errors: tuple[type[BaseException], ...] = ()  # the driver's error root
    integrity_errors: tuple[type[BaseException], ...] = ()
    # The lease check of a group commit rides on its first event's INSERT (decided by the
    # rowcount, so off where that is unknown until a sync: PostgreSQL's pipeline mode
    # reports -1); otherwise it is a SELECT of the run row (locking it, where it can).
    fence_in_insert: ClassVar[bool] = True
    read_only = False  # a file this user may only read (SQLite): opened without migrating
    _conn: Any  # the DB-API connection and its one cursor, set by ``_open``
    _cur: Any

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._sql = {
            name: self._adapt(
                stmt.replace("{for_update}", self.for_update).replace("{for_update_run}", self.for_update_run)
            )
            for name, stmt in {**SQL, **STEPS_SQL}.items()
        }
        self._sql.update(self._lifecycle_sql())
        self._sql.update(self._workers_sql())
        self._sql.update(self._slots_sql())
        self._slot_rows: dict[str, int] = {}
        self._closed = False
        # Step changes of the runs this process writes, not yet written as rows (sql_steps.py).
        self._deferred: dict[str, Deferred] = {}

    # --- dialect hooks ----------------------------------------------------------------
    def _begin(self, write: bool) -> None:
        """Open a transaction (SQLite: ``BEGIN IMMEDIATE`` for writers)."""

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _insert_id(self, stmt: str, params: Sequence[Any], id_col: str) -> int:
        """Run an INSERT and return the number the database gave the new row."""
        raise NotImplementedError

    def _serialize(self, key: str) -> None:
        """Make concurrent transactions about ``key`` take turns (PostgreSQL advisory lock)."""

    def _notify(self) -> None:
        """Wake the idle workers when this transaction commits (PostgreSQL ``NOTIFY``)."""

    def _error(self, exc: BaseException) -> StoreError:
        """The one-line StoreError for a driver error."""
        return StoreError(f"store {self.url}: {one_line(exc)}")

    # --- plumbing ---------------------------------------------------------------------
    def _open(self, conn: Any) -> None:
        """Adopt the subclass's new connection and migrate; close it again if that fails."""
        self._conn = conn
        self._cur = conn.cursor()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _adapt(self, stmt: str) -> str:
        return stmt if self.placeholder == "?" else stmt.replace("?", self.placeholder)

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        """One transaction; any failure rolls it back, so a crash leaves the store consistent."""
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            try:
                self._begin(write)
                yield self._cur
                self._commit()
            except BaseException as exc:
                self._abort()
                if isinstance(exc, self.db_errors):
                    raise self._error(exc) from exc
                raise

    def _abort(self) -> None:
        """After a failed transaction: roll it back and forget what it may have kept."""
        self._forget_steps()
        self._rollback_quietly()

    def _rollback_quietly(self) -> None:
        try:
            self._rollback()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass

    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`; refuse a database from a newer runner."""
        # A read first: the common case (an up-to-date store) writes nothing, and a
        # read transaction that wrote would fail at once, not wait, when two processes
        # open a new SQLite file together. Creating and migrating is one write transaction.
        with self._tx(write=False) as cur:
            current = self._stored_version(cur)
        if current is None and not self.create_schema:
            raise NoRunnerSchema(self.url)
        if current is not None:
            self._check_version(current)
            if current == SCHEMA_VERSION:
                return
            if self.read_only:  # an older runner's store we may only read: read it as it is
                self._read_older(current)
                return
        with self._tx() as cur:
            self._serialize("runner.schema")
            cur.execute(BOOTSTRAP)
            cur.execute(self._sql["version"])
            current = cur.fetchone()[0]  # another process may have migrated meanwhile
            self._check_version(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in statements(MIGRATIONS[version - 1], self.seq_pk):
                    cur.execute(stmt)
                cur.execute(self._sql["record_version"], (version, now_iso()))

    def _read_older(self, version: int) -> None:
        """Read a store of schema ``version`` (older) without migrating it: no lagging step rows."""
        if version < 9:  # before ``runs.steps_lag``: every row holds every event, in ``steps``
            for name, stmt in self._sql.items():
                stmt = re.sub(r"\bstep_rows\b", "steps", stmt)
                self._sql[name] = stmt.replace("r.steps_lag", "NULL").replace("SELECT steps_lag FROM", "SELECT NULL FROM")

    create_schema = True
    """False for a read-only command: a database without runner's tables is left without them."""

    def _stored_version(self, cur: Any) -> int | None:
        """The schema version recorded in the database, None when it has no runner schema yet."""
        raise NotImplementedError

    def _check_version(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store at {self.url} has schema version {current}, newer than this runner supports "
                f"({SCHEMA_VERSION}); upgrade runner"
            )

    def schema_version(self) -> int:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["version"])
            return int(cur.fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- workflows --------------------------------------------------------------------
    def put_workflow(self, wf: WorkflowRecord) -> WorkflowRecord:
        """Store a new version, or return the stored one when this content is known already."""
        digest = content_hash_of(wf)
        sql = self._sql
        with self._tx() as cur:
            self._serialize("workflow:" + wf.name)
            cur.execute(sql["wf_by_hash"], (wf.name, digest))
            row = cur.fetchone()
            if row is not None:
                return wf_row(row)
            cur.execute(sql["wf_max"], (wf.name,))
            version = cur.fetchone()[0] + 1
            created = wf.created_at or now_iso()
            params = (
                wf.name,
                digest,
                wf.source_text,
                version,
                created,
                wf.creator_id,
                int(wf.agent_modifiable),
                wf.origin,
            )
            cur.execute(sql["wf_insert"], params)
            return wf_row(params)

    def get_workflow(self, name: str, content_hash: str | None = None) -> WorkflowRecord | None:
        with self._tx(write=False) as cur:
            if content_hash is None:
                cur.execute(self._sql["wf_latest"], (name,))
            else:
                cur.execute(self._sql["wf_by_hash"], (name, content_hash))
            row = cur.fetchone()
        return wf_row(row) if row else None

    def list_workflows(self) -> list[WorkflowRecord]:
        """The latest version of every workflow, by name."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql["wf_list"])
            return [wf_row(r) for r in cur.fetchall()]

    def list_workflow_versions(self, name: str) -> list[WorkflowRecord]:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["wf_versions"], (name,))
            return [wf_row(r) for r in cur.fetchall()]

    # --- runs -------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        params = (run.run_id, *run_params(run), run.started_at or now_iso())
        try:
            with self._tx() as cur:
                cur.execute(self._sql["run_insert"], params)
                if run.runs_on:
                    cur.execute(self._sql["run_runs_on"], (to_json(sorted(set(run.runs_on)), "runs_on"), run.run_id))
        except StoreError as exc:
            if isinstance(exc.__cause__, self.integrity_errors):
                raise StoreError(f"run {run.run_id!r} already exists in {self.url}") from None
            raise

    def append(self, event: Event) -> None:
        """Store ``event`` and project it onto its run or step row, in one transaction."""
        with self._tx():
            self._project(event)
            self._write_due((event,))

    def append_many(self, events: Sequence[Event], fence: Lease | None = None) -> None:
        """Store several events in order, in ONE transaction (the engine's group commit).

        With ``fence``, the transaction writes only while the run's lease is still the
        caller's (owner and epoch): a process whose lease was taken over writes nothing
        (``LeaseLost``). The check is the first statement: the first event's INSERT made
        conditional on the lease (SQLite, under the write lock ``BEGIN IMMEDIATE`` took),
        or a SELECT that locks the run row (PostgreSQL).
        """
        if not events:
            return
        # ``_tx`` spelled out: a generator-based context manager costs two frames and a
        # generator on the path of every chain step.
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            try:
                self._begin(True)
                self._append_many(events, fence)
                self._write_due(events)
                self._commit()
            except BaseException as exc:
                self._abort()
                if isinstance(exc, self.db_errors):
                    raise self._error(exc) from exc
                raise

    def _append_many(self, events: Sequence[Event], fence: Lease | None) -> None:
        cur = self._cur
        logged = False  # the first event is in the log already (written with the fence check)
        if fence is not None:
            first = events[0]
            if self.fence_in_insert and self._prepared(first):
                cur.execute(
                    self._sql["event_insert_fenced"], (*_event_params(first), first.run_id, fence.owner, fence.epoch)
                )
                held = changed(cur)
                logged = True
            else:
                cur.execute(self._sql["run_fence"], (first.run_id,))
                row = cur.fetchone()
                held = row is not None and row[0] == fence.owner and row[1] == fence.epoch
            if not held:
                raise LeaseLost(
                    f"run {first.run_id}: this runner's lease (epoch {fence.epoch}) was taken over; nothing written"
                )
        for event in events:
            self._project(event, logged)
            logged = False

    def _project(self, event: Event, logged: bool = False) -> None:
        """Log ``event`` and apply it: the run row now, a step's row in a later batch.

        ``logged``: the event is in the log already (``append_many``'s fenced first event).
        """
        sql, cur = self._sql, self._cur
        run_id, step_id, etype = event.run_id, event.step_id, event.type
        if is_run_event(etype):
            cur.execute(sql["run_lock"], (run_id,))
            row = cur.fetchone()
            run = apply_run_event(run_row(row) if row else None, event)
            if not logged:
                self._insert_event(event)
            if row is None:
                cur.execute(sql["run_insert"], (run_id, *run_params(run), event.ts))
            else:
                cur.execute(sql["run_update"], (*run_params(run), run_id))
            if etype == RUN_QUEUED:
                self._notify()  # idle workers wake when this commits
            return
        if step_id is not None and is_step_event(etype):
            self._step_event(event, logged)
            return
        cur.execute(sql["run_exists"], (run_id,))
        if cur.fetchone() is None:
            raise unknown_run(event)
        if is_step_event(etype):
            apply_step_event(None, event)  # raises: a step event without a step_id
        if not logged:  # a type this runner does not project: log only
            self._insert_event(event)
        if etype == STEP_ASSIGNED:
            self._put_assignment(event)

    def _insert_event(self, e: Event) -> None:
        self._cur.execute(self._sql["event_insert"], _event_params(e))

    # --- run leases -------------------------------------------------------------------
    def claim_run(self, run_id: str, owner: str, ttl_s: float) -> Claim:
        with self._tx() as cur:
            cur.execute(self._sql["run_owner"], (run_id,))
            row = cur.fetchone()
            if row is None:
                raise NotFound.run(run_id, self.url)
            if not lease_is_free(row[0], row[1], owner):
                return Claim(None, f"{row[0]} (lease until {row[1]})")
            epoch = int(row[2] or 0) + (0 if row[0] == owner else 1)
            cur.execute(self._sql["run_claim"], (owner, iso_after(ttl_s), epoch, run_id))
            # Another process may have written this run's steps since we last did.
            self._forget_steps(run_id)
        return Claim(Lease(owner, epoch))

    def renew_run(self, run_id: str, owner: str, ttl_s: float) -> bool:
        with self._tx() as cur:
            cur.execute(self._sql["run_renew"], (iso_after(ttl_s), run_id, owner))
            return changed(cur)

    def release_run(self, run_id: str, owner: str) -> None:
        with self._tx() as cur:
            cur.execute(self._sql["run_release"], (run_id, owner))
            if changed(cur):
                self._notify()  # a run handed back (or ended): idle workers look again

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["run_get"], (run_id,))
            row = cur.fetchone()
        return run_row(row) if row else None

    def find_run(self, prefix: str) -> RunRecord:
        """The run whose id is ``prefix`` or, failing that, the one run whose id starts so."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql["run_get"], (prefix,))
            row = cur.fetchone()
            if row is None:
                cur.execute(self._sql["run_prefix"], (len(prefix), prefix))
                run_id = pick_run_id(self.url, prefix, [r[0] for r in cur.fetchall()])
                cur.execute(self._sql["run_get"], (run_id,))
                row = cur.fetchone()
        return run_row(row)

    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Runs newest first (by creation); ``since`` keeps runs created at or after it."""
        where: list[str] = []
        params: list[Any] = []
        if workflow is not None:
            where.append("workflow_name = ?")
            params.append(workflow)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if since is not None:
            where.append("created_at >= ?")
            params.append(normalize_ts(since))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        stmt = f"SELECT {RUN_READ} FROM runs{clause} ORDER BY created_at DESC, n DESC LIMIT ?"
        with self._tx(write=False) as cur:
            cur.execute(self._adapt(stmt), (*params, limit))
            return [run_row(r) for r in cur.fetchall()]

    def get_steps(self, run_id: str) -> list[StepRecord]:
        """A run's steps in the order they first appeared, for_each items included."""
        with self._tx(write=False) as cur:
            steps = self._read_steps(run_id)
            cur.execute(self._sql["items_of_run"], (run_id,))
            items = cur.fetchall()
        return _with_items(steps, items)

    def get_step(self, run_id: str, step_id: str) -> StepRecord | None:
        with self._tx(write=False) as cur:
            step = self._read_step(run_id, step_id)
            if step is None:
                return None
            cur.execute(self._sql["items_of_step"], (run_id, step_id))
            items = cur.fetchall()
        return _with_items([step], items)[0]

    def get_events(self, run_id: str) -> list[Event]:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["events_of_run"], (run_id,))
            return [event_row(r)[1] for r in cur.fetchall()]

    def get_events_after(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 1000
    ) -> list[tuple[int, Event]]:
        """Events with ``seq > after_seq`` (of one run, or all), oldest first: for tailing."""
        with self._tx(write=False) as cur:
            if run_id is None:
                cur.execute(self._sql["events_after"], (after_seq, limit))
            else:
                cur.execute(self._sql["events_after_run"], (run_id, after_seq, limit))
            return [event_row(r) for r in cur.fetchall()]


def _event_params(e: Event) -> tuple[Any, ...]:
    """The ``event_insert`` parameters of an event (its data as JSON text)."""
    data = to_json(e.data, f"event {e.type}") if e.data else None
    return (e.run_id, e.ts, e.type, e.step_id, e.attempt, e.agent_id, e.error, data)


def _with_items(steps: list[StepRecord], rows: Sequence[Sequence[Any]]) -> list[StepRecord]:
    """Attach for_each item results (``step_id, idx, result`` rows) to their steps."""
    if rows:
        by_id = {s.step_id: s for s in steps}
        for step_id, idx, result in sorted(rows, key=lambda r: (r[0], r[1])):
            step = by_id.get(step_id)
            if step is not None:
                step.items[idx] = opt_loads(result)
    return steps
