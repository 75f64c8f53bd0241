"""Agent slots and the workers' batched lease renewal in the store, on memory, SQLite and PostgreSQL.

A slot of an agent's ``max_concurrency`` is held by a run's lease: at most ``limit``
holders at once, across owners; free again when the call gives it back, when the run's
lease is taken over (new epoch) or released, and when the lease expires (a SIGKILLed
worker). The heartbeat renews every lease a worker holds in one statement and reports
exactly the runs whose lease was lost.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from runner.store.base import Lease, Store
from runner.store.migrations import MIGRATIONS, SCHEMA_VERSION, statements
from runner.store.sqlite import SQLiteStore
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    Backend,
    backend_fixture,
    durable_fixture,
    pg_template,
    pg_url,
    store_fixture,
)
from tests.test_workers_store import queue

W1, W2 = "hostA:101:aaaa:1", "hostB:202:bbbb:2"


def claim(store: Store, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
    queue(store, run_id)
    got = store.claim_next_run(owner, [], ttl)
    assert got is not None and got.run_id == run_id
    return got.lease


def test_at_most_limit_slots_are_held_across_owners_and_a_given_back_slot_is_taken_again(store: Store) -> None:
    a, b = claim(store, "r1", W1), claim(store, "r2", W2)
    assert store.take_agent_slot("ag", 2, "r1", a) == 0
    assert store.take_agent_slot("ag", 2, "r2", b) == 1
    assert store.take_agent_slot("ag", 2, "r1", a) is None  # both taken, whoever asks
    assert store.take_agent_slot("other", 2, "r1", a) == 0  # slots are per agent
    assert store.agent_slots_held("ag") == [(0, "r1"), (1, "r2")]
    store.release_agent_slot("ag", 1, "r2", b)
    assert store.take_agent_slot("ag", 2, "r1", a) == 1
    assert store.agent_slots_held("ag") == [(0, "r1"), (1, "r1")]
    store.release_agent_slot("ag", 0, "r2", b)  # not r2's: nothing changes
    assert store.agent_slots_held("ag") == [(0, "r1"), (1, "r1")]


def test_a_smaller_limit_only_uses_the_first_slots(store: Store) -> None:
    a = claim(store, "r1", W1)
    assert [store.take_agent_slot("ag", 3, "r1", a) for _ in range(3)] == [0, 1, 2]
    store.release_agent_slot("ag", 0, "r1", a)
    assert store.take_agent_slot("ag", 1, "r1", a) == 0
    assert store.take_agent_slot("ag", 1, "r1", a) is None


def test_slots_of_a_released_or_expired_lease_come_back(store: Store) -> None:
    a = claim(store, "r1", W1, ttl=0.3)
    b = claim(store, "r2", W2)
    assert store.take_agent_slot("ag", 1, "r1", a) == 0
    assert store.take_agent_slot("ag", 1, "r2", b) is None
    time.sleep(0.4)  # r1's holder died: its lease ran out, and the slot with it
    assert store.take_agent_slot("ag", 1, "r2", b) == 0
    store.release_run("r2", W2)  # handed back without giving its slot back
    again = store.claim_next_run(W1, [], 30)
    assert again is not None and again.run_id == "r2"
    assert store.take_agent_slot("ag", 1, "r2", again.lease) == 0


def test_a_run_taken_over_frees_the_slots_of_its_old_epoch(store: Store) -> None:
    a = claim(store, "r1", W1, ttl=0.2)
    assert store.take_agent_slot("ag", 1, "r1", a) == 0
    time.sleep(0.3)
    took = store.claim_next_run(W2, [], 30)
    assert took is not None and took.run_id == "r1" and took.lease.epoch == a.epoch + 1
    assert store.take_agent_slot("ag", 1, "r1", took.lease) == 0  # W2's session of r1
    store.release_agent_slot("ag", 0, "r1", a)  # the old session's late give-back changes nothing
    assert store.agent_slots_held("ag") == [(0, "r1")]


def test_one_heartbeat_renews_every_lease_and_names_exactly_the_lost_ones(store: Store) -> None:
    a, b, c = (claim(store, r, W1, ttl=0.3) for r in ("r1", "r2", "r3"))
    assert store.take_agent_slot("ag", 1, "r1", a) == 0
    time.sleep(0.35)
    took = store.claim_next_run(W2, [], 30)  # r2 expired first: W2 takes it over
    assert took is not None and took.run_id == "r1"
    lost = store.heartbeat_worker(W1, leases=[("r2", b), ("r3", c), ("r1", a)], ttl_s=30)
    assert lost == ["r1"]
    assert store.claim_next_run(W2, [], 30) is None  # r2 and r3 are W1's again, for 30 s
    store.release_run("r3", W1)
    assert store.heartbeat_worker(W1, leases=[("r2", b), ("r3", c)], ttl_s=30) == ["r3"]
    assert store.heartbeat_worker(W1) == []


def test_a_stale_epoch_is_not_renewed_even_by_the_same_owner(store: Store) -> None:
    a = claim(store, "r1", W1)
    assert store.heartbeat_worker(W1, leases=[("r1", Lease(W1, a.epoch + 1))], ttl_s=30) == ["r1"]
    assert store.heartbeat_worker(W1, leases=[("r1", a)], ttl_s=30) == []


def test_concurrent_takers_never_exceed_the_limit(durable: Backend) -> None:
    stores = [durable.open() for _ in range(4)]
    leases = [claim(stores[0], f"r{i}", f"host:{i}:n:1") for i in range(4)]
    taken: list[int] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        for _ in range(20):
            slot = stores[i].take_agent_slot("ag", 2, f"r{i}", leases[i])
            if slot is not None:
                with lock:
                    taken.append(slot)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == [0, 1]


def test_migration_8_upgrades_a_version_6_database_in_place(tmp_path: object) -> None:
    path = f"{tmp_path}/old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for version, script in enumerate(MIGRATIONS[:6], start=1):
        for stmt in statements(script, "INTEGER PRIMARY KEY"):
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version VALUES (?, 'then')", (version,))
    conn.execute(
        "INSERT INTO runs (run_id, workflow_name, workflow_hash, status, created_at) "
        "VALUES ('old', 'wf', 'h', 'completed', '2026-01-01T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(f"sqlite:///{path}")
    try:
        assert store.schema_version() == SCHEMA_VERSION >= 8
        assert store.get_run("old") is not None  # kept
        lease = store.claim_run("old", W1, 30).lease
        assert lease is not None and store.take_agent_slot("ag", 1, "old", lease) == 0
    finally:
        store.close()
