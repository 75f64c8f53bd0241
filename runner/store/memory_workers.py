"""Scale out in memory: the workers' claim and the workers table, as the SQL stores have them.

A mixin of :class:`runner.store.memory.MemoryStore` (one process only, so mostly for
tests and ``runner serve --store memory://``): the same eligibility rule as
``sql_workers.py``, decided under the store's lock.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

from runner.model.clock import iso_after, now_iso
from runner.model.records import Claimed, Lease, RunRecord, WorkerRecord

_RESUMABLE = ("pending", "running", "interrupted")


class MemoryWorkers:
    """Needs MemoryStore's ``_lock``, ``_runs``, ``_leases``, ``_epochs`` and ``_catch_up``."""

    _lock: threading.RLock
    _runs: dict[str, tuple[int, str, RunRecord]]
    _leases: dict[str, tuple[str, str]]
    _epochs: dict[str, int]
    _workers: dict[str, WorkerRecord]
    _slots: dict[tuple[str, int], tuple[str, Lease]]  # (agent, slot) -> the run and lease holding it

    def _catch_up(self) -> None:
        raise NotImplementedError

    def claim_next_run(
        self, owner: str, labels: Sequence[str], ttl_s: float, exclude: Sequence[str] = ()
    ) -> Claimed | None:
        have = set(labels)
        skip = set(exclude)
        now = now_iso()
        with self._lock:
            self._catch_up()
            for _n, _created, run in sorted(self._runs.values(), key=lambda e: (e[1], e[0])):
                holder, until = self._leases.get(run.run_id, (None, None))
                expired = until is None or until < now
                if run.run_id in skip or holder == owner or not set(run.runs_on or ()) <= have:
                    continue
                queued = run.status == "queued" and expired
                recoverable = run.status in _RESUMABLE and run.worker is not None and (holder is None or expired)
                if not (queued or recoverable):
                    continue
                epoch = self._epochs[run.run_id] = self._epochs.get(run.run_id, 0) + 1
                self._leases[run.run_id] = (owner, iso_after(ttl_s))
                run.worker = owner
                return Claimed(run.run_id, Lease(owner, epoch), recovered=run.status != "queued")
        return None

    def register_worker(self, worker: WorkerRecord) -> None:
        now = now_iso()
        with self._lock:
            stored = copy.deepcopy(worker)
            stored.started_at = stored.started_at or now
            stored.heartbeat_at = now
            stored.stopped_at = None
            stored.labels = sorted(set(stored.labels))
            self._workers[worker.worker_id] = stored

    def heartbeat_worker(
        self, worker_id: str, stopped: bool = False, leases: Sequence[tuple[str, Lease]] = (), ttl_s: float = 0.0
    ) -> list[str]:
        now = now_iso()
        lost: list[str] = []
        with self._lock:
            until = iso_after(ttl_s)
            for run_id, lease in leases:
                held = self._leases.get(run_id)
                if held is None or held[0] != lease.owner or self._epochs.get(run_id, 0) != lease.epoch:
                    lost.append(run_id)
                else:
                    self._leases[run_id] = (lease.owner, until)
            w = self._workers.get(worker_id)
            if w is None or (w.stopped_at is not None and not stopped):
                return lost
            w.heartbeat_at = now
            if stopped:
                w.stopped_at = now
        return lost

    def _slot_free(self, key: tuple[str, int], now: str) -> bool:
        held = self._slots.get(key)
        if held is None:
            return True
        run_id, lease = held
        lease_now = self._leases.get(run_id)
        return not (
            lease_now is not None
            and lease_now[0] == lease.owner
            and (lease_now[1] or "") >= now
            and self._epochs.get(run_id, 0) == lease.epoch
        )

    def take_agent_slot(self, agent_id: str, limit: int, run_id: str, lease: Lease) -> int | None:
        now = now_iso()
        with self._lock:
            for slot in range(limit):
                if self._slot_free((agent_id, slot), now):
                    self._slots[(agent_id, slot)] = (run_id, lease)
                    return slot
        return None

    def release_agent_slot(self, agent_id: str, slot: int, run_id: str, lease: Lease) -> None:
        with self._lock:
            if self._slots.get((agent_id, slot)) == (run_id, lease):
                del self._slots[(agent_id, slot)]

    def agent_slots_held(self, agent_id: str) -> list[tuple[int, str]]:
        now = now_iso()
        with self._lock:
            return sorted(
                (slot, held[0])
                for (aid, slot), held in self._slots.items()
                if aid == agent_id and not self._slot_free((aid, slot), now)
            )

    def list_workers(self, limit: int = 100) -> list[WorkerRecord]:
        now = now_iso()
        with self._lock:
            out = []
            for w in sorted(self._workers.values(), key=lambda w: (w.started_at, w.worker_id), reverse=True)[:limit]:
                item = copy.deepcopy(w)
                item.runs_held = sum(1 for h, u in self._leases.values() if h == w.worker_id and u and u >= now)
                out.append(item)
            return out
