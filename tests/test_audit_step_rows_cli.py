"""Audit of the lagging step rows (runner/store/sql_steps.py) through the real CLI, in processes.

The executing process writes step rows in batches; every reader folds the log's tail onto
them. These tests look at a run from other processes (`runner runs show`, `runner steps
list|complete|fail`, `runner cancel`, `runner resume`, `runner retry`, workers) while its
rows really lag, and hold every answer to the oracle of the design: the projection of
the event log (``replay``), exactly, field by field.

To make the lag certain rather than a matter of timing, most runs execute in a `runner`
whose batch period is an hour (``LAGGING``): rows are then written only where the design
forces them (run events, ``step_assigned``), which is a legal schedule of the design, so
every answer must still be exact. Each test also checks that the rows did lag at the
moment it looked (``steps_lag`` set), so what it checks is the fold at work.

Every wait is bounded; every background process has its own session and is killed with
its group (agents included) at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from runner.core.projection import replay
from runner.model.nesting import grouped
from runner.store import open_store
from tests.conftest import RUNNER, assert_no_traceback
from tests.store_fixtures import pg_template, pg_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent

# `runner` whose step rows are written only when the design forces it (an hour between batches).
LAGGING_MAIN = (
    "import sys, runner.store.sql_steps as s; s.WRITE_EVERY_S = 3600.0; s.WRITE_EVERY_N = 10**9; "
    "from runner.cli.main import main; sys.argv[0] = 'runner'; sys.exit(main())"
)
LAGGING = [sys.executable, "-c", LAGGING_MAIN]
PLAIN = [str(RUNNER)]
LEASE_TTL = "1.5"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/runner.db"
    return str(request.getfixturevalue("pg_url"))


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE" and not k.startswith("RUNNER_SECRET_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["RUNNER_LEASE_TTL"] = LEASE_TTL
    env.update(extra or {})
    return env


class Bg:
    """A runner process in its own session, output to files."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.proc, self._out, self._err = proc, out, err

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stdout(self) -> str:
        return self._out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self._err.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


_n = iter(range(10**6))


@contextmanager
def background(argv: list[str], *args: str | os.PathLike[str], cwd: Path) -> Iterator[Bg]:
    n = next(_n)
    out, err = cwd / f"bg{n}.stdout", cwd / f"bg{n}.stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(
            [*argv, *map(str, args)], cwd=str(cwd), env=_env(), stdout=fo, stderr=fe, start_new_session=True
        )
    bg = Bg(proc, out, err)
    try:
        yield bg
    finally:
        bg.kill()


