"""Crash tests: SIGKILL `runner run` mid-step, `runner resume`, prove nothing completed ran twice.

Run on SQLite and on the real PostgreSQL. The ledger agent writes every call it receives
to a file (fsynced), so the count survives the crash independently of the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")
CRASHY = ROOT / "tests/fixtures/durable/crashy.yaml"


def _ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def start_crashy(store: str, tmp_path: Path, ledger: Path) -> subprocess.Popen[bytes]:
    """Start `runner run crashy.yaml` in its own session; return once its slow step is in flight."""
    proc = subprocess.Popen(
        [RUNNER, "run", str(CRASHY), "-i", f"ledger={ledger}", "--store", store, "-q"],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: until the slow step is in flight
        if any(e["key"] == "slow" for e in _ledger(ledger)):
            return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    raise AssertionError("the slow step never started")


def _crash_then_resume(store: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    proc = start_crashy(store, tmp_path, ledger)
    try:
        time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its agent: a hard crash
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    listed = _cli("runs", "list", "--output", "json", "--store", store, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    assert run["status"] == "running"
    shown = json.loads(_cli("runs", "show", run["run_id"], "--output", "json", "--store", store, cwd=tmp_path).stdout)
    assert shown["steps"]["first"]["status"] == "completed"
    assert shown["steps"]["slow"]["status"] == "in_progress"

    resumed = _cli("resume", run["run_id"], "--store", store, "--output", "json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["run_id"] == run["run_id"]
    assert out["status"] == "completed"
    assert out["outputs"] == {"total": 20}  # the same outputs an uninterrupted run has
    # The call in flight at the crash is the same logical attempt: sent again with its key.
    assert out["steps"]["slow"]["attempts"] == 1

    calls: dict[str, int] = {}
    for e in _ledger(ledger):
        calls[e["key"]] = calls.get(e["key"], 0) + 1
    assert calls == {"first": 1, "side": 1, "slow": 2, "last": 1}, calls  # completed steps never re-ran
    keys = [e["idempotency_key"] for e in _ledger(ledger) if e["key"] == "slow"]
    assert keys == [f"{run['run_id']}:slow:1", f"{run['run_id']}:slow:1"]  # SPEC §6: the same key

    final = json.loads(_cli("runs", "show", run["run_id"], "--output", "json", "--store", store, cwd=tmp_path).stdout)
    assert final["status"] == "completed"
    assert {k: v["status"] for k, v in final["steps"].items()} == dict.fromkeys(
        ["first", "side", "slow", "last"], "completed"
    )


def test_crash_and_resume_sqlite(tmp_path: Path) -> None:
    _crash_then_resume(f"sqlite:///{tmp_path}/runner.db", tmp_path)


def test_crash_and_resume_postgresql(tmp_path: Path, pg_url: str) -> None:
    _crash_then_resume(pg_url, tmp_path)


def test_resume_refuses_changed_workflow_unless_forced(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    text = CRASHY.read_text().replace("cwd: ../../..", f"cwd: {ROOT}").replace("sleep_first: 60", "sleep_first: 0")
    wf.write_text(text.replace("key: last,", 'key: last, missing: "{{ steps.side.result.nope }}",'))
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "l.jsonl"
    first = _cli("run", str(wf), "-i", f"ledger={ledger}", "--store", store, "--output", "json", "-q", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    wf.write_text(text)  # fix the workflow
    refused = _cli("resume", run_id, "--store", store, cwd=tmp_path)
    assert refused.returncode == 2
    assert "changed since run" in refused.stderr and "--force" in refused.stderr
    forced = _cli("resume", run_id, "--store", store, "--force", "--output", "json", "-q", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["outputs"] == {"total": 20}
    calls = [e["key"] for e in _ledger(ledger)]
    assert calls.count("first") == 1 and calls.count("slow") == 1


def test_retry_from_reruns_step_and_descendants_only(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        CRASHY.read_text().replace("cwd: ../../..", f"cwd: {ROOT}").replace("sleep_first: 60", "sleep_first: 0")
    )
    store = f"sqlite:///{tmp_path}/r.db"
    ledger = tmp_path / "l.jsonl"
    first = _cli("run", str(wf), "-i", f"ledger={ledger}", "--store", store, "--output", "json", "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    again = _cli("retry", run_id, "--from", "slow", "--store", store, "--output", "json", "-q", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["run_id"] == run_id
    assert {k: v["attempts"] for k, v in out["steps"].items()} == {"first": 1, "side": 1, "slow": 2, "last": 2}
    calls = [e["key"] for e in _ledger(ledger)]
    assert sorted(calls) == sorted(["first", "side", "slow", "last", "slow", "last"])
    bad = _cli("retry", run_id, "--from", "nope", "--store", store, cwd=tmp_path)
    assert bad.returncode == 2 and "no step 'nope'" in bad.stderr
    events = _cli("runs", "show", run_id, "--store", store, "--output", "json", cwd=tmp_path)
    assert json.loads(events.stdout)["status"] == "completed"


def test_unknown_run_id_is_exit_2(tmp_path: Path) -> None:
    p = _cli("resume", "does-not-exist", "--store", f"sqlite:///{tmp_path}/r.db", cwd=tmp_path)
    assert p.returncode == 2
    assert "no run" in p.stderr and "Traceback" not in p.stderr


def test_ctrl_c_exits_130_and_leaves_run_resumable(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    store = f"sqlite:///{tmp_path}/r.db"
    proc = subprocess.Popen(
        [RUNNER, "run", str(CRASHY), "-i", f"ledger={ledger}", "--store", store],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(e["key"] == "slow" for e in _ledger(ledger)):
            assert time.monotonic() < deadline, "the slow step never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "resume with: runner resume" in err and "Traceback" not in err
    [run] = json.loads(_cli("runs", "list", "--output", "json", "--store", store, cwd=tmp_path).stdout)
    assert run["status"] == "interrupted"
    resumed = _cli("resume", run["run_id"], "--store", store, "--output", "json", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"total": 20}
    assert [e["key"] for e in _ledger(ledger)].count("first") == 1
