"""Agent slots on SQL: an agent's ``max_concurrency`` held across every process of the store.

A mixin of :class:`runner.store.sql.SqlStore`. Agent *A* with ``max_concurrency: N`` has
rows ``(A, 0) … (A, N-1)`` in ``agent_slots``; a call takes one in a short transaction —
PostgreSQL skips rows another claimant has locked (``FOR UPDATE SKIP LOCKED``), SQLite
serializes writers (``BEGIN IMMEDIATE``) — and gives it back when it ends.

A slot is held by a run's lease, not by a clock of its own: the row names the run, the
lease owner and the epoch, and it counts as taken only while that run's lease is held by
that owner at that epoch and has not expired. So a SIGKILLed worker's slots come back when
its leases expire, a run taken over frees its slots at once, and the worker's heartbeat
(which renews the leases) keeps them without another write.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar

from runner.model.clock import now_iso
from runner.model.records import Lease

# {skip_locked} is the dialect hook of sql_workers.py (only the slot row is locked).
_TAKE = (
    "SELECT s.slot FROM agent_slots s WHERE s.agent_id = ? AND s.slot < ? AND (s.holder IS NULL OR NOT EXISTS "
    "(SELECT 1 FROM runs r WHERE r.run_id = s.run_id AND r.owner = s.holder AND r.epoch = s.epoch "
    "AND r.lease_until >= ?)) ORDER BY s.slot LIMIT 1{skip_locked}"
)

SLOTS_SQL: dict[str, str] = {
    "slot_row": "INSERT INTO agent_slots (agent_id, slot) VALUES (?, ?) ON CONFLICT (agent_id, slot) DO NOTHING",
    "slot_set": "UPDATE agent_slots SET holder = ?, run_id = ?, epoch = ?, taken_at = ? WHERE agent_id = ? AND slot = ?",
    "slot_free": "UPDATE agent_slots SET holder = NULL, run_id = NULL, epoch = NULL, taken_at = NULL "
    "WHERE agent_id = ? AND slot = ? AND holder = ? AND run_id = ? AND epoch = ?",
    "slots_held": "SELECT s.agent_id, s.slot, s.run_id FROM agent_slots s JOIN runs r ON r.run_id = s.run_id "
    "AND r.owner = s.holder AND r.epoch = s.epoch AND r.lease_until >= ? WHERE s.agent_id = ? ORDER BY s.slot",
}


class SqlSlots:
    """Taking and giving back agent slots; needs SqlStore's ``_tx``, ``_adapt`` and ``_notify_slots``."""

    _sql: dict[str, str]
    skip_locked: ClassVar[str]
    _slot_rows: dict[str, int]  # agent -> slot rows known to exist (created once per process)

    def _tx(self, write: bool = True) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _adapt(self, stmt: str) -> str:
        raise NotImplementedError

    def _notify_slots(self) -> None:
        """Wake processes waiting for a slot (PostgreSQL ``NOTIFY``); nothing elsewhere."""

    def _slots_sql(self) -> dict[str, str]:
        out = {name: self._adapt(stmt) for name, stmt in SLOTS_SQL.items()}
        out["slot_take"] = self._adapt(_TAKE.format(skip_locked=self.skip_locked))
        return out

    def take_agent_slot(self, agent_id: str, limit: int, run_id: str, lease: Lease) -> int | None:
        """Take a free slot of ``agent_id`` among its first ``limit`` for ``run_id``'s lease; None: all taken."""
        known = self._slot_rows.get(agent_id, 0)
        with self._tx() as cur:
            if known < limit:
                cur.executemany(self._sql["slot_row"], [(agent_id, i) for i in range(known, limit)])
            now = now_iso()
            cur.execute(self._sql["slot_take"], (agent_id, limit, now))
            row = cur.fetchone()
            if row is not None:
                cur.execute(self._sql["slot_set"], (lease.owner, run_id, lease.epoch, now, agent_id, int(row[0])))
        if known < limit:
            self._slot_rows[agent_id] = limit
        return None if row is None else int(row[0])

    def release_agent_slot(self, agent_id: str, slot: int, run_id: str, lease: Lease) -> None:
        """Give a slot back (a no-op when the lease lost it meanwhile: it was free already)."""
        with self._tx() as cur:
            cur.execute(self._sql["slot_free"], (agent_id, slot, lease.owner, run_id, lease.epoch))
            self._notify_slots()

    def agent_slots_held(self, agent_id: str) -> list[tuple[int, str]]:
        """``(slot, run_id)`` of the slots of ``agent_id`` held now (for tests and diagnostics)."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql["slots_held"], (now_iso(), agent_id))
            return [(int(r[1]), str(r[2])) for r in cur.fetchall()]