def cli(*args: str | os.PathLike[str], cwd: Path, argv: list[str] = PLAIN, timeout: float = 90) -> tuple[int, str, str]:
    proc = subprocess.run(
        [*argv, *map(str, args)], cwd=str(cwd), env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert_no_traceback(proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def cli_json(*args: str | os.PathLike[str], cwd: Path) -> Any:
    rc, out, err = cli(*args, "--output", "json", cwd=cwd)
    assert rc == 0, f"runner {' '.join(map(str, args))} exited {rc}:\n{err}"
    return json.loads(out)


def wait_until(what: str, probe: Callable[[], Any], timeout: float, bg: Bg | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if bg is not None and not bg.alive():
            raise AssertionError(f"{what}: the runner exited ({bg.proc.returncode}) first:\n{bg.stderr()}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s" + (f"\n{bg.stderr()}" if bg else ""))
        time.sleep(0.1)


def ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def calls(path: Path) -> dict[str, int]:
    got: dict[str, int] = {}
    for c in ledger(path):
        got[c["key"]] = got.get(c["key"], 0) + 1
    return got


def in_ledger(path: Path, key: str) -> bool:
    return any(c["key"] == key for c in ledger(path))


def steps_lag(url: str, run_id: str) -> Any:
    """``runs.steps_lag`` as stored, read without the runner (None: the rows hold every step event)."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return conn.execute("SELECT steps_lag FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT steps_lag FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0]


def logged_steps(url: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The oracle: the run's steps as its event log adds up (``replay``)."""
    store = open_store(url)
    try:
        _runs, steps = replay(store.get_events(run_id))
    finally:
        store.close()
    return {sid: asdict(s) for (rid, sid), s in steps.items() if rid == run_id}


FIELDS = ("status", "attempts", "result", "error", "agent_id")


def assert_show_is_the_log(url: str, cwd: Path, run_id: str) -> dict[str, Any]:
    """`runner runs show --output json` equals the projection of the log, field by field and in order.

    Read while nothing is written (the run waits), so both reads see the same log; the log
    is read again after, and must not have moved.
    """
    before = logged_steps(url, run_id)
    shown = cli_json("runs", "show", run_id, "--store", url, cwd=cwd)
    after = logged_steps(url, run_id)
    assert before == after, "the run wrote while the test looked: not a quiet moment"
    got = {sid: {k: s[k] for k in FIELDS} for sid, s in shown["steps"].items()}
    want = {sid: {k: s[k] for k in FIELDS} for sid, s in after.items()}
    assert got == want
    assert list(shown["steps"]) == grouped(after), "steps out of the order they first appeared"
    return shown


def write_mix(tmp_path: Path) -> Path:
    """A pull step waiting beside a chain: a call, a for_each, a nested `uses:`, a slow call, then the end."""
    (tmp_path / "crew.yaml").write_text(
        """\
name: crew
inputs:
  tag: {type: string}
steps:
  - step_id: a
    tool_to_call: record
    tool_arguments: {key: "{{ inputs.tag }}-a", value: "{{ inputs.tag }}"}
  - step_id: b
    depends_on: [a]
    tool_to_call: record
    tool_arguments: {key: "{{ inputs.tag }}-b", value: "{{ steps.a.result.value }}!"}
outputs:
  said: "{{ steps.b.result.value }}"
"""
    )
    wf = tmp_path / "mix.yaml"
    wf.write_text(
        f"""\
name: audit-mix
inputs:
  ledger: {{type: string}}
agents:
  - id: ledger
    transport: stdio
    command: {sys.executable}
    args: ["tests/agents/ledger_agent.py"]
    cwd: {ROOT}
    env: {{LEDGER_PATH: "{{{{ inputs.ledger }}}}"}}
  - id: reviewer
    transport: pull
steps:
  - step_id: review
    assigned_agent_id: reviewer
    timeout: 90s
    tool_arguments: {{doc: draft}}
  - step_id: first
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: first, value: 1}}
  - step_id: fan
    depends_on: [first]
    for_each: [10, 20, 30]
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: "fan{{{{ index }}}}", value: "{{{{ item }}}}"}}
  - step_id: team
    depends_on: [first]
    uses: ./crew.yaml
    with: {{tag: t}}
  - step_id: slow
    depends_on: [fan, team]
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: slow, sleep_first: 120, value: "{{{{ steps.team.result.said }}}}"}}
  - step_id: last
    depends_on: [slow, review]
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: last, value: "{{{{ steps.review.result.verdict }}}}"}}
outputs:
  verdict: "{{{{ steps.last.result.value }}}}"
  fan: "{{{{ steps.fan.result | map(attribute='value') | list }}}}"
"""
    )
    return wf


def only_run_id(url: str, cwd: Path) -> str:
    rows = cli_json("runs", "list", "--store", url, cwd=cwd)
    assert len(rows) == 1, rows
    return str(rows[0]["run_id"])


def waiting(url: str, cwd: Path) -> list[dict[str, Any]]:
    rows = cli_json("steps", "list", "--store", url, cwd=cwd)
    assert isinstance(rows, list)
    return rows


# -- the tests --------------------------------------------------------------------------------


def test_another_process_reads_a_lagging_run_exactly_reports_and_resumes_it(store: str, tmp_path: Path) -> None:
    """runs show / steps list / steps complete while rows lag; SIGKILL; resume; final rows exact."""
    wf = write_mix(tmp_path)
    book = tmp_path / "ledger.jsonl"
    with background(LAGGING, "run", wf, "-i", f"ledger={book}", "--store", store, "-q", cwd=tmp_path) as bg:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, bg)
        run_id = only_run_id(store, tmp_path)
        assert steps_lag(store, run_id) is not None, "the rows do not lag: this test would not test the fold"

        shown = assert_show_is_the_log(store, tmp_path, run_id)
        steps = shown["steps"]
        assert shown["status"] == "running"
        assert {k: v["status"] for k, v in steps.items()} == {
            "review": "in_progress",
            "first": "completed",
            "fan": "completed",
            "team": "completed",
            "team/a": "completed",
            "team/b": "completed",
            "slow": "in_progress",
        }
        assert steps["fan"]["result"] == [
            {"key": f"fan{i}", "calls": 1, "value": v} for i, v in enumerate([10, 20, 30])
        ]
        assert steps["slow"]["attempts"] == 1 and steps["review"]["attempts"] == 1

        [w] = waiting(store, tmp_path)
        assert (w["run_id"], w["step_id"], w["agent_id"], w["attempt"]) == (run_id, "review", "reviewer", 1)

        report = ("steps", "complete", run_id, "review", "--agent", "reviewer", "--store", store)
        rc, _, err = cli(*report, "--result", '{"verdict": "ok"}', cwd=tmp_path)
        assert rc == 0, err
        rc, _, err = cli(*report, "--result", '{"verdict": "ok"}', cwd=tmp_path)
        assert rc == 0 and "already reported" in err, err  # acknowledged, not counted twice
        rc, _, err = cli(*report, "--result", '{"verdict": "other"}', cwd=tmp_path)
        assert rc == 2, err  # a different report is refused
        assert waiting(store, tmp_path) == []

        def review_done() -> bool:
            return logged_steps(store, run_id).get("review", {}).get("status") == "completed"

        wait_until("the runner takes the report", review_done, 30, bg)
        time.sleep(0.3)
        shown = assert_show_is_the_log(store, tmp_path, run_id)
        assert shown["steps"]["review"]["result"] == {"verdict": "ok"}
        assert shown["steps"]["review"]["attempts"] == 1
        bg.signal(signal.SIGKILL)  # the runner and its agent, the slow call in flight
        bg.wait(10)

    # Dead executor: the rows stay as it left them; readers still fold.
    shown = assert_show_is_the_log(store, tmp_path, run_id)
    assert shown["steps"]["slow"]["status"] == "in_progress"

    rc, out, err = cli("resume", run_id, "--store", store, "--output", "json", cwd=tmp_path, argv=LAGGING)
    assert rc == 0, err
    done = json.loads(out)
    assert done["status"] == "completed" and done["outputs"]["verdict"] == "ok"
    assert done["outputs"]["fan"] == [10, 20, 30]
    assert calls(book) == {"first": 1, "fan0": 1, "fan1": 1, "fan2": 1, "t-a": 1, "t-b": 1, "slow": 2, "last": 1}
    keys = [c["idempotency_key"] for c in ledger(book) if c["key"] == "slow"]
    assert keys == [f"{run_id}:slow:1"] * 2  # the call in flight at the crash: the same attempt, the same key
    shown = assert_show_is_the_log(store, tmp_path, run_id)
    assert {k: (v["status"], v["attempts"]) for k, v in shown["steps"].items()} == {
        k: ("completed", 1) for k in ("review", "first", "fan", "team", "team/a", "team/b", "slow", "last")
    }
    assert steps_lag(store, run_id) is None  # the end wrote every row


def write_timeout_wf(tmp_path: Path) -> Path:
    """A pull step that times out beside a chain that then waits in a slow call."""
    wf = tmp_path / "late.yaml"
    wf.write_text(
        f"""\
name: audit-late
inputs:
  ledger: {{type: string}}
agents:
  - id: ledger
    transport: stdio
    command: {sys.executable}
    args: ["tests/agents/ledger_agent.py"]
    cwd: {ROOT}
    env: {{LEDGER_PATH: "{{{{ inputs.ledger }}}}"}}
  - id: reviewer
    transport: pull
steps:
  - step_id: review
    assigned_agent_id: reviewer
    timeout: 2s
  - step_id: first
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: first, value: 1}}
  - step_id: slow
    depends_on: [first]
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: slow, sleep_first: 120, value: 2}}
  - step_id: after_review
    depends_on: [review]
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: after_review}}
finally:
  - step_id: cleanup
    assigned_agent_id: ledger
    tool_to_call: record
    tool_arguments: {{key: cleanup, value: "{{{{ run.status }}}}"}}
"""
    )
    return wf


def test_a_timed_out_pull_step_is_not_listed_a_late_report_is_refused_and_cancel_ends_the_run(
    store: str, tmp_path: Path
) -> None:
    wf = write_timeout_wf(tmp_path)
    book = tmp_path / "ledger.jsonl"
    with background(LAGGING, "run", wf, "-i", f"ledger={book}", "--store", store, "-q", cwd=tmp_path) as bg:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, bg)
        run_id = only_run_id(store, tmp_path)

        def review_failed() -> bool:
            return logged_steps(store, run_id).get("review", {}).get("status") == "failed"

        wait_until("the pull step times out", review_failed, 30, bg)
        time.sleep(0.3)
        assert steps_lag(store, run_id) is not None, "the rows do not lag: this test would not test the fold"
        shown = assert_show_is_the_log(store, tmp_path, run_id)
        assert shown["steps"]["review"]["attempts"] == 1 and shown["steps"]["review"]["error"]
        assert shown["steps"]["after_review"]["status"] == "skipped"
        assert waiting(store, tmp_path) == []
        for verb, extra in (("complete", ("--result", "1")), ("fail", ("--error", "late"))):
            rc, _, err = cli("steps", verb, run_id, "review", "--agent", "reviewer", "--store", store, *extra, cwd=tmp_path)
            assert rc == 2 and "review" in err, (verb, rc, err)
        assert assert_show_is_the_log(store, tmp_path, run_id) == shown  # the refused reports changed nothing

        rc, _, err = cli("cancel", run_id, "--store", store, cwd=tmp_path)
        assert rc == 0, err
        assert bg.wait(30) == 4, bg.stderr()
    shown = assert_show_is_the_log(store, tmp_path, run_id)
    assert shown["status"] == "cancelled"
    assert shown["steps"]["slow"]["status"] == "cancelled" and shown["steps"]["cleanup"]["status"] == "completed"
    assert shown["steps"]["cleanup"]["result"]["value"] == "cancelled"
    assert steps_lag(store, run_id) is None


def test_cancel_of_a_dead_runners_run_then_retry_from_a_step(store: str, tmp_path: Path) -> None:
    wf = write_mix(tmp_path)
    book = tmp_path / "ledger.jsonl"
    with background(LAGGING, "run", wf, "-i", f"ledger={book}", "--store", store, "-q", cwd=tmp_path) as bg:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, bg)
        run_id = only_run_id(store, tmp_path)
        bg.signal(signal.SIGKILL)
        bg.wait(10)
    lag = steps_lag(store, run_id)
    assert lag is not None
    time.sleep(float(LEASE_TTL) + 0.5)  # the dead runner's lease runs out
    rc, _, err = cli("cancel", run_id, "--store", store, cwd=tmp_path)
    assert rc == 0, err
    shown = assert_show_is_the_log(store, tmp_path, run_id)
    assert shown["status"] == "cancelled"
    assert shown["steps"]["first"]["status"] == "completed" and shown["steps"]["slow"]["status"] == "in_progress"
    [w] = waiting(store, tmp_path) or [None]  # a cancelled run waits for nothing
    assert w is None

    with background(LAGGING, "retry", run_id, "--from", "fan", "--store", store, "--output", "json",
                    cwd=tmp_path) as bg:
        def review_waits() -> bool:
            return any(r["step_id"] == "review" for r in waiting(store, tmp_path))

        wait_until("the pull step waits again", review_waits, 60, bg)
        wait_until("slow called again", lambda: calls(book).get("slow") == 2, 60, bg)
        time.sleep(0.5)
        assert steps_lag(store, run_id) is not None
        shown = assert_show_is_the_log(store, tmp_path, run_id)
        assert shown["status"] == "running"
        rc, _, err = cli("steps", "complete", run_id, "review", "--agent", "reviewer", "--store", store,
                         "--result", '{"verdict": "late but fine"}', cwd=tmp_path)
        assert rc == 0, err
        assert bg.wait(60) == 0, bg.stderr()
        out = json.loads(bg.stdout())
    assert out["status"] == "completed" and out["outputs"]["verdict"] == "late but fine"
    # fan and what depends on it ran again; first and the nested team kept their results
    assert calls(book) == {"first": 1, "fan0": 2, "fan1": 2, "fan2": 2, "t-a": 1, "t-b": 1, "slow": 2, "last": 1}
    shown = assert_show_is_the_log(store, tmp_path, run_id)
    assert {k: v["status"] for k, v in shown["steps"].items()} == dict.fromkeys(shown["steps"], "completed")
    assert steps_lag(store, run_id) is None


