"""``runner run`` against server-everything, the MCP reference server, over stdio and HTTP.

One run per transport (they cost ~2 s each), shared by the tests of this module: results
and data flow between steps, a step that times out while the others go on, progress on
stderr, the ``--output json`` / ``--junit`` / ``--events`` files, and secret masking.
"""

from __future__ import annotations

import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ISO_UTC_MICROS, assert_no_traceback, assert_run_json, parse_json_stdout, run_cli

WORKFLOWS = Path(__file__).parent / "workflows"
SECRET = "abc123"
STEP_IDS = {"hello", "sum", "echo_sum", "weather", "add_one", "slow", "after_slow", "long_ok", "secret"}


@dataclass
class Run:
    transport: str
    rc: int
    stdout: str
    stderr: str
    data: dict[str, Any]
    events: list[dict[str, Any]]
    junit: Path
    db: Path


def _http_variant(url: str, dest: Path) -> Path:
    """The same workflow with its agent reached over streamable HTTP instead of stdio."""
    wf = yaml.safe_load((WORKFLOWS / "everything.yaml").read_text(encoding="utf-8"))
    stdio = wf["agents"][0]
    wf["agents"] = [
        {
            "id": stdio["id"],
            "role": stdio["role"],
            "capabilities": stdio["capabilities"],
            "transport": "http",
            "url": url,
        }
    ]
    dest.write_text(yaml.safe_dump(wf, sort_keys=False), encoding="utf-8")
    return dest


