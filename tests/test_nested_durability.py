"""Crash tests for nested runs (``uses:``). Ids: ``uses:resume``, ``uses:retry-from``.

``tests/fixtures/durable/nested.yaml`` has a ``uses:`` step (``team``), a ``uses:`` in a
``for_each`` (``teams``: item 0 fast, item 1 slow) and a callee that calls another
(``deep`` → ``deep/crew``). The runner is killed (SIGKILL, or Ctrl-C) while the slow
inner calls are in flight, then ``runner resume`` finishes the run. The ledger agent
writes every call it receives to a file (fsynced), so the counts survive the crash
independently of the store: completed inner steps are not called again, the inner calls
in flight are sent again with the same idempotency key, and ``retry --from team`` runs
that whole nested run again (new keys) and nothing else of what completed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")
NESTED = ROOT / "tests/fixtures/durable/nested.yaml"
SLOW = ("team-b", "y-b", "deep-b")  # the inner calls in flight when the runner is stopped
ONCE = ("first", "team-a", "x-a", "x-b", "y-a", "deep-plan", "deep-a")  # completed before it


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _show(run_id: str, store: str, cwd: Path) -> dict[str, Any]:
    p = _cli("runs", "show", run_id, "--output", "json", "--store", store, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


def _start_and_wait(store: str, tmp_path: Path, ledger: Path) -> tuple[subprocess.Popen[str], str]:
    """Start the run in its own session; return once the slow inner calls are in flight and item 0 is done."""
    proc = subprocess.Popen(
        [RUNNER, "run", str(NESTED), "-i", f"ledger={ledger}", "--store", store],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        run_id = ""
        while time.monotonic() < deadline:  # bounded: the slow calls sleep 60 s, this waits less
            assert proc.poll() is None, proc.communicate()
            if all(any(e["key"] == k for e in _ledger(ledger)) for k in SLOW):
                if not run_id:
                    listed = _cli("runs", "list", "--output", "json", "--store", store, cwd=tmp_path)
                    run_id = json.loads(listed.stdout)[0]["run_id"]
                steps = _show(run_id, store, tmp_path)["steps"]
                if steps.get("teams[0]/b", {}).get("status") == "completed":
                    return proc, run_id
            time.sleep(0.1)
        raise AssertionError("the slow inner calls never started")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise


def _check_stopped_state(run_id: str, store: str, tmp_path: Path) -> None:
    """What the store says of a run stopped mid-way: inner steps by nested id, done or in flight."""
    status = {k: v["status"] for k, v in _show(run_id, store, tmp_path)["steps"].items()}
    for sid in ("first", "team/a", "teams[0]/a", "teams[0]/b", "teams[1]/a", "deep/plan", "deep/crew/a"):
        assert status[sid] == "completed", (sid, status)
    for sid in ("team", "team/b", "teams", "teams[1]/b", "deep", "deep/crew", "deep/crew/b"):
        assert status[sid] == "in_progress", (sid, status)
    assert "last" not in status or status["last"] == "pending"


def _resume_and_check(run_id: str, store: str, tmp_path: Path, ledger: Path) -> None:
    resumed = _cli("resume", run_id, "--store", store, "--output", "json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["status"] == "completed", out
    assert out["outputs"] == {"said": ["team!", "x!", "y!", "deep!?"]}  # what an uninterrupted run says
    steps = out["steps"]
    # The result shows every inner step, the kept ones included, each after its caller.
    assert list(steps) == [
        "first", "team", "team/a", "team/b", "teams", "teams[0]/a", "teams[0]/b", "teams[1]/a", "teams[1]/b",
        "deep", "deep/plan", "deep/crew", "deep/crew/a", "deep/crew/b", "last",
    ]  # fmt: skip
    assert all(s["status"] == "completed" and s["attempts"] == 1 for s in steps.values()), steps

    calls = Counter(e["key"] for e in _ledger(ledger))
    assert {k: calls[k] for k in ONCE} == dict.fromkeys(ONCE, 1), calls  # completed inner steps never re-ran
    assert {k: calls[k] for k in SLOW} == dict.fromkeys(SLOW, 2), calls  # in flight: sent again
    assert calls["last"] == 1
    keys = {k: [e["idempotency_key"] for e in _ledger(ledger) if e["key"] == k] for k in (*SLOW, "x-a", "y-a")}
    assert keys["team-b"] == [f"{run_id}/team@1:b:1"] * 2  # the same key both times
    assert keys["y-b"] == [f"{run_id}/teams[1]@1:b:1"] * 2
    assert keys["deep-b"] == [f"{run_id}/deep@1/crew@1:b:1"] * 2
    assert keys["x-a"] == [f"{run_id}/teams[0]@1:a:1"] and keys["y-a"] == [f"{run_id}/teams[1]@1:a:1"]

    final = _show(run_id, store, tmp_path)
    assert final["status"] == "completed"
    assert {s["status"] for s in final["steps"].values()} == {"completed"}


def _crash_then_resume(store: str, tmp_path: Path) -> str:
    ledger = tmp_path / "ledger.jsonl"
    proc, run_id = _start_and_wait(store, tmp_path, ledger)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its agent: a hard crash
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    _check_stopped_state(run_id, store, tmp_path)
    _resume_and_check(run_id, store, tmp_path, ledger)
    return run_id


def test_nested_runs_resume_after_sigkill_sqlite(tmp_path: Path) -> None:
    """uses:resume + uses:retry-from on SQLite."""
    store = f"sqlite:///{tmp_path}/runner.db"
    run_id = _crash_then_resume(store, tmp_path)

    ledger = tmp_path / "ledger.jsonl"
    before = Counter(e["key"] for e in _ledger(ledger))
    again = _cli("retry", run_id, "--from", "team", "--store", store, "--output", "json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["outputs"] == {"said": ["team!", "x!", "y!", "deep!?"]}
    assert out["steps"]["team"]["attempts"] == 2 and out["steps"]["team/a"]["status"] == "completed"
    # The nested runs that were kept show their steps as the store has them.
    assert {k: v["status"] for k, v in out["steps"].items() if k.startswith(("teams", "deep"))} == dict.fromkeys(
        ["teams", "teams[0]/a", "teams[0]/b", "teams[1]/a", "teams[1]/b", "deep", "deep/plan", "deep/crew",
         "deep/crew/a", "deep/crew/b"], "completed"
    )  # fmt: skip
    assert out["steps"]["deep/crew/b"]["result"]["value"] == "deep!"
    new = Counter(e["key"] for e in _ledger(ledger)) - before
    assert new == Counter({"team-a": 1, "team-b": 1, "last": 1}), new  # the whole nested run, its dependants
    fresh = [e["idempotency_key"] for e in _ledger(ledger) if e["key"] == "team-a"]
    assert fresh == [f"{run_id}/team@1:a:1", f"{run_id}/team@2:a:1"]  # a new attempt: new keys
    history = _show(run_id, store, tmp_path)["history"]
    assert any(h["type"] == "run_resumed" for h in history)


def test_nested_runs_resume_after_sigkill_postgresql(tmp_path: Path, pg_url: str) -> None:
    """uses:resume on PostgreSQL."""
    _crash_then_resume(pg_url, tmp_path)


def test_nested_runs_resume_after_ctrl_c(tmp_path: Path) -> None:
    """uses:resume — Ctrl-C leaves the nested runs' in-flight calls to be sent again with their keys."""
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "ledger.jsonl"
    proc, run_id = _start_and_wait(store, tmp_path, ledger)
    try:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "resume with: runner resume" in err and "Traceback" not in err
    assert _show(run_id, store, tmp_path)["status"] == "interrupted"
    _check_stopped_state(run_id, store, tmp_path)
    _resume_and_check(run_id, store, tmp_path, ledger)