def _holder_pid(url: str, cwd: Path, run_id: str) -> int | None:
    rows = cli_json("runs", "list", "--store", url, cwd=cwd)
    row = next(r for r in rows if r["run_id"] == run_id)
    worker = row.get("worker")
    return int(worker.split(":")[1]) if worker else None


def test_a_paused_workers_run_is_taken_over_exactly_and_the_paused_worker_writes_nothing(
    store: str, tmp_path: Path
) -> None:
    crashy = ROOT / "tests/fixtures/durable/crashy.yaml"
    book = tmp_path / "ledger.jsonl"
    rc, out, err = cli("run", crashy, "-i", f"ledger={book}", "--store", store, "--detach", cwd=tmp_path)
    assert rc == 0, err
    run_id = out.strip()
    worker = ("worker", "--store", store, "--poll-interval", "0.2")
    with background(LAGGING, *worker, cwd=tmp_path) as one, background(LAGGING, *worker, cwd=tmp_path) as two:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, one)
        pid = _holder_pid(store, tmp_path, run_id)
        paused, other = (one, two) if pid == one.proc.pid else (two, one)
        assert pid == paused.proc.pid, (pid, one.proc.pid, two.proc.pid)
        assert steps_lag(store, run_id) is not None
        before = assert_show_is_the_log(store, tmp_path, run_id)
        paused.signal(signal.SIGSTOP)  # the worker and its agent freeze, the slow call in flight

        def done() -> bool:
            return logged_steps(store, run_id).get("last", {}).get("status") == "completed"

        wait_until("the other worker takes the run over and finishes it", done, 60, other)
        time.sleep(0.5)
        after = assert_show_is_the_log(store, tmp_path, run_id)
        assert after["status"] == "completed" and after["outputs"] == {"total": 20}
        assert {k: before["steps"][k]["result"] for k in ("first", "side")} == {
            k: after["steps"][k]["result"] for k in ("first", "side")
        }
        assert calls(book) == {"first": 1, "side": 1, "slow": 2, "last": 1}
        log_before = logged_steps(store, run_id)
        paused.signal(signal.SIGCONT)  # it wakes up: its lease is gone, it must write nothing
        time.sleep(3.0)
        assert logged_steps(store, run_id) == log_before
        assert assert_show_is_the_log(store, tmp_path, run_id) == after
        assert steps_lag(store, run_id) is None


