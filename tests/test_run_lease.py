"""Durability edges: one run is executed by one process at a time, retry is a new attempt,
resumed runs see what the first session saw, and the SQLite store survives a racing start.

Real processes throughout: the `runner` CLI in subprocesses, the ledger agent over stdio
(it records every call with its idempotency key), real SQLite files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_durability import RUNNER, _cli, _ledger, start_crashy

ROOT = Path(__file__).resolve().parent.parent
LEDGER_AGENT = ROOT / "tests" / "agents" / "ledger_agent.py"


def _crash_mid_step(store: str, tmp_path: Path, ledger: Path) -> None:
    """Run crashy and SIGKILL the runner and its agent while the slow step is in flight."""
    proc = start_crashy(store, tmp_path, ledger)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _only_run(store: str, tmp_path: Path) -> dict:
    listed = _cli("runs", "list", "--output", "json", "--store", store, cwd=tmp_path)
    [run] = json.loads(listed.stdout)
    return run


def test_resume_refuses_a_run_a_live_runner_executes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "ledger.jsonl"
    proc = start_crashy(store, tmp_path, ledger)
    try:
        run = _only_run(store, tmp_path)
        for command in (["resume", run["run_id"]], ["retry", run["run_id"], "--from", "first"]):
            busy = _cli(*command, "--store", store, cwd=tmp_path)
            assert busy.returncode == 2, busy.stderr
            assert "being executed by another runner" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a hard crash: the lease stays, its holder is dead
        proc.wait(timeout=10)
    calls = [e["key"] for e in _ledger(ledger)]
    assert calls.count("first") == 1  # the refused commands called nothing
    resumed = _cli("resume", run["run_id"], "--store", store, "--output", "json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # taken over at once, not after the lease expires
    assert json.loads(resumed.stdout)["outputs"] == {"total": 20}


def test_retry_is_a_new_attempt_and_history_keeps_both(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "ledger.jsonl"
    _crash_mid_step(store, tmp_path, ledger)
    run_id = _only_run(store, tmp_path)["run_id"]
    assert _cli("resume", run_id, "--store", store, "-q", cwd=tmp_path).returncode == 0
    again = _cli("resume", run_id, "--store", store, "--output", "json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "completed"  # stored result, as JSON
    retried = _cli("retry", run_id, "--from", "slow", "--store", store, "--output", "json", cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    shown = json.loads(_cli("runs", "show", run_id, "--output", "json", "--store", store, cwd=tmp_path).stdout)
    assert shown["attempt"] == 2
    sessions = [h["type"] for h in shown["history"] if h["type"] in ("run_started", "run_resumed")]
    assert sessions == ["run_started", "run_resumed", "run_resumed"]
    last_outcomes = [h for h in shown["history"] if h.get("step_id") == "last" and h["type"] == "step_completed"]
    assert len(last_outcomes) == 2  # the first result of `last` is still there
    text = _cli("runs", "show", run_id, "--store", store, cwd=tmp_path).stdout
    assert "history (3 sessions, attempt 2)" in text


def test_for_each_items_get_new_idempotency_keys_on_retry(tmp_path: Path) -> None:
    wf = tmp_path / "fan.yaml"
    wf.write_text(
        textwrap.dedent(
            f"""\
            name: fan
            inputs:
              ledger: {{type: string}}
            agents:
              - {{id: ledger, transport: stdio, command: python, args: ["{LEDGER_AGENT}"],
                  env: {{LEDGER_PATH: "{{{{ inputs.ledger }}}}"}}}}
            steps:
              - step_id: fan
                for_each: [a, b]
                tool_to_call: record
                tool_arguments: {{key: "{{{{ item }}}}"}}
            """
        ),
        encoding="utf-8",
    )
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "ledger.jsonl"
    first = _cli("run", str(wf), "-i", f"ledger={ledger}", "--store", store, "--output", "json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    retried = _cli("retry", run_id, "--from", "fan", "--store", store, "--output", "json", cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["steps"]["fan"]["attempts"] == 2
    keys = sorted(e["idempotency_key"] for e in _ledger(ledger))
    assert keys == sorted(f"{run_id}:fan:{att}:{i}" for att in (1, 2) for i in (0, 1))


def test_two_runners_creating_one_sqlite_store(tmp_path: Path) -> None:
    """Both processes open a store file that does not exist yet, at the same moment."""
    script = textwrap.dedent(
        f"""\
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from runner.store.sqlite import SQLiteStore
        go = float(sys.argv[2])
        while time.time() < go:
            pass
        s = SQLiteStore("sqlite:///" + sys.argv[1]); s.list_runs(); s.close()
        """
    )
    for trial in range(6):
        db = tmp_path / f"new{trial}.db"
        go = f"{time.time() + 0.6:.3f}"
        procs = [
            subprocess.Popen([sys.executable, "-c", script, str(db), go], stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for p in procs:
            _out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err


def test_a_foreign_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = other.read_bytes()
    res = _cli("runs", "list", "--store", f"sqlite:///{other}", cwd=tmp_path)
    assert res.returncode == 2 and "not a runner store" in res.stderr and "customers" in res.stderr, res.stderr
    assert other.read_bytes() == before


def test_runs_list_since_accepts_a_duration(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "ledger.jsonl"
    _crash_mid_step(store, tmp_path, ledger)
    recent = _cli("runs", "list", "--since", "1h", "--output", "json", "--store", store, cwd=tmp_path)
    assert recent.returncode == 0 and len(json.loads(recent.stdout)) == 1, recent.stderr
    future = _cli("runs", "list", "--since", "2999-01-01", "--output", "json", "--store", store, cwd=tmp_path)
    assert json.loads(future.stdout) == []
    bad = _cli("runs", "list", "--since", "yesterday-ish", "--store", store, cwd=tmp_path)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


def test_a_read_only_store_can_still_be_read(tmp_path: Path) -> None:
    """A store file this user may not write (a CI artifact, another user's): history reads work,
    a run fails in one line before starting any agent. Root ignores file modes, so as root the
    commands run as user `nobody` (setpriv)."""

    # Outside pytest's tmp_path: its parents are private to root, and `nobody` must reach the file.
    store_dir = Path(tempfile.mkdtemp(prefix="runner-ro-"))
    store_dir.chmod(0o755)
    db = store_dir / "r.db"
    url = f"sqlite:///{db}"
    wf = store_dir / "quick.yaml"
    counter = ROOT / "tests" / "agents" / "counter_agent.py"
    wf.write_text(
        "name: quick\n"
        f"agents:\n  - {{id: c, transport: stdio, command: python, args: ['{counter}']}}\n"
        "steps:\n  - {step_id: a, tool_to_call: echo, tool_arguments: {text: hi}}\n",
        encoding="utf-8",
    )
    done = _cli("run", str(wf), "--store", url, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None or not os.access(RUNNER, os.X_OK):
            pytest.skip("running as root without setpriv: file modes cannot be tested")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    db.chmod(0o444)
    store_dir.chmod(0o555)
    try:
        env = {**os.environ, "HOME": str(store_dir)}
        listed = subprocess.run(
            [*prefix, RUNNER, "runs", "list", "--output", "json", "--store", url],
            capture_output=True, text=True, cwd=store_dir, env=env, timeout=60,
        )  # fmt: skip
        if listed.returncode != 0 and "Permission denied" in listed.stderr and prefix:
            pytest.skip(f"user nobody cannot run {RUNNER} here: {listed.stderr.strip()[:200]}")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 1
        ran = subprocess.run(
            [*prefix, RUNNER, "run", str(wf), "--store", url],
            capture_output=True, text=True, cwd=store_dir, env=env, timeout=60,
        )  # fmt: skip
        assert ran.returncode == 2 and "read-only" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    finally:
        store_dir.chmod(0o755)
        shutil.rmtree(store_dir, ignore_errors=True)