@pytest.fixture(scope="module", params=["stdio", "http"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, everything_js: Path) -> Run:
    tmp = tmp_path_factory.mktemp(f"everything-{request.param}")
    if request.param == "http":
        wf = _http_variant(request.getfixturevalue("everything_http"), tmp / "everything-http.yaml")
    else:
        wf = WORKFLOWS / "everything.yaml"
    db, events, junit = tmp / "r.db", tmp / "events.jsonl", tmp / "junit.xml"
    rc, out, err = run_cli(
        "run",
        wf,
        "--output",
        "json",
        "--store",
        f"sqlite:///{db}",
        "--events",
        events,
        "--junit",
        junit,
        cwd=tmp,
        env={"RUNNER_SECRET_TOKEN": SECRET},
        timeout=60,
    )
    assert_no_traceback(err)
    data = parse_json_stdout(out, err)
    lines = events.read_text(encoding="utf-8").splitlines() if events.exists() else []
    return Run(request.param, rc, out, err, data, [json.loads(x) for x in lines if x.strip()], junit, db)


def test_exit_code_and_json_shape(run: Run) -> None:
    assert run.rc == 1, f"a failed step means exit 1, got {run.rc}\n{run.stderr}"
    assert_run_json(run.data, status="failed", step_ids=STEP_IDS)


def test_echo_and_text_data_flow(run: Run) -> None:
    steps = run.data["steps"]
    assert steps["hello"]["result"] == "Echo: hello world"
    assert steps["hello"]["agent_id"] == "everything"
    assert steps["sum"]["result"] == "The sum of 2 and 3 is 5."
    # get-sum has no structuredContent: its text is the result, and it feeds the next step
    assert steps["echo_sum"]["result"] == "Echo: The sum of 2 and 3 is 5."
    assert run.data["outputs"]["greeting"] == "Echo: hello world"
    assert run.data["outputs"]["sum_text"] == "Echo: The sum of 2 and 3 is 5."


def test_structured_content_keeps_native_types(run: Run) -> None:
    weather = run.data["steps"]["weather"]["result"]
    assert isinstance(weather, dict), f"structuredContent must be the result: {weather!r}"
    assert set(weather) == {"temperature", "conditions", "humidity"}
    t = weather["temperature"]
    assert isinstance(t, (int, float)) and not isinstance(t, bool)
    # a lone {{ }} passed the number itself: get-sum validates `a` as a number
    assert run.data["steps"]["add_one"]["status"] == "completed", run.data["steps"]["add_one"]
    assert run.data["steps"]["add_one"]["result"] == f"The sum of {t:g} and 1 is {t + 1:g}."
    assert run.data["outputs"]["temperature"] == t


def test_step_timeout_fails_that_step_only(run: Run) -> None:
    steps = run.data["steps"]
    slow = steps["slow"]
    assert slow["status"] == "failed"
    assert "timed out" in slow["error"], slow["error"]
    assert slow["attempts"] == 1
    assert 900 <= slow["duration_ms"] < 4000, f"1 s timeout on a 5 s call, took {slow['duration_ms']} ms"
    assert steps["after_slow"]["status"] == "skipped", steps["after_slow"]
    assert steps["after_slow"]["result"] is None
    # independent branches went on, and their results are reported although the run failed
    for sid in STEP_IDS - {"slow", "after_slow"}:
        assert steps[sid]["status"] == "completed", (sid, steps[sid])
        assert steps[sid]["result"] is not None, sid
    assert re.search(r"slow.*timed out", run.stderr), run.stderr


def test_progress_of_a_long_operation_on_stderr(run: Run) -> None:
    long_ok = run.data["steps"]["long_ok"]
    assert long_ok["status"] == "completed"
    assert "completed" in long_ok["result"].lower(), long_ok
    progress = [ln for ln in run.stderr.splitlines() if "long_ok" in ln and "progress" in ln]
    assert progress, f"no progress line for long_ok on stderr:\n{run.stderr}"


def test_junit_one_testcase_per_step(run: Run) -> None:
    root = ET.parse(run.junit).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == STEP_IDS
    failed = {name for name, c in cases.items() if c.find("failure") is not None or c.find("error") is not None}
    assert failed == {"slow"}
    failure = cases["slow"].find("failure")
    assert failure is not None and "timed out" in (failure.get("message") or "") + (failure.text or "")
    assert cases["after_slow"].find("skipped") is not None


def test_events_file(run: Run) -> None:
    ev = run.events
    assert ev, "the events file is empty"
    run_id = run.data["run_id"]
    for e in ev:
        assert {"ts", "run_id", "type"} <= set(e), e
        assert re.match(ISO_UTC_MICROS, e["ts"]) or e["ts"].endswith(("Z", "+00:00")), e["ts"]
        assert e["run_id"] == run_id
    types = [e["type"] for e in ev]
    assert types[0] == "run_started"
    assert types[-1] == "run_failed"
    for t in ("step_started", "step_completed", "step_failed", "step_skipped"):
        assert t in types, f"no {t} event: {sorted(set(types))}"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in ev:
        by_type.setdefault(e["type"], []).append(e)
    started = {e["step_id"]: e for e in by_type["step_started"]}
    assert set(started) == STEP_IDS - {"after_slow"}
    for e in by_type["step_started"] + by_type["step_completed"]:
        assert e["step_id"] in STEP_IDS
        assert e["attempt"] == 1, e
        assert e["agent_id"] == "everything", e
    failed = by_type["step_failed"]
    assert [e["step_id"] for e in failed] == ["slow"]
    assert "timed out" in failed[0]["error"]
    assert {e["step_id"] for e in by_type["step_completed"]} == STEP_IDS - {"slow", "after_slow"}
    assert [e["step_id"] for e in by_type["step_skipped"]] == ["after_slow"]


def test_secret_is_masked_everywhere(run: Run) -> None:
    """SPEC §8: masked in all output, events, JUnit and stored results, even when echoed back."""
    assert run.data["steps"]["secret"]["result"] == "Echo: token=***"
    assert run.data["outputs"]["leaked"] == "Echo: token=***"
    assert SECRET not in run.stdout
    assert SECRET not in run.stderr
    ev_text = json.dumps(run.events)
    assert "token=***" in ev_text and SECRET not in ev_text
    junit = run.junit.read_text(encoding="utf-8")
    assert "***" in junit and SECRET not in junit
    for f in run.db.parent.glob(run.db.name + "*"):  # the database and its -wal / -journal files
        assert SECRET.encode() not in f.read_bytes(), f"secret stored in {f.name}"
    with sqlite3.connect(run.db) as con:  # and the store really holds the run
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        assert tables, "the SQLite store is empty"


def test_store_has_the_run(run: Run) -> None:
    """`runner runs show ID --output json` reads back what the run stored (masked)."""
    rc, out, err = run_cli(
        "runs", "show", run.data["run_id"], "--output", "json", "--store", f"sqlite:///{run.db}", cwd=run.db.parent
    )
    assert_no_traceback(err)
    assert rc == 0, err
    shown = parse_json_stdout(out, err)
    assert shown["run_id"] == run.data["run_id"]
    assert shown["status"] == "failed"
    assert shown["steps"]["hello"]["result"] == "Echo: hello world"
    assert shown["steps"]["slow"]["status"] == "failed"
    assert SECRET not in out
