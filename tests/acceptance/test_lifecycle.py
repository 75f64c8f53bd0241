"""A run's lifecycle lives in the store (SPEC §4, §6): detached runs, pull steps, cancel, fencing.

Black-box: the `runner` console script in subprocesses, one executing a run while others act
on it through the store (`runner steps complete|fail`, `runner cancel`, `runner resume`),
on SQLite files and on a fresh PostgreSQL database per test. Real agents over stdio: the
counter agent (echo, add, slow) and the ledger agent, which writes every call it receives,
with its idempotency key, to a file, so calls are counted independently of the store.

Every wait is bounded; every background process runs in its own session and is killed with
its whole process group (the agents it started included) when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RUNNER, assert_no_traceback, assert_run_json, parse_json_stdout, run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lifecycle"
PULL = FIXTURES / "pull.yaml"
PULL_TIMEOUT = FIXTURES / "pull_timeout.yaml"
CANCELLABLE = FIXTURES / "cancellable.yaml"
QUICK = FIXTURES / "quick.yaml"
LEDGERED = FIXTURES / "ledgered.yaml"

REVIEW = {"verdict": "approved", "score": 9}
LEASE_TTL = 1.5  # seconds (RUNNER_LEASE_TTL); renewed every TTL/3


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty durable store of this test's own: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/runner.db"
    return str(request.getfixturevalue("pg_url"))


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/runner.db"


class Bg:
    """A `runner` process started in the background (its own session; output to files)."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.proc = proc
        self._out = out
        self._err = err

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stdout(self) -> str:
        return self._out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self._err.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`runner` (pid {self.pid}) still running after {timeout}s; stderr so far:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the whole process group (runner and agents), even if stopped or already exited."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
            pass


_counter = iter(range(1_000_000))


@contextmanager
def background(*args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None) -> Iterator[Bg]:
    """``runner ARGS...`` in its own session, killed (whole group) on exit from the block."""
    n = next(_counter)
    out, err = cwd / f"bg{n}.stdout", cwd / f"bg{n}.stderr"
    full_env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE" and not k.startswith("RUNNER_SECRET_")}
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(
            [str(RUNNER), *map(str, args)],
            cwd=str(cwd),
            env=full_env,
            stdout=fo,
            stderr=fe,
            start_new_session=True,
        )
    bg = Bg(proc, out, err)
    try:
        yield bg
    finally:
        bg.kill()


