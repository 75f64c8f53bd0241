"""The SQLite commit path: what makes a chain step cheap must not cost durability.

A SQLite store commits in WAL mode with ``synchronous=NORMAL`` and checkpoints only every
10,000 pages, so the commits of a whole run may live in the ``-wal`` file alone. These
tests check that such a run survives its process being killed (no close, no checkpoint)
and a clean close, and that the store's own JSON encoder writes exactly what
``json.dumps`` would and refuses what JSON cannot hold.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.errors import NotStorable
from runner.model import events as ev
from runner.model.events import Event
from runner.store import open_store
from runner.store.sql_rows import to_json
from runner.store.sqlite import WAL_CHECKPOINT_PAGES, SQLiteStore

ROOT = Path(__file__).resolve().parent.parent

# A child that runs a fenced chain of N steps the way the engine's journal writes it (one
# group commit a step: the previous step's end and the next one's start), then dies
# without closing the store: what it committed exists only in the WAL.
CHILD = textwrap.dedent(
    """
    import os, sys
    from runner.model import events as ev
    from runner.model.events import Event
    from runner.model.records import RunRecord
    from runner.store import open_store

    url, n = sys.argv[1], int(sys.argv[2])
    store = open_store(url)
    store.create_run(RunRecord(run_id="r1", workflow_name="wf", workflow_hash="h" * 8))
    store.append(Event(type=ev.RUN_STARTED, run_id="r1", data={"workflow": "wf", "inputs": {}}))
    lease = store.claim_run("r1", "child", 60).lease
    store.append_many([Event(type=ev.STEP_STARTED, run_id="r1", step_id="s0", attempt=1, agent_id="a")], lease)
    for i in range(1, n):
        store.append_many(
            [
                Event(type=ev.STEP_COMPLETED, run_id="r1", step_id=f"s{i - 1}", attempt=1, agent_id="a",
                      data={"result": {"i": i - 1, "text": "é"}, "text": str(i - 1), "content": [], "duration_ms": 0.1}),
                Event(type=ev.STEP_STARTED, run_id="r1", step_id=f"s{i}", attempt=1, agent_id="a"),
            ],
            lease,
        )
    print("committed", flush=True)
    os._exit(0)  # killed: no close, no checkpoint
    """
)


def _wal_frames(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return 0 if not wal.exists() else (wal.stat().st_size - 32) // (4096 + 24)


def test_pragmas_of_a_writable_store(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
        assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] >= WAL_CHECKPOINT_PAGES * 4096
    finally:
        store.close()


def test_a_killed_writer_loses_no_commit_held_in_the_wal_alone(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    url = f"sqlite:///{db}"
    n = 1000  # ~2.3 pages a step (event row and its index), rows written every 512 steps
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(n)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "committed" in proc.stdout, proc.stderr[-2000:]
    # Nothing was checkpointed: the run is in the WAL only (SQLite's default of 1,000 pages
    # would have copied ~400 steps back into the database file on the way).
    assert _wal_frames(db) > 1000
    alone = tmp_path / "alone.db"
    shutil.copyfile(db, alone)
    conn = sqlite3.connect(alone)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "step_rows" not in tables or conn.execute("SELECT COUNT(*) FROM step_rows").fetchone()[0] == 0
    finally:
        conn.close()
    store = open_store(url)
    try:
        steps = store.get_steps("r1")
        assert [s.step_id for s in steps] == [f"s{i}" for i in range(n)]
        assert all(s.status == "completed" for s in steps[:-1]) and steps[-1].status == "in_progress"
        assert steps[7].result == {"i": 7, "text": "é"} and steps[7].text == "7"
        log = store.get_events("r1")
        assert len(log) == 1 + 1 + 2 * (n - 1)
        assert [e.type for e in log[:3]] == [ev.RUN_STARTED, ev.STEP_STARTED, ev.STEP_COMPLETED]
    finally:
        store.close()
    # The last process to close the store checkpoints: the WAL is gone, the rows stay.
    assert not Path(f"{db}-wal").exists()
    again = open_store(url)
    try:
        assert len(again.get_steps("r1")) == n
    finally:
        again.close()


@pytest.mark.parametrize(
    "value",
    [
        "seed",
        "",
        'é\u2028"\\',
        0,
        -1,
        10**40,
        0.1,
        -0.0,
        1e300,
        True,
        False,
        None,
        [],
        {},
        [1, [2, [3]]],
        {"a": {"b": [None, 1.5, "x"]}, "k": "v"},
        {1: "int key", None: "null key"},
    ],
)
def test_to_json_writes_what_json_dumps_writes(value: object) -> None:
    assert to_json(value, "v") == json.dumps(value, separators=(",", ":"), allow_nan=False)


def test_to_json_refuses_what_json_cannot_hold() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    for bad, why in [
        (float("nan"), "Out of range float"),
        ({"x": [float("inf")]}, "Out of range float"),
        ({"x": object()}, "Object of type object is not JSON serializable"),
        ({1, 2}, "Object of type set"),
        (cycle, "recursion"),
    ]:
        with pytest.raises(NotStorable, match=f"^cannot store the thing: .*{why}"):
            to_json(bad, "the thing")


def test_a_refused_value_leaves_the_store_usable(tmp_path: Path) -> None:
    """An encoder error mid-batch rolls the batch back; the next batch writes normally."""
    store = open_store(f"sqlite:///{tmp_path / 'refused.db'}")
    try:
        store.append(Event(type=ev.RUN_STARTED, run_id="r1", data={"workflow": "wf", "inputs": {}}))
        lease = store.claim_run("r1", "me", 60).lease
        bad = Event(type=ev.STEP_COMPLETED, run_id="r1", step_id="s0", attempt=1, data={"result": {1j}})
        start = Event(type=ev.STEP_STARTED, run_id="r1", step_id="s0", attempt=1)
        with pytest.raises(NotStorable):
            store.append_many([start, bad], lease)
        assert store.get_steps("r1") == [] and len(store.get_events("r1")) == 1
        good = Event(type=ev.STEP_COMPLETED, run_id="r1", step_id="s0", attempt=1, data={"result": 2})
        store.append_many([start, good], lease)
        assert [(s.step_id, s.status, s.result) for s in store.get_steps("r1")] == [("s0", "completed", 2)]
        assert os.path.exists(f"{tmp_path / 'refused.db'}-wal")
    finally:
        store.close()
