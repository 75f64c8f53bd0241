"""File locks as leases over globs (SPEC §5), on the memory, SQLite and PostgreSQL stores:
exact overlap, shared and exclusive, fencing tokens that are never reused, renew, expiry,
force release, arguments refused with nothing changed, and several processes racing for
overlapping patterns on one SQLite file and one PostgreSQL database.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from runner.errors import BadArgument, Refused
from runner.model.clock import iso_after, now_iso
from runner.service.locks import FileLocks
from runner.store import open_store
from runner.store.base import Store
from runner.store.migrations import BOOTSTRAP, MIGRATIONS, SCHEMA_VERSION, statements
from runner.store.sqlite import sqlite_path
from tests.store_fixtures import (  # noqa: F401 - the fixtures this suite uses
    _database,
    backend_fixture,
    durable_fixture,
    pg_template,
    pg_url,
    pg_url_for,
    store_fixture,
)

if TYPE_CHECKING:
    from tests.store_fixtures import Backend


# --- the store's lock rows ------------------------------------------------------------------


def test_overlapping_globs_conflict_exactly(store: Store) -> None:
    held = store.acquire_lock("src/**/*.py", "alice", exclusive=True, ttl_s=30)
    assert held["granted"] and not held["renewed"]
    assert held["lock"]["fencing_token"] == 1 and held["lock"]["exclusive"] is True
    refused = store.acquire_lock("src/a/b.py", "bob", exclusive=False, ttl_s=30)
    assert refused == {"granted": False, "conflicts": [held["lock"]]}
    # Disjoint path sets never conflict, whatever their spelling.
    for pattern in ("src/a/b.txt", "docs/**", "srcx/a.py", "/src/a.py"):
        assert store.acquire_lock(pattern, "bob", exclusive=True, ttl_s=30)["granted"], pattern
    # An agent never blocks itself.
    assert store.acquire_lock("src/x.py", "alice", exclusive=True, ttl_s=30)["granted"]
    assert [(lk["file_path"], lk["agent_id"]) for lk in store.list_locks()] == [
        ("/src/a.py", "bob"),
        ("docs/**", "bob"),
        ("src/**/*.py", "alice"),
        ("src/a/b.txt", "bob"),
        ("src/x.py", "alice"),
        ("srcx/a.py", "bob"),
    ]


def test_shared_locks_coexist_and_keep_exclusive_ones_out(store: Store) -> None:
    assert store.acquire_lock("docs/*.md", "alice", exclusive=False, ttl_s=30)["granted"]
    assert store.acquire_lock("docs/**", "bob", exclusive=False, ttl_s=30)["granted"]
    refused = store.acquire_lock("docs/readme.md", "carol", exclusive=True, ttl_s=30)
    assert not refused["granted"]
    assert [(c["agent_id"], c["exclusive"]) for c in refused["conflicts"]] == [("bob", False), ("alice", False)]
    # Upgrading a shared lock to exclusive is refused while another agent shares the files;
    # the refused upgrade leaves the lock as it was.
    before = store.list_locks()
    assert not store.acquire_lock("docs/*.md", "alice", exclusive=True, ttl_s=30)["granted"]
    assert store.list_locks() == before


def test_reacquiring_the_same_pattern_renews_and_keeps_the_token(store: Store) -> None:
    first = store.acquire_lock("a.txt", "alice", exclusive=True, ttl_s=5)["lock"]
    again = store.acquire_lock("a.txt", "alice", exclusive=False, ttl_s=60)
    assert again["granted"] and again["renewed"]
    lock = again["lock"]
    assert lock["fencing_token"] == first["fencing_token"] and lock["acquired_at"] == first["acquired_at"]
    assert lock["expires_at"] > first["expires_at"] and lock["exclusive"] is False
    assert store.list_locks() == [lock]


def test_fencing_tokens_grow_per_pattern_and_are_never_reused(store: Store) -> None:
    tokens = []
    for agent in ("a", "b", "c"):
        tokens.append(store.acquire_lock("f.py", agent, exclusive=True, ttl_s=30)["lock"]["fencing_token"])
        assert [lk["fencing_token"] for lk in store.release_lock("f.py", agent)] == [tokens[-1]]
    short = store.acquire_lock("f.py", "d", exclusive=True, ttl_s=0.05)["lock"]["fencing_token"]
    time.sleep(0.1)
    after_expiry = store.acquire_lock("f.py", "e", exclusive=True, ttl_s=30)["lock"]["fencing_token"]
    assert tokens + [short, after_expiry] == [1, 2, 3, 4, 5]
    # Another pattern has a counter of its own; a refusal consumes no token.
    assert not store.acquire_lock("f.py", "z", exclusive=True, ttl_s=30)["granted"]
    assert store.acquire_lock("g.py", "z", exclusive=True, ttl_s=30)["lock"]["fencing_token"] == 1
    store.release_lock("f.py", "e")
    assert store.acquire_lock("f.py", "z", exclusive=True, ttl_s=30)["lock"]["fencing_token"] == 6


def test_renew_extends_a_live_lock_only(store: Store) -> None:
    lock = store.acquire_lock("x", "alice", exclusive=True, ttl_s=5)["lock"]
    renewed = store.renew_lock("x", "alice", ttl_s=60)
    assert renewed is not None and renewed["fencing_token"] == lock["fencing_token"]
    assert renewed["expires_at"] > lock["expires_at"] and renewed["acquired_at"] == lock["acquired_at"]
    assert store.renew_lock("x", "bob", ttl_s=60) is None  # not the holder
    assert store.renew_lock("y", "alice", ttl_s=60) is None  # never taken
    store.acquire_lock("short", "alice", exclusive=True, ttl_s=0.05)
    time.sleep(0.1)
    assert store.renew_lock("short", "alice", ttl_s=60) is None  # an expired lease is gone
    assert [lk["file_path"] for lk in store.list_locks()] == ["x"]


def test_expired_locks_are_free(store: Store) -> None:
    assert store.acquire_lock("src/**", "alice", exclusive=True, ttl_s=0.05)["granted"]
    assert not store.acquire_lock("src/a", "bob", exclusive=True, ttl_s=30)["granted"]
    time.sleep(0.1)
    assert store.list_locks() == []
    taken = store.acquire_lock("src/a", "bob", exclusive=True, ttl_s=30)
    assert taken["granted"] and taken["lock"]["agent_id"] == "bob"
    assert store.release_lock("src/**", "alice") == []  # nothing live was released


def test_release_by_holder_or_by_force(store: Store) -> None:
    store.acquire_lock("lib/*", "alice", exclusive=False, ttl_s=30)
    store.acquire_lock("lib/*", "bob", exclusive=False, ttl_s=30)
    assert store.release_lock("lib/*", "carol") == []
    assert [lk["agent_id"] for lk in store.release_lock("lib/*", "alice")] == ["alice"]
    assert store.release_lock("lib/*", "alice") == []
    store.acquire_lock("lib/*", "alice", exclusive=False, ttl_s=30)
    assert [lk["agent_id"] for lk in store.release_lock("lib/*", "operator", force=True)] == ["alice", "bob"]
    assert store.list_locks() == []


def test_acquisition_is_atomic_across_threads(store: Store) -> None:
    wins: list[str] = []
    patterns = ["pkg/**", "pkg/*.py", "pkg/m.py", "**/m.py", "pkg/[lm].py", "*/m.py", "pkg/?.py", "pkg/m*"]

    def grab(i: int) -> None:
        if store.acquire_lock(patterns[i], f"agent{i}", exclusive=True, ttl_s=30)["granted"]:
            wins.append(f"agent{i}")

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(len(patterns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert [lk["agent_id"] for lk in store.list_locks()] == wins


# --- the service --------------------------------------------------------------------------


def test_service_answers_with_the_documented_shapes(store: Store) -> None:
    locks = FileLocks(store)
    got = locks.acquire("alice", "./src//**/*.py", ttl_seconds=120)
    assert got["granted"] is True and got["renewed"] is False
    assert set(got) == {
        "granted", "file_path", "agent_id", "exclusive", "fencing_token", "acquired_at", "expires_at", "renewed",
        "ttl_seconds",
    }  # fmt: skip
    assert (got["file_path"], got["agent_id"], got["exclusive"], got["fencing_token"]) == (
        "src/**/*.py",
        "alice",
        True,
        1,
    )

    refused = locks.acquire("bob", "src/pkg/mod.py", exclusive=False)
    assert refused == {
        "granted": False,
        "file_path": "src/pkg/mod.py",
        "agent_id": "bob",
        "exclusive": False,
        "conflicts": [
            {
                "file_path": "src/**/*.py",
                "agent_id": "alice",
                "exclusive": True,
                "expires_at": got["expires_at"],
                "example": "src/pkg/mod.py",
            }
        ],
    }
    again = locks.acquire("alice", "src/**/*.py", ttl_seconds=600)
    assert again["renewed"] is True and again["fencing_token"] == 1 and again["expires_at"] > got["expires_at"]

    renewed = locks.renew("alice", "src/**/*.py", ttl_seconds=900)
    assert renewed["renewed"] is True and renewed["fencing_token"] == 1 and renewed["expires_at"] > again["expires_at"]
    with pytest.raises(Refused, match="'bob' holds no live lock on 'src/\\*\\*/\\*.py'"):
        locks.renew("bob", "src/**/*.py")

    seen = locks.check("src/a/b.py")
    assert seen["locked"] is True and seen["exclusive"] is True and seen["file_path"] == "src/a/b.py"
    assert [(lk["agent_id"], lk["fencing_token"], lk["example"]) for lk in seen["locks"]] == [
        ("alice", 1, "src/a/b.py")
    ]
    free = locks.check("docs/*.md")
    assert free == {"file_path": "docs/*.md", "locked": False, "exclusive": False, "locks": []}

    nothing = locks.release("bob", "src/**/*.py")
    assert nothing["released"] is False and "'bob' holds no live lock" in nothing["reason"]
    released = locks.release("alice", "src/**/*.py")
    assert released["released"] is True and [lk["fencing_token"] for lk in released["locks"]] == [1]
    assert locks.check("src/a/b.py")["locked"] is False


def test_force_release_frees_whoever_holds_the_pattern(store: Store) -> None:
    locks = FileLocks(store)
    locks.acquire("alice", "build/**", exclusive=True)
    out = locks.release("operator", "build/**", force=True)
    assert out["released"] is True and out["force"] is True and [lk["agent_id"] for lk in out["locks"]] == ["alice"]
    assert locks.acquire("bob", "build/out.bin")["granted"]
    assert locks.release("operator", "build/**", force=True)["reason"].startswith("nobody holds a live lock")


@pytest.mark.parametrize(
    ("call", "argument", "reason"),
    [
        (lambda lk: lk.acquire("alice", ""), "file_path", "is empty"),
        (lambda lk: lk.acquire("alice", "src/../etc/passwd"), "file_path", "'..' segment"),
        (lambda lk: lk.acquire("alice", "a\x00b"), "file_path", "NUL"),
        (lambda lk: lk.acquire("alice", "x" * 2000), "file_path", "at most 1024"),
        (lambda lk: lk.acquire("alice", 42), "file_path", "not int"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds=0), "ttl_seconds", "more than 0"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds=-5), "ttl_seconds", "more than 0"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds=86401), "ttl_seconds", "at most 86400"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds=math.nan), "ttl_seconds", "number of seconds"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds=math.inf), "ttl_seconds", "number of seconds"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds="300"), "ttl_seconds", "number of seconds"),
        (lambda lk: lk.acquire("alice", "f", ttl_seconds=True), "ttl_seconds", "number of seconds"),
        (lambda lk: lk.acquire("alice", "f", exclusive="yes"), "exclusive", "true or false"),
        (lambda lk: lk.acquire("", "f"), "agent_id", "not an agent id"),
        (lambda lk: lk.renew("alice", "f", ttl_seconds=0), "ttl_seconds", "more than 0"),
        (lambda lk: lk.renew("alice", "..", ttl_seconds=10), "file_path", "'..' segment"),
        (lambda lk: lk.release("alice", "f", force=1), "force", "true or false"),
        (lambda lk: lk.release("alice", "/"), "file_path", "names no file"),
        (lambda lk: lk.check("a//../b"), "file_path", "'..' segment"),
    ],
)
def test_bad_arguments_are_named_and_change_nothing(call: Any, argument: str, reason: str) -> None:
    # Arguments are checked before the store is touched, so one backend shows it for all.
    store = open_store("memory://")
    locks = FileLocks(store)
    locks.acquire("alice", "f", ttl_seconds=60)
    before = store.list_locks()
    with pytest.raises(BadArgument, match=reason) as info:
        call(locks)
    assert info.value.argument == argument
    assert store.list_locks() == before


# --- several processes on one store ------------------------------------------------------

RACE_PATTERNS = ["src/**", "src/*.py", "src/a.py", "**/a.py", "src/[ab].py", "*/a.py"]


def _contend(url: str, agent: str, pattern: str, barrier: Any, out: Any) -> None:
    """A child process: wait for the others, then try for one overlapping exclusive lock."""
    store = open_store(url)
    try:
        barrier.wait(timeout=60)
        out.put((agent, FileLocks(store).acquire(agent, pattern, ttl_seconds=60)["granted"]))
    finally:
        store.close()


def _churn(url: str, agent: str, rounds: int, barrier: Any, out: Any) -> None:
    """A child process: take and give back one path many times, reporting the tokens it got."""
    store = open_store(url)
    locks = FileLocks(store)
    tokens: list[int] = []
    try:
        barrier.wait(timeout=60)
        for _ in range(rounds):
            got = locks.acquire(agent, "shared/data.db", ttl_seconds=60)
            if got["granted"]:
                tokens.append(got["fencing_token"])
                locks.release(agent, "shared/data.db")
        out.put((agent, tokens))
    finally:
        store.close()


def _run_children(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(args))
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in args]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_exactly_one_process_wins_overlapping_exclusive_locks(durable: Backend) -> None:
    durable.open()  # migrate before the race
    results = _run_children(_contend, [(durable.url, f"agent{i}", p) for i, p in enumerate(RACE_PATTERNS)])
    winners = [agent for agent, granted in results if granted]
    assert len(winners) == 1, results
    held = durable.open().list_locks()
    assert [lk["agent_id"] for lk in held] == winners


def test_tokens_strictly_increase_across_processes(durable: Backend) -> None:
    durable.open()
    results = _run_children(_churn, [(durable.url, f"worker{i}", 25) for i in range(4)])
    every = [t for _, tokens in results for t in tokens]
    for _, tokens in results:
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # each process sees them grow
    # Every grant drew the next token of the path: no token twice, none skipped.
    assert sorted(every) == list(range(1, len(every) + 1)) and every


def test_an_expired_lock_is_free_for_another_process(durable: Backend) -> None:
    first, second = durable.open(), durable.open()
    assert FileLocks(first).acquire("alice", "db/**", ttl_seconds=0.2)["granted"]
    assert not FileLocks(second).acquire("bob", "db/x.sql")["granted"]
    time.sleep(0.3)
    taken = FileLocks(second).acquire("bob", "db/x.sql")
    assert taken["granted"] and taken["fencing_token"] == 1
    assert FileLocks(first).check("db/**")["locks"][0]["agent_id"] == "bob"
    with pytest.raises(Refused):
        FileLocks(first).renew("alice", "db/**")


# --- the upgrade from exact-string locks ---------------------------------------------------


BEFORE_LEASES = next(i for i, script in enumerate(MIGRATIONS) if "CREATE TABLE file_locks" in script)


def _schema_before_leases(url: str) -> None:
    """A store as runner left it before leases over globs (exact-string locks), with one live lock."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        conn: Any = sqlite3.connect(path)
        seq_pk, mark = "INTEGER PRIMARY KEY", "?"
    else:
        import psycopg

        conn = psycopg.connect(url)
        seq_pk, mark = "BIGSERIAL PRIMARY KEY", "%s"
    cur = conn.cursor()
    cur.execute(BOOTSTRAP)
    for version, script in enumerate(MIGRATIONS[:BEFORE_LEASES], start=1):
        for stmt in statements(script, seq_pk):
            cur.execute(stmt)
        cur.execute(f"INSERT INTO schema_version (version, applied_at) VALUES ({mark}, {mark})", (version, now_iso()))
    cur.execute(
        f"INSERT INTO locks (file_path, agent_id, acquired_at, expires_at) VALUES ({mark}, {mark}, {mark}, {mark})",
        ("src/old.py", "alice", now_iso(), iso_after(600)),
    )
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_live_locks_survive_the_upgrade(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'old' / 'runner.db'}"
    else:
        ctx = _database()
        url = pg_url_for(ctx.__enter__())
        request.addfinalizer(lambda: ctx.__exit__(None, None, None))
    _schema_before_leases(url)
    store = open_store(url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        [lock] = store.list_locks()
        assert (lock["file_path"], lock["agent_id"], lock["exclusive"], lock["fencing_token"]) == (
            "src/old.py",
            "alice",
            True,
            1,
        )
        assert not FileLocks(store).acquire("bob", "src/*.py")["granted"]
        FileLocks(store).release("alice", "src/old.py")
        assert FileLocks(store).acquire("bob", "src/old.py")["fencing_token"] == 2
    finally:
        store.close()
