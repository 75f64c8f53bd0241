"""Scale out on SQL: workers claim runs in one short transaction, and say they are alive.

A mixin of :class:`runner.store.sql.SqlStore`. ``claim_next_run`` is the whole of a
worker's claim: one statement picks the oldest eligible run and locks its row —
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers claiming at once never wait on each
other and never pick the same row; SQLite serializes writers with ``BEGIN IMMEDIATE`` —
and one update makes the worker its lease holder with a new epoch. Eligible: a queued
run, or a run in the workers' care (``runs.worker`` set) whose lease ran out or was
handed back; its labels (``runs_on``) must all be among the worker's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from runner.model.clock import iso_after, now_iso
from runner.model.records import Claimed, Lease, WorkerRecord

_WORKER_COLS = "id, host, pid, labels, concurrency, started_at, heartbeat_at, ttl, stopped_at"
_FORGET_AFTER_S = 86400.0  # a worker stopped (or silent) this long leaves the workers table

# {labels_match} and {skip_locked} are dialect hooks; {exclude} is built per call.
_CLAIM_NEXT = (
    "SELECT run_id, status, epoch FROM runs WHERE "
    "((status = 'queued' AND (lease_until IS NULL OR lease_until < ?)) "
    " OR (status IN ('pending', 'running', 'interrupted') AND worker IS NOT NULL "
    "     AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?))) "
    "AND (owner IS NULL OR owner <> ?) AND {labels_match}{exclude} "
    "ORDER BY created_at, n LIMIT 1{skip_locked}"
)

# Every lease a worker holds, renewed by one statement, each fenced by its owner and epoch
# (``run_id IN`` lets the unique index find the rows; the row values are the fence).
_RENEW = (
    "UPDATE runs SET lease_until = ? WHERE run_id IN ({ids}) "
    "AND (run_id, owner, epoch) IN (VALUES {rows}) RETURNING run_id"
)

WORKERS_SQL: dict[str, str] = {
    "run_take": "UPDATE runs SET owner = ?, lease_until = ?, epoch = ?, worker = ? WHERE run_id = ?",
    "worker_put": f"INSERT INTO workers ({_WORKER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) "
    "ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, concurrency = excluded.concurrency, "
    "heartbeat_at = excluded.heartbeat_at, ttl = excluded.ttl, stopped_at = NULL",
    "worker_forget": "DELETE FROM workers WHERE heartbeat_at < ?",
    "worker_beat": "UPDATE workers SET heartbeat_at = ? WHERE id = ? AND stopped_at IS NULL",
    "worker_stop": "UPDATE workers SET heartbeat_at = ?, stopped_at = ? WHERE id = ?",
    "workers_list": f"SELECT {', '.join('w.' + c for c in _WORKER_COLS.split(', '))}, "
    "(SELECT COUNT(*) FROM runs r WHERE r.owner = w.id AND r.lease_until >= ?) "
    "FROM workers w ORDER BY w.started_at DESC, w.id LIMIT ?",
}


def _worker_row(r: Sequence[Any]) -> WorkerRecord:
    return WorkerRecord(
        worker_id=r[0],
        host=r[1],
        pid=int(r[2]),
        labels=list(json.loads(r[3])),
        concurrency=int(r[4]),
        started_at=r[5],
        heartbeat_at=r[6],
        ttl_s=float(r[7]),
        stopped_at=r[8],
        runs_held=int(r[9]) if len(r) > 9 else 0,
    )


class SqlWorkers:
    """Claiming the next run, and the workers table; needs SqlStore's ``_tx`` and ``_adapt``."""

    _sql: dict[str, str]
    # How a run's labels are checked against the worker's (one ``?``: the worker's labels as JSON).
    labels_match: ClassVar[str] = (
        "(runs_on IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(runs.runs_on) l "
        "WHERE l.value NOT IN (SELECT m.value FROM json_each(?) m)))"
    )
    skip_locked: ClassVar[str] = ""

    # Provided by SqlStore (declared for the type checker).
    def _tx(self, write: bool = True) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _adapt(self, stmt: str) -> str:
        raise NotImplementedError

    def _notify(self) -> None:
        raise NotImplementedError

    def _forget_steps(self, run_id: str | None = None) -> None:
        raise NotImplementedError

    def _workers_sql(self) -> dict[str, str]:
        return {name: self._adapt(stmt) for name, stmt in WORKERS_SQL.items()}

    def claim_next_run(
        self, owner: str, labels: Sequence[str], ttl_s: float, exclude: Sequence[str] = ()
    ) -> Claimed | None:
        """Claim the oldest run this worker may execute (None: nothing to do now)."""
        stmt = _CLAIM_NEXT.format(
            labels_match=self.labels_match,
            exclude=f" AND run_id NOT IN ({', '.join('?' * len(exclude))})" if exclude else "",
            skip_locked=self.skip_locked,
        )
        now = now_iso()
        params = (now, now, owner, json.dumps(sorted(set(labels))), *exclude)
        with self._tx() as cur:
            cur.execute(self._adapt(stmt), params)
            row = cur.fetchone()
            if row is None:
                return None
            run_id, status, epoch = row[0], row[1], int(row[2] or 0) + 1
            cur.execute(self._sql["run_take"], (owner, iso_after(ttl_s), epoch, owner, run_id))
            self._forget_steps(run_id)  # another process may have written its steps since we did
        return Claimed(run_id, Lease(owner, epoch), recovered=status != "queued")

    def register_worker(self, worker: WorkerRecord) -> None:
        """Add (or re-add) a worker, alive now; forget workers gone for a day."""
        now = now_iso()
        with self._tx() as cur:
            cur.execute(self._sql["worker_forget"], (iso_after(-_FORGET_AFTER_S),))
            cur.execute(
                self._sql["worker_put"],
                (
                    worker.worker_id,
                    worker.host,
                    worker.pid,
                    json.dumps(sorted(set(worker.labels))),
                    worker.concurrency,
                    worker.started_at or now,
                    now,
                    worker.ttl_s,
                ),
            )

    def heartbeat_worker(
        self,
        worker_id: str,
        stopped: bool = False,
        leases: Sequence[tuple[str, Lease]] = (),
        ttl_s: float = 0.0,
    ) -> list[str]:
        """One cheap transaction per worker (not per run): it is alive, or it stopped now.

        ``leases`` (run id, lease) are renewed for ``ttl_s`` by one statement, each only
        while its run is still held by that owner at that epoch; the ids of the runs whose
        lease was not renewed (taken over, or released) are returned: those are lost.
        """
        now = now_iso()
        renewed: set[str] = set()
        with self._tx() as cur:
            if stopped:
                cur.execute(self._sql["worker_stop"], (now, now, worker_id))
            else:
                cur.execute(self._sql["worker_beat"], (now, worker_id))
            if leases:
                rows = ", ".join(["(?, ?, ?)"] * len(leases))
                ids = ", ".join(["?"] * len(leases))
                stmt = self._adapt(_RENEW.format(ids=ids, rows=rows))
                params: list[Any] = [iso_after(ttl_s)]
                params += [run_id for run_id, _ in leases]
                for run_id, lease in leases:
                    params += [run_id, lease.owner, lease.epoch]
                cur.execute(stmt, params)
                renewed = {str(r[0]) for r in cur.fetchall()}
        return [run_id for run_id, _ in leases if run_id not in renewed]

    def list_workers(self, limit: int = 100) -> list[WorkerRecord]:
        """Workers, newest first, each with the number of runs whose lease it holds now."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql["workers_list"], (now_iso(), limit))
            return [_worker_row(r) for r in cur.fetchall()]
