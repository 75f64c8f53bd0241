"""``uses:``: a step that runs another workflow (nested run on the same agents)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")


def test_uses_runs_the_callee_with_its_inputs_and_returns_its_outputs(tmp_path: Path) -> None:
    events = tmp_path / "ev.jsonl"
    p = subprocess.run(
        [
            RUNNER,
            "run",
            str(ROOT / "tests/fixtures/uses/main.yaml"),
            "--store",
            "memory://",
            "--output",
            "json",
            "--events",
            str(events),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["outputs"] == {"team": {"shout": "HELLO THERE AGAIN", "words": 3}, "words": 3}
    assert out["steps"]["team"]["status"] == "completed"
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    inner = {(e["type"], e.get("step_id")) for e in lines}
    assert ("step_completed", "team/up") in inner and ("step_completed", "team/count") in inner
    assert all(e["run_id"] == out["run_id"] for e in lines)


def _run_json(*args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    p = subprocess.run([RUNNER, *args], capture_output=True, text=True, timeout=90, cwd=ROOT)
    try:
        return p, json.loads(p.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON on stdout (exit {p.returncode}): {p.stdout!r} {p.stderr}") from None


def test_inner_steps_are_named_under_the_calling_step_in_every_face(tmp_path: Path) -> None:
    """uses:nested-ids — `team/up` in events, --output json, JUnit, runs show (text and JSON), the live view."""
    store = f"sqlite:///{tmp_path}/s.db"
    events, junit = tmp_path / "ev.jsonl", tmp_path / "j.xml"
    p, out = _run_json(
        "run", str(ROOT / "tests/fixtures/uses/main.yaml"), "--store", store, "--output", "json",
        "--events", str(events), "--junit", str(junit),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    # --output json: the nested run's steps follow the step that ran them, with what they did.
    assert list(out["steps"]) == ["first", "team", "team/up", "team/count", "after"]
    up = out["steps"]["team/up"]
    assert up["status"] == "completed" and up["result"] == "HELLO THERE AGAIN" and up["agent_id"] == "text"
    assert up["attempts"] == 1 and up["duration_ms"] > 0
    assert out["steps"]["team/count"]["result"]["words"] == 3
    # --events: every inner event under its nested id, none with the old dotted name.
    ids = {json.loads(x).get("step_id") for x in events.read_text().splitlines()}
    assert {"team/up", "team/count"} <= ids and not any("." in (i or "") for i in ids)
    # JUnit: one case per inner step.
    import xml.etree.ElementTree as ET

    cases = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert cases == ["first", "team", "team/up", "team/count", "after"]
    # The live view (stderr): inner steps as lines of their own.
    assert "ok    team/up" in p.stderr and "start team/count on text" in p.stderr
    # The store's history.
    shown = subprocess.run(
        [RUNNER, "runs", "show", out["run_id"], "--store", store], capture_output=True, text=True, cwd=ROOT
    )
    rows = [line.split() for line in shown.stdout.splitlines()]
    row = next(r for r in rows if r and r[0] == "team/up")
    assert row[1:4] == ["completed", "1", "text"] and float(row[4]) > 0, shown.stdout
    _, data = _run_json("runs", "show", out["run_id"], "--store", store, "--output", "json")
    assert list(data["steps"]) == ["first", "team", "team/up", "team/count", "after"]
    stored = data["steps"]["team/count"]
    assert stored["status"] == "completed" and stored["attempts"] == 1 and stored["agent_id"] == "text"
    assert stored["duration_ms"] == out["steps"]["team/count"]["duration_ms"]
    assert ("step_completed", "team/up") in {(h["type"], h.get("step_id")) for h in data["history"]}


def test_uses_in_for_each_runs_one_nested_run_per_item(tmp_path: Path) -> None:
    """uses:for-each — `with:` rendered per item; the result is the list of the items' outputs; `teams[1]/up`."""
    events = tmp_path / "ev.jsonl"
    p, out = _run_json(
        "run", str(ROOT / "tests/fixtures/uses/fan.yaml"), "--store", "memory://", "--output", "json",
        "--events", str(events), "-q",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert out["outputs"]["teams"] == [
        {"shout": "HELLO WORLD NO0", "words": 3},
        {"shout": "A B C NO1", "words": 4},
    ]
    assert out["outputs"]["joined"] == "HELLO WORLD NO0 | A B C NO1"
    assert list(out["steps"]) == ["teams", "teams[0]/up", "teams[0]/count", "teams[1]/up", "teams[1]/count", "joined"]
    assert out["steps"]["teams[1]/up"]["result"] == "A B C NO1"
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    started = sorted(e["index"] for e in lines if e["type"] == "item_started" and e["step_id"] == "teams")
    assert started == [0, 1]  # where each item's nested run begins in the log
    done = {e["step_id"] for e in lines if e["type"] == "step_completed"}
    assert {"teams[0]/up", "teams[1]/up", "teams[0]/count", "teams[1]/count"} <= done


def test_a_failed_inner_step_is_named_and_reported_per_case(tmp_path: Path) -> None:
    """uses:nested-ids — the failure names `team/bad`; JUnit fails that case, tolerates and skips the others."""
    agent = ROOT / "examples/agents/text_agent.py"
    (tmp_path / "callee.yaml").write_text(
        """name: callee
steps:
  - step_id: ok
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {text: fine}
  - step_id: meh
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {text: {not: a string}}
    continue_on_error: true
  - step_id: bad
    depends_on: [ok]
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {text: [1, 2]}
  - step_id: never
    depends_on: [bad]
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {text: unreachable}
""",
        encoding="utf-8",
    )
    wf = tmp_path / "caller.yaml"
    wf.write_text(
        f"""name: caller
agents:
  - {{id: text, transport: stdio, command: python, args: ["{agent}"]}}
steps:
  - step_id: team
    uses: ./callee.yaml
""",
        encoding="utf-8",
    )
    junit = tmp_path / "j.xml"
    p, out = _run_json("run", str(wf), "--store", "memory://", "--output", "json", "--junit", str(junit))
    assert p.returncode == 1, p.stderr
    assert "step(s) failed: team/bad" in out["steps"]["team"]["error"]
    assert "step(s) failed: team/bad" in p.stderr  # the live view's failure line
    status = {k: v["status"] for k, v in out["steps"].items()}
    assert status == {
        "team": "failed", "team/ok": "completed", "team/meh": "failed", "team/bad": "failed", "team/never": "skipped",
    }  # fmt: skip
    import xml.etree.ElementTree as ET

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["team/bad"].find("failure") is not None
    assert cases["team/meh"].find("failure") is None  # continue_on_error inside the callee: green
    skipped = cases["team/never"].find("skipped")
    assert skipped is not None and "team/bad" in (skipped.get("message") or "")
    assert cases["team/ok"].find("failure") is None and cases["team"].find("failure") is not None


def test_live_view_counts_the_workflows_steps_and_names_running_inner_ones() -> None:
    """uses:nested-ids — the status line is `[n/total]` of the workflow's own steps; inner ones show as running."""
    import io

    from runner.cli.progress import Progress
    from runner.model import events as ev
    from runner.model.events import Event

    out = io.StringIO()
    view = Progress(out, tty=True, total=2, width=200)
    for type_, sid in [
        (ev.STEP_STARTED, "team"),
        (ev.STEP_STARTED, "team/up"),
        (ev.STEP_COMPLETED, "team/up"),
        (ev.STEP_STARTED, "team/lead/plan"),
        (ev.STEP_FAILED, "team/lead/plan"),
    ]:
        view(Event(type=type_, run_id="r", step_id=sid))
    assert (view.done, view.failed) == (0, 0)  # nothing of the workflow's own two steps has ended
    assert view.running == {"team"}
    view(Event(type=ev.STEP_STARTED, run_id="r", step_id="teams[1]/up"))
    assert "team, teams[1]/up" in out.getvalue().rsplit("\r", 1)[-1]
    view(Event(type=ev.STEP_COMPLETED, run_id="r", step_id="team"))
    assert (view.done, view.failed) == (1, 0)
    assert "[1/2 done, 0 failed]" in out.getvalue().rsplit("\r", 1)[-1]