def test_the_mcp_server_reads_and_reports_on_a_lagging_run_exactly(store: str, tmp_path: Path) -> None:
    import anyio
    from mcp import Client

    from tests.serve_support import ok, stdio_params

    wf = write_mix(tmp_path)
    book = tmp_path / "ledger.jsonl"
    with background(LAGGING, "run", wf, "-i", f"ledger={book}", "--store", store, "-q", cwd=tmp_path) as bg:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, bg)
        run_id = only_run_id(store, tmp_path)
        assert steps_lag(store, run_id) is not None

        async def session() -> None:
            async with Client(stdio_params(store, tmp_path)) as c:
                log = logged_steps(store, run_id)
                got = await ok(c, "get_run", {"run_id": run_id})
                assert got["status"] == "running"
                assert {sid: {k: s[k] for k in FIELDS} for sid, s in got["steps"].items()} == {
                    sid: {k: s[k] for k in FIELDS} for sid, s in log.items()
                }
                assert [w["step_id"] for w in got["waiting_for_reports"]] == ["review"]
                listed = await ok(c, "list_assigned_steps", {"agent_id": "reviewer"})
                assert [(s["run_id"], s["step_id"]) for s in listed["steps"]] == [(run_id, "review")]
                args = {"workflow_id": "audit-mix", "step_id": "review", "agent_id": "reviewer",
                        "result": {"verdict": "mcp"}, "run_id": run_id}
                first = await ok(c, "report_step_completion", args)
                again = await ok(c, "report_step_completion", args)
                assert (first["report"], again["report"]) == ("accepted", "duplicate")
                listed = await ok(c, "list_assigned_steps", {"agent_id": "reviewer"})
                assert listed["steps"] == []
                with anyio.fail_after(30):
                    while True:
                        got = await ok(c, "get_run", {"run_id": run_id})
                        if got["steps"]["review"]["status"] == "completed":
                            break
                        await anyio.sleep(0.1)
                assert got["steps"]["review"]["result"] == {"verdict": "mcp"}
                assert got["waiting_for_reports"] == []

        anyio.run(session)
        assert_show_is_the_log(store, tmp_path, run_id)


def test_a_run_cancelled_while_its_runner_was_paused_stays_cancelled(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/runner.db"
    wf = tmp_path / "z.yaml"
    wf.write_text(
        (ROOT / "tests/fixtures/durable/crashy.yaml").read_text()
        .replace("cwd: ../../..", f"cwd: {ROOT}")
        .replace("sleep_first: 60", "sleep_first: 5")
    )
    book = tmp_path / "ledger.jsonl"
    with background(PLAIN, "run", wf, "-i", f"ledger={book}", "--store", store, "-q", cwd=tmp_path) as bg:
        wait_until("the slow call in flight", lambda: in_ledger(book, "slow"), 60, bg)
        run_id = only_run_id(store, tmp_path)
        bg.signal(signal.SIGSTOP)
        time.sleep(float(LEASE_TTL) + 1.0)  # its lease runs out while it is paused
        rc, _, err = cli("cancel", run_id, "--store", store, cwd=tmp_path)
        assert rc == 0 and "cancelled" in err, err
        bg.signal(signal.SIGCONT)
        bg.wait(60)
    shown = cli_json("runs", "show", run_id, "--store", store, cwd=tmp_path)
    assert shown["status"] == "cancelled", shown["status"]
    assert "last" not in calls(book), ledger(book)