def wait_until(what: str, probe: Callable[[], Any], timeout: float, bg: Bg | None = None, every: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy (returned), or fail saying what never happened.

    With ``bg``, a background runner that exits meanwhile fails the wait at once, with its stderr.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if bg is not None and not bg.alive():
            raise AssertionError(f"{what}: the runner exited ({bg.proc.returncode}) first; stderr:\n{bg.stderr()}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s" + (f"; stderr:\n{bg.stderr()}" if bg else ""))
        time.sleep(every)


def cli(*args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``run_cli`` that also checks no traceback leaked, whatever the exit code."""
    rc, out, err = run_cli(*args, cwd=cwd, env=env, timeout=60)
    assert_no_traceback(err)
    return rc, out, err


def cli_json(*args: str | os.PathLike[str], cwd: Path) -> Any:
    rc, out, err = cli(*args, "--output", "json", cwd=cwd)
    assert rc == 0, f"runner {' '.join(map(str, args))} exited {rc}:\n{err}"
    return parse_json_stdout(out, err)


def waiting(store: str, cwd: Path, *filters: str) -> list[dict[str, Any]]:
    """``runner steps list --output json`` (with ``--agent A`` / ``--run ID`` filters)."""
    rows = cli_json("steps", "list", *filters, "--store", store, cwd=cwd)
    assert isinstance(rows, list), rows
    return rows


def runs(store: str, cwd: Path) -> list[dict[str, Any]]:
    rows = cli_json("runs", "list", "--store", store, cwd=cwd)
    assert isinstance(rows, list), rows
    return rows


def show(store: str, cwd: Path, run_id: str) -> dict[str, Any]:
    data = cli_json("runs", "show", run_id, "--store", store, cwd=cwd)
    assert isinstance(data, dict), data
    return data


def only_run(store: str, cwd: Path) -> dict[str, Any]:
    rows = runs(store, cwd)
    assert len(rows) == 1, rows
    return rows[0]


def waiting_step(store: str, cwd: Path, step_id: str, bg: Bg, timeout: float = 20) -> dict[str, Any]:
    """Wait until pull step ``step_id`` is waiting for its agent; return its `steps list` entry."""

    def probe() -> dict[str, Any] | None:
        return next((r for r in waiting(store, cwd) if r["step_id"] == step_id), None)

    return wait_until(f"pull step {step_id!r} waiting in `runner steps list`", probe, timeout, bg)


def ledger(path: Path) -> list[dict[str, Any]]:
    """The ledger agent's calls so far (a line being written is not a call yet)."""
    if not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            calls.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return calls


def keys_of(path: Path, key: str) -> list[str | None]:
    return [c["idempotency_key"] for c in ledger(path) if c["key"] == key]


def events_of(history: list[dict[str, Any]], type_: str, step_id: str) -> list[dict[str, Any]]:
    return [h for h in history if h.get("type") == type_ and h.get("step_id") == step_id]


def assert_iso_in_future(value: Any) -> None:
    assert isinstance(value, str), f"deadline {value!r} is not an ISO 8601 string"
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    assert moment > datetime.now(timezone.utc), f"deadline {value} is already past"


# -- 1. runner run --detach, then runner resume ----------------------------------------------------


def test_detach_stores_a_queued_run_without_contacting_agents_and_resume_executes_it(
    store: str, tmp_path: Path
) -> None:
    book = tmp_path / "ledger.jsonl"
    rc, out, err = cli(
        "run", LEDGERED, "--detach", "-i", f"ledger={book}", "-i", "sleep=0", "--output", "json",
        "--store", store, cwd=tmp_path,
    )  # fmt: skip
    assert rc == 0, err
    detached = parse_json_stdout(out, err)
    assert isinstance(detached, dict) and detached.get("status") == "queued", detached
    run_id = detached["run_id"]
    assert isinstance(run_id, str) and run_id

    time.sleep(0.5)  # an agent started by mistake would have recorded a call by now
    assert ledger(book) == [], "--detach contacted an agent"
    [listed] = runs(store, tmp_path)
    assert listed["run_id"] == run_id and listed["status"] == "queued", listed
    queued = show(store, tmp_path, run_id)
    assert queued["status"] == "queued"
    assert all(s["status"] == "pending" for s in queued["steps"].values()), queued["steps"]

    rc, out, err = cli("resume", run_id, "--output", "json", "--store", store, cwd=tmp_path)
    assert rc == 0, err
    done = parse_json_stdout(out, err)
    assert_run_json(done, status="completed", step_ids={"long", "after"})
    assert done["run_id"] == run_id
    assert done["outputs"] == {"total": 14}
    assert [c["key"] for c in ledger(book)] == ["long", "after"]  # executed once, by resume
    assert show(store, tmp_path, run_id)["status"] == "completed"
    assert only_run(store, tmp_path)["status"] == "completed"


def test_detach_text_prints_the_id_alone_and_cancel_ends_the_queued_run_at_once(store: str, tmp_path: Path) -> None:
    book = tmp_path / "ledger.jsonl"
    rc, out, err = cli("run", LEDGERED, "--detach", "-i", f"ledger={book}", "--store", store, cwd=tmp_path)
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].strip() and " " not in lines[0].strip(), f"stdout is not one id:\n{out!r}"
    run_id = lines[0].strip()
    [listed] = runs(store, tmp_path)
    assert listed["run_id"] == run_id and listed["status"] == "queued", listed

    rc, out, err = cli("cancel", run_id, "--store", store, cwd=tmp_path)
    assert rc == 0, err
    assert show(store, tmp_path, run_id)["status"] == "cancelled"  # at once: nobody executes it
    assert only_run(store, tmp_path)["status"] == "cancelled"
    rc, text, err = cli("runs", "show", run_id, "--store", store, cwd=tmp_path)
    assert rc == 0 and "cancelled" in text, text + err
    assert ledger(book) == [], "cancelling a queued run started an agent"


def test_detach_refuses_an_invalid_workflow_and_stores_nothing(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    wf = tmp_path / "bad.yaml"
    text = QUICK.read_text(encoding="utf-8").replace("cwd: ../../..", f"cwd: {FIXTURES.parent.parent.parent}")
    wf.write_text(text.replace("depends_on: [sum]", "depends_on: [no_such_step]"), encoding="utf-8")
    for output in ("text", "json"):
        rc, out, err = cli("run", wf, "--detach", "--output", output, "--store", store, cwd=tmp_path)
        assert rc == 2, f"exit {rc}\n{out}\n{err}"
        assert "no_such_step" in out + err, out + err
    assert runs(store, tmp_path) == []


# -- 2. pull steps ---------------------------------------------------------------------------------


def test_pull_step_completed_from_another_process_resumes_the_waiting_run(store: str, tmp_path: Path) -> None:
    with background("run", PULL, "--output", "json", "-q", "--store", store, cwd=tmp_path) as run:
        review = waiting_step(store, tmp_path, "review", run)
        run_id = review["run_id"]
        assert review["agent_id"] == "reviewer"
        assert review["attempt"] == 1
        assert review["arguments"] == {"doc": "draft-1", "pages": 3}  # rendered, native types kept
        assert review["index"] is None
        assert review["deadline"] is None  # no timeout on `review`
        assert [r["step_id"] for r in waiting(store, tmp_path)] == ["review"]
        assert [r["step_id"] for r in waiting(store, tmp_path, "--agent", "reviewer")] == ["review"]
        assert waiting(store, tmp_path, "--agent", "approver") == []
        assert [r["step_id"] for r in waiting(store, tmp_path, "--run", run_id)] == ["review"]
        [listed] = runs(store, tmp_path)
        assert listed["run_id"] == run_id and listed["status"] == "running", listed

        rc, _out, err = cli(
            "steps", "complete", run_id, "review", "--agent", "reviewer", "--result", json.dumps(REVIEW),
            "--store", store, cwd=tmp_path,
        )  # fmt: skip
        assert rc == 0, err
        reported = time.monotonic()
        sign_off = waiting_step(store, tmp_path, "sign_off", run, timeout=10)
        assert time.monotonic() - reported < 5, "the run took more than 5 s to see the report"
        # the reported result flows into the next step's rendered arguments
        assert sign_off["arguments"] == {"verdict": "approved", "score": 9}
        assert sign_off["agent_id"] == "approver" and sign_off["run_id"] == run_id
        assert_iso_in_future(sign_off["deadline"])  # `timeout: 60s`
        assert all(r["step_id"] != "review" for r in waiting(store, tmp_path))

        # The same report again (an agent retrying after a lost reply): acknowledged, not counted.
        rc, out, err = cli(
            "steps", "complete", run_id, "review", "--agent", "reviewer", "--result", json.dumps(REVIEW),
            "--store", store, cwd=tmp_path,
        )  # fmt: skip
        assert rc == 0, err
        assert "already" in (out + err).lower(), out + err

        rc, _out, err = cli(
            "steps", "complete", run_id, "sign_off", "--agent", "approver", "--result", '{"by": "ann"}',
            "--store", store, cwd=tmp_path,
        )  # fmt: skip
        assert rc == 0, err
        rc = run.wait(timeout=15)
        assert_no_traceback(run.stderr())
        assert rc == 0, run.stderr()
        done = parse_json_stdout(run.stdout(), run.stderr())

    assert_run_json(done, status="completed", step_ids={"prepare", "review", "sign_off", "publish"})
    assert done["run_id"] == run_id
    assert done["outputs"] == {"verdict": "approved", "score": 9, "published": "approved by ann"}
    assert done["steps"]["review"]["result"] == REVIEW
    assert done["steps"]["review"]["agent_id"] == "reviewer"
    assert done["steps"]["review"]["attempts"] == 1
    assert done["steps"]["sign_off"]["result"] == {"by": "ann"}

    shown = show(store, tmp_path, run_id)
    assert shown["status"] == "completed"
    assert shown["steps"]["review"]["result"] == REVIEW
    assert len(events_of(shown["history"], "step_completed", "review")) == 1, "the repeated report counted twice"
    assert waiting(store, tmp_path) == []


def test_pull_reports_that_cannot_apply_are_refused_and_a_reported_failure_fails_the_run(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)

    def report(*args: str) -> tuple[int, str]:
        rc, out, err = cli("steps", *args, "--store", store, cwd=tmp_path)
        return rc, out + err

    with background("run", PULL, "--output", "json", "-q", "--store", store, cwd=tmp_path) as run:
        run_id = waiting_step(store, tmp_path, "review", run)["run_id"]
        before = waiting(store, tmp_path)

        rc, msg = report("complete", run_id, "review", "--agent", "approver", "--result", "{}")
        assert rc == 2 and "assigned to agent 'reviewer'" in msg, msg
        rc, msg = report("fail", run_id, "review", "--agent", "approver", "--error", "not mine")
        assert rc == 2 and "assigned to agent 'reviewer'" in msg, msg
        rc, msg = report("complete", "no-such-run", "review", "--agent", "reviewer", "--result", "{}")
        assert rc == 2 and ("no-such-run" in msg or "no run" in msg.lower()), msg
        rc, msg = report("complete", run_id, "ghost", "--agent", "reviewer", "--result", "{}")
        assert rc == 2 and "ghost" in msg, msg
        rc, msg = report("complete", run_id, "prepare", "--agent", "counter", "--result", "{}")  # a tool step
        assert rc == 2 and "prepare" in msg, msg
        rc, msg = report("complete", run_id, "sign_off", "--agent", "approver", "--result", "{}")  # not ready yet
        assert rc == 2 and "sign_off" in msg, msg
        rc, msg = report("complete", run_id, "review", "--agent", "reviewer", "--result", "{not json")
        assert rc == 2 and "JSON" in msg, msg

        # Nothing changed: still waiting, same assignment, no outcome recorded.
        assert waiting(store, tmp_path) == before
        shown = show(store, tmp_path, run_id)
        assert shown["status"] == "running"
        assert shown["steps"]["review"]["status"] not in ("completed", "failed"), shown["steps"]["review"]
        assert shown["steps"].get("sign_off", {"status": "pending"})["status"] == "pending", shown["steps"]
        outcomes = [h for h in shown["history"] if h.get("type") in ("step_completed", "step_failed")]
        assert [h.get("step_id") for h in outcomes] == ["prepare"], shown["history"]

        rc, msg = report("complete", run_id, "review", "--agent", "reviewer", "--result", json.dumps(REVIEW))
        assert rc == 0, msg
        waiting_step(store, tmp_path, "sign_off", run, timeout=10)
        # A different report on a step already completed by the first one is not a repeat: refused.
        rc, msg = report("complete", run_id, "review", "--agent", "reviewer", "--result", '{"verdict": "rejected"}')
        assert rc == 2 and "review" in msg, msg

        rc, msg = report("fail", run_id, "sign_off", "--agent", "approver", "--error", "rejected by the approver")
        assert rc == 0, msg
        rc = run.wait(timeout=15)
        assert_no_traceback(run.stderr())
        assert rc == 1, run.stderr()
        done = parse_json_stdout(run.stdout(), run.stderr())

    assert_run_json(done, status="failed", step_ids={"prepare", "review", "sign_off", "publish"})
    assert done["steps"]["review"]["result"] == REVIEW  # the first report, not the refused one
    assert done["steps"]["sign_off"]["status"] == "failed"
    assert "rejected by the approver" in done["steps"]["sign_off"]["error"]
    assert done["steps"]["publish"]["status"] == "skipped"

    # After the run finished nothing is waiting, and a report changes nothing.
    rc, msg = report("complete", run_id, "sign_off", "--agent", "approver", "--result", "{}")
    assert rc == 2 and "sign_off" in msg, msg
    shown = show(store, tmp_path, run_id)
    assert shown["status"] == "failed"
    assert shown["steps"]["sign_off"]["status"] == "failed"
    assert len(events_of(shown["history"], "step_completed", "review")) == 1
    assert len(events_of(shown["history"], "step_failed", "sign_off")) == 1
    assert not events_of(shown["history"], "step_completed", "sign_off")


def test_unreported_pull_step_fails_on_its_timeout_and_dependents_are_skipped(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    started = time.monotonic()
    rc, out, err = run_cli("run", PULL_TIMEOUT, "--output", "json", "--store", store, cwd=tmp_path, timeout=30)
    assert_no_traceback(err)
    assert rc == 1, err
    assert time.monotonic() - started < 20
    done = parse_json_stdout(out, err)
    assert_run_json(done, status="failed", step_ids={"review", "publish"})
    assert done["steps"]["review"]["status"] == "failed"
    assert "not reported within" in done["steps"]["review"]["error"], done["steps"]["review"]
    assert done["steps"]["publish"]["status"] == "skipped"
    assert waiting(store, tmp_path) == []


def test_pull_workflow_on_the_memory_store_is_refused_before_it_starts(tmp_path: Path) -> None:
    try:
        rc, out, err = run_cli("run", PULL, "--store", "memory://", cwd=tmp_path, timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("`runner run` of a pull workflow on memory:// hung instead of refusing") from None
    assert_no_traceback(err)
    assert rc == 2, f"exit {rc}\n{out}\n{err}"
    assert "pull" in err.lower(), err  # says why: pull steps need a store other processes share


# -- 3. runner cancel ------------------------------------------------------------------------------


def test_cancel_stops_the_in_flight_call_runs_finally_and_exits_4(store: str, tmp_path: Path) -> None:
    with background("run", CANCELLABLE, "--output", "json", "-q", "--store", store, cwd=tmp_path) as run:

        def long_in_flight() -> str | None:
            rows = runs(store, tmp_path)
            if not rows:
                return None
            steps = show(store, tmp_path, rows[0]["run_id"])["steps"]
            return rows[0]["run_id"] if steps.get("long", {}).get("status") == "in_progress" else None

        run_id = wait_until("step `long` (a 30 s call) in flight", long_in_flight, 20, run)
        time.sleep(0.3)  # the tools/call is on the wire
        rc, _out, err = cli("cancel", run_id, "--store", store, cwd=tmp_path)
        assert rc == 0, err
        asked = time.monotonic()
        rc = run.wait(timeout=20)
        took = time.monotonic() - asked
        assert_no_traceback(run.stderr())
        assert rc == 4, run.stderr()
        assert took < 6, f"the run took {took:.1f}s to stop after `runner cancel` (contract: ~1-2 s)"
        done = parse_json_stdout(run.stdout(), run.stderr())

    assert_run_json(done, status="cancelled", step_ids={"warmup", "long", "after", "cleanup"})
    assert done["run_id"] == run_id
    assert done["steps"]["warmup"]["status"] == "completed"
    assert done["steps"]["long"]["status"] == "cancelled", done["steps"]["long"]
    assert done["steps"]["after"]["status"] in ("cancelled", "skipped"), done["steps"]["after"]
    assert done["steps"]["cleanup"]["status"] == "completed", done["steps"]["cleanup"]
    assert done["steps"]["cleanup"]["result"] == "cleanup after cancelled"
    shown = show(store, tmp_path, run_id)
    assert shown["status"] == "cancelled"
    assert shown["steps"]["cleanup"]["status"] == "completed"


def test_cancel_refuses_an_unknown_run_and_a_finished_one(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    rc, out, err = cli("cancel", "no-such-run", "--store", store, cwd=tmp_path)
    assert rc == 2, out + err
    assert "no-such-run" in err or "no run" in err.lower(), err

    rc, out, err = cli("run", QUICK, "--output", "json", "--store", store, cwd=tmp_path)
    assert rc == 0, err
    finished = parse_json_stdout(out, err)
    assert finished["outputs"] == {"sum": 5, "said": "sum is 5"}
    rc, out, err = cli("cancel", finished["run_id"], "--store", store, cwd=tmp_path)
    assert rc == 2, out + err
    assert re.search(r"already (finished|completed|ended)", err), err
    assert show(store, tmp_path, finished["run_id"])["status"] == "completed"


# -- 4. fencing ------------------------------------------------------------------------------------


def test_a_paused_runner_that_lost_its_lease_writes_nothing_more_and_exits_2(store: str, tmp_path: Path) -> None:
    book = tmp_path / "ledger.jsonl"
    env = {"RUNNER_LEASE_TTL": str(LEASE_TTL)}
    with background(
        "run", LEDGERED, "-i", f"ledger={book}", "-i", "sleep=4", "--output", "json", "-q", "--store", store,
        cwd=tmp_path, env=env,
    ) as a:  # fmt: skip
        wait_until("runner A's `long` call in flight", lambda: keys_of(book, "long"), 20, a, every=0.05)
        run_id = only_run(store, tmp_path)["run_id"]
        os.kill(a.pid, signal.SIGSTOP)  # A only: its agent finishes the call, the reply waits in the pipe
        try:
            time.sleep(LEASE_TTL + 1.0)  # A renews nothing while stopped: its lease expires
            rc, out, err = cli("resume", run_id, "--output", "json", "--store", store, cwd=tmp_path, env=env)
            assert rc == 0, err
            b = parse_json_stdout(out, err)
            assert_run_json(b, status="completed", step_ids={"long", "after"})
            assert b["outputs"] == {"total": 14}
            after_b = show(store, tmp_path, run_id)
            assert after_b["status"] == "completed"
        finally:
            os.kill(a.pid, signal.SIGCONT)
        continued = time.monotonic()
        rc = a.wait(timeout=15)
        assert time.monotonic() - continued < 10
        assert_no_traceback(a.stderr())
        assert rc == 2, f"runner A exited {rc}; stderr:\n{a.stderr()}"
        assert "lease" in a.stderr().lower(), a.stderr()

    assert show(store, tmp_path, run_id) == after_b, "runner A wrote to the run after losing its lease"
    assert only_run(store, tmp_path)["status"] == "completed"
    assert [c["key"] for c in ledger(book)].count("after") == 1, "runner A went on calling tools"
    assert keys_of(book, "long") == [f"{run_id}:long:1"] * 2  # B re-sent A's in-flight call with its key


# -- 5. idempotency across a crash -----------------------------------------------------------------


def test_call_in_flight_at_a_crash_is_resent_with_the_same_key_as_the_same_attempt(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    book = tmp_path / "ledger.jsonl"
    with background(
        "run", LEDGERED, "-i", f"ledger={book}", "-i", "sleep=30", "-q", "--store", store, cwd=tmp_path
    ) as a:
        wait_until("the `long` call in flight", lambda: keys_of(book, "long"), 20, a, every=0.05)
        time.sleep(0.2)
        a.kill()  # runner and agent at once: a hard crash
        assert a.proc.returncode == -signal.SIGKILL
    run_id = only_run(store, tmp_path)["run_id"]
    assert show(store, tmp_path, run_id)["steps"]["long"]["status"] == "in_progress"

    rc, out, err = cli("resume", run_id, "--output", "json", "--store", store, cwd=tmp_path)
    assert rc == 0, err
    done = parse_json_stdout(out, err)
    assert_run_json(done, status="completed", step_ids={"long", "after"})
    assert done["outputs"] == {"total": 14}
    assert done["steps"]["long"]["attempts"] == 1
    assert keys_of(book, "long") == [f"{run_id}:long:1", f"{run_id}:long:1"]
    assert keys_of(book, "after") == [f"{run_id}:after:1"]
    assert show(store, tmp_path, run_id)["steps"]["long"]["attempts"] == 1
