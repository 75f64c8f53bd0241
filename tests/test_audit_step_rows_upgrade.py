"""Audit of migration 9 (``runs.steps_lag``) with the real previous runner, in processes.

The previous version is the tree of the commit before migration 9 was added, taken from
this repository's history (``git archive``) and run from a temporary directory; the test
skips when that history is not available (a shallow clone). It writes a schema-8 store
with finished and unfinished runs; the new code then opens it, reads it and resumes it.
A second test runs both versions at once, as a rolling upgrade of workers would.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_audit_step_rows_cli import (
    LAGGING,
    PLAIN,
    assert_show_is_the_log,
    background,
    calls,
    cli,
    in_ledger,
    ledger,
    steps_lag,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
CRASHY = ROOT / "tests/fixtures/durable/crashy.yaml"
PULL = ROOT / "tests/fixtures/lifecycle/pull.yaml"


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def previous_runner() -> Iterator[list[str]]:
    """argv of the runner as it was just before migration 9 (its ``runner`` package, from git)."""
    try:
        added = _git("log", "--format=%H", "-S", "ADD COLUMN steps_lag", "--", "runner/store/migrations.py")
        first = added.decode().split()[-1]
        blob = _git("archive", "--format=tar", f"{first}^", "runner", "schemas", "patterns")
    except (subprocess.CalledProcessError, FileNotFoundError, IndexError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the previous runner is not in this checkout's history: {exc}")
    # World-readable (not under pytest's private tmp): one test runs it as user `nobody`.
    where = Path(tempfile.mkdtemp(prefix="runner-previous-"))
    where.chmod(0o755)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(where, filter="data")
    main = (
        f"import sys; sys.path.insert(0, {str(where)!r}); import runner; "
        f"assert runner.__file__.startswith({str(where)!r}), runner.__file__; "
        "from runner.store.migrations import SCHEMA_VERSION; assert SCHEMA_VERSION == 8, SCHEMA_VERSION; "
        "from runner.cli.main import main; sys.argv[0] = 'runner'; sys.exit(main())"
    )
    try:
        yield [sys.executable, "-c", main]
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _schema(url: str) -> int:
    import sqlite3

    conn = sqlite3.connect(url[len("sqlite:///") :])
    try:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def test_a_store_written_by_the_previous_runner_reads_and_resumes_exactly(
    previous_runner: list[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/runner.db"
    book = tmp_path / "ledger.jsonl"
    # 1. the previous runner: a finished run, a run killed mid-call, a run killed waiting for a pull step
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        CRASHY.read_text()
        .replace("cwd: ../../..", f"cwd: {ROOT}")
        .replace("sleep_first: 60", "sleep_first: 0")
        .replace("name: crashy", "name: quick")
    )
    rc, out, err = cli(
        "run",
        quick,
        "-i",
        f"ledger={tmp_path}/quick.jsonl",
        "--store",
        url,
        "--output",
        "json",
        cwd=tmp_path,
        argv=previous_runner,
    )
    assert rc == 0, err
    finished = json.loads(out)["run_id"]
    with background(previous_runner, "run", CRASHY, "-i", f"ledger={book}", "--store", url, "-q", cwd=tmp_path) as bg:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, bg)
        bg.signal(9)
        bg.wait(10)
    with background(previous_runner, "run", PULL, "--store", url, "-q", cwd=tmp_path) as bg:

        def review_waits() -> bool:
            rc, out, _ = cli("steps", "list", "--store", url, "--output", "json", cwd=tmp_path, argv=previous_runner)
            return rc == 0 and any(r["step_id"] == "review" for r in json.loads(out))

        wait_until("the pull step waiting", review_waits, 60, bg)
        bg.signal(9)
        bg.wait(10)
    assert _schema(url) == 8

    # 2. the new runner opens it: every run reads as the log says
    rc, out, err = cli("runs", "list", "--store", url, "--output", "json", cwd=tmp_path)
    assert rc == 0, err
    ids = {r["workflow"]: r["run_id"] for r in json.loads(out)}
    assert _schema(url) >= 9
    assert set(ids) == {"quick", "crashy", "pull-review"}, ids
    crashed, pulled = ids["crashy"], ids["pull-review"]
    for run_id in (finished, crashed, pulled):
        assert steps_lag(url, run_id) is None
        assert_show_is_the_log(url, tmp_path, run_id)

    # 3. the pull step still waits; a report from another process, then resume it
    rc, out, err = cli("steps", "list", "--store", url, "--output", "json", cwd=tmp_path)
    assert rc == 0 and [r["step_id"] for r in json.loads(out)] == ["review"], (out, err)
    rc, _, err = cli(
        "steps",
        "complete",
        pulled,
        "review",
        "--agent",
        "reviewer",
        "--store",
        url,
        "--result",
        '{"verdict": "approved", "score": 9}',
        cwd=tmp_path,
    )
    assert rc == 0, err
    with background(LAGGING, "resume", pulled, "--store", url, "-q", cwd=tmp_path) as bg:

        def sign_off_waits() -> bool:
            rc, out, _ = cli("steps", "list", "--store", url, "--output", "json", cwd=tmp_path)
            return rc == 0 and any(r["step_id"] == "sign_off" for r in json.loads(out))

        wait_until("sign_off waiting", sign_off_waits, 60, bg)
        rc, _, err = cli(
            "steps",
            "complete",
            pulled,
            "sign_off",
            "--agent",
            "approver",
            "--store",
            url,
            "--result",
            '{"by": "ann"}',
            cwd=tmp_path,
        )
        assert rc == 0, err
        assert bg.wait(60) == 0, bg.stderr()
    shown = assert_show_is_the_log(url, tmp_path, pulled)
    assert shown["status"] == "completed" and shown["outputs"]["verdict"] == "approved"

    # 4. resume the crashed run with the new runner: nothing completed runs again, the same key
    rc, out, err = cli("resume", crashed, "--store", url, "--output", "json", cwd=tmp_path, argv=LAGGING)
    assert rc == 0, err
    assert json.loads(out)["outputs"] == {"total": 20}
    assert calls(book) == {"first": 1, "side": 1, "slow": 2, "last": 1}
    assert [c["idempotency_key"] for c in ledger(book) if c["key"] == "slow"] == [f"{crashed}:slow:1"] * 2
    for run_id in (finished, crashed, pulled):
        assert_show_is_the_log(url, tmp_path, run_id)
        assert steps_lag(url, run_id) is None


def test_an_older_worker_still_running_after_the_upgrade_refuses_the_run_and_reruns_nothing(
    previous_runner: list[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/runner.db"
    book = tmp_path / "ledger.jsonl"
    with background(previous_runner, "worker", "--store", url, "--poll-interval", "0.3", cwd=tmp_path) as old:
        wait_until("the old worker created its store", lambda: Path(f"{tmp_path}/runner.db").exists(), 30, old)
        time.sleep(1.0)
        assert _schema(url) == 8
        old.signal(19)  # SIGSTOP: it sleeps through the upgrade, as a busy machine's worker might
        rc, out, err = cli("run", CRASHY, "-i", f"ledger={book}", "--store", url, "--detach", cwd=tmp_path)
        assert rc == 0, err
        assert _schema(url) == 9
        with background(PLAIN, "worker", "--store", url, cwd=tmp_path) as new:
            wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, new)
            new.signal(9)  # the new worker dies with the slow call in flight
            new.wait(10)
        old.signal(18)  # SIGCONT: the old worker tries to take over the dead worker's run
        # It cannot misread the new rows: the table it knows is gone, so it hands the run back.
        wait_until("the old worker refuses the run", lambda: "no such table: steps" in old.stderr(), 60, old)
        with background(PLAIN, "worker", "--store", url, cwd=tmp_path) as again:

            def finished() -> bool:
                rc, out, _ = cli("runs", "list", "--store", url, "--output", "json", cwd=tmp_path)
                return rc == 0 and json.loads(out)[0]["status"] in ("completed", "failed")

            wait_until("a new worker finishes the run", finished, 90, again)
    rc, out, _ = cli("runs", "list", "--store", url, "--output", "json", cwd=tmp_path)
    assert json.loads(out)[0]["status"] == "completed", out
    assert calls(book)["first"] == 1 and calls(book)["side"] == 1, ledger(book)


def test_a_read_only_store_of_the_previous_runner_can_still_be_read(previous_runner: list[str]) -> None:
    import os

    store_dir = Path(tempfile.mkdtemp(prefix="runner-ro-audit-"))  # `nobody` must reach it
    store_dir.chmod(0o755)
    url = f"sqlite:///{store_dir}/r.db"
    wf = store_dir / "quick.yaml"
    counter = ROOT / "tests" / "agents" / "counter_agent.py"
    wf.write_text(
        "name: quick\n"
        f"agents:\n  - {{id: c, transport: stdio, command: {sys.executable}, args: ['{counter}']}}\n"
        "steps:\n  - {step_id: a, tool_to_call: echo, tool_arguments: {text: hi}}\n",
        encoding="utf-8",
    )
    try:
        rc, out, err = cli("run", wf, "--store", url, "--output", "json", cwd=store_dir, argv=previous_runner)
        assert rc == 0, err
        run_id = json.loads(out)["run_id"]
        prefix: list[str] = []
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: file modes cannot be tested")
            prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        (store_dir / "r.db").chmod(0o444)
        store_dir.chmod(0o555)
        env = {**os.environ, "HOME": str(store_dir)}
        env.pop("RUNNER_STORE", None)
        for argv, who in ((previous_runner, "the previous runner"), (PLAIN, "this runner")):
            shown = subprocess.run(
                [*prefix, *argv, "runs", "show", run_id, "--output", "json", "--store", url],
                capture_output=True, text=True, cwd=store_dir, env=env, timeout=60,
            )  # fmt: skip
            if shown.returncode != 0 and "Permission denied" in shown.stderr and prefix:
                pytest.skip(f"user nobody cannot run the runner here: {shown.stderr.strip()[:200]}")
            assert shown.returncode == 0, f"{who}: {shown.stderr}"
            assert json.loads(shown.stdout)["steps"]["a"]["status"] == "completed", who
    finally:
        store_dir.chmod(0o755)
        shutil.rmtree(store_dir, ignore_errors=True)
