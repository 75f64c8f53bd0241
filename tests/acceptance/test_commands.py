"""The other commands of SPEC §4 as CI uses them: validate, graph, agents check; and exit 4."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import REPO, assert_no_traceback, assert_run_json, parse_json_stdout, run_cli

WORKFLOWS = Path(__file__).parent / "workflows"
INVALID = WORKFLOWS / "invalid"
BROKEN = WORKFLOWS / "broken"


# -- validate -------------------------------------------------------------------------------------


def test_validate_shipped_workflows_and_fixtures(tmp_path: Path) -> None:
    shipped = sorted((REPO / "workflows").glob("*.yaml"))
    assert shipped, "workflows/ holds no workflow"
    rc, out, err = run_cli("validate", "workflows", cwd=REPO)
    assert_no_traceback(err)
    assert rc == 0, err
    # our own runnable fixtures (and the statically valid broken-agent ones) are valid too
    fixtures = sorted(WORKFLOWS.glob("*.yaml")) + sorted(BROKEN.glob("*.yaml"))
    rc, out, err = run_cli("validate", *fixtures, cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 0, err


def test_validate_json_lists_every_problem(tmp_path: Path) -> None:
    rc, out, err = run_cli("validate", INVALID, "--format", "json", cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    problems = parse_json_stdout(out, err)
    assert isinstance(problems, list) and problems
    for p in problems:
        assert {"file", "line", "col", "message", "path", "severity"} <= set(p), p
        assert isinstance(p["line"], int) and p["line"] >= 1, p
        assert isinstance(p["col"], int) and p["col"] >= 1, p
        assert p["path"].startswith("$"), p
        assert p["severity"] == "error", p
    files = {Path(p["file"]).name for p in problems}
    assert files == {f.name for f in INVALID.glob("*.yaml")}, "every invalid file reported, at once"
    key = next(p for p in problems if Path(p["file"]).name == "unknown-key.yaml")
    assert (key["line"], key["col"], key["path"]) == (8, 5, "$.steps[0].tool_argumnets"), key
    cycle = next(p for p in problems if Path(p["file"]).name == "cycle.yaml")
    assert all(s in cycle["message"] for s in ("first", "second", "third")), cycle


def test_validate_github_annotations(tmp_path: Path) -> None:
    rc, out, err = run_cli("validate", INVALID, "--format", "github", cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) >= len(list(INVALID.glob("*.yaml"))), out
    for ln in lines:
        assert ln.startswith("::error file="), ln
        assert re.search(r",line=\d+", ln) and re.search(r",col=\d+", ln), ln


# -- graph --------------------------------------------------------------------------------------


def test_graph_mermaid_and_dot() -> None:
    rc, out, err = run_cli("graph", "workflows/hello.yaml", "--format", "mermaid", cwd=REPO)
    assert_no_traceback(err)
    assert rc == 0, err
    assert re.search(r"^\s*(flowchart|graph)\b", out, re.M), out
    assert len([ln for ln in out.splitlines() if "-->" in ln]) == 3, out  # count, keywords, summarize → report
    for sid in ("count", "keywords", "summarize", "report"):
        assert sid in out
    rc, out, err = run_cli("graph", "workflows/hello.yaml", "--format", "dot", cwd=REPO)
    assert_no_traceback(err)
    assert rc == 0, err
    assert out.lstrip().startswith("digraph"), out
    for sid in ("count", "keywords", "summarize"):
        assert re.search(rf'"?{sid}"?\s*->\s*"?report"?', out), out


def test_graph_of_invalid_workflow_is_exit_2(tmp_path: Path) -> None:
    rc, out, err = run_cli("graph", INVALID / "cycle.yaml", cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    assert "cycle" in err


# -- agents check ------------------------------------------------------------------------------


def test_agents_check_lists_tools(tmp_path: Path) -> None:
    """Run from elsewhere than the repo root: an agent's relative `cwd` is the workflow file's."""
    rc, out, err = run_cli("agents", "check", REPO / "workflows" / "hello.yaml", cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 0, out + err
    for tool in ("word_count", "keywords", "summarize", "join"):
        assert tool in out, out


def test_agents_check_broken_agent_is_exit_1(tmp_path: Path) -> None:
    rc, out, err = run_cli("agents", "check", BROKEN / "dead-agent.yaml", "--output", "json", cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 1, out + err
    report = json.loads(out)
    assert "ghost" in json.dumps(report)
    assert "/nonexistent/agent" in out


# -- exit 4 -------------------------------------------------------------------------------------


def test_run_timeout_is_exit_4(tmp_path: Path, everything_js: Path) -> None:
    rc, out, err = run_cli(
        "run",
        WORKFLOWS / "run-timeout.yaml",
        "--output",
        "json",
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        "--events",
        tmp_path / "ev.jsonl",
        cwd=tmp_path,
    )
    assert_no_traceback(err)
    assert rc == 4, err
    data = parse_json_stdout(out, err)
    assert_run_json(data, status="timed_out", step_ids={"quick", "sleepy", "after", "report"})
    steps = data["steps"]
    assert steps["quick"]["status"] == "completed" and steps["quick"]["result"] == "Echo: quick"
    assert data["outputs"]["quick"] == "Echo: quick", "results that succeeded are still reported"
    assert steps["sleepy"]["status"] in ("cancelled", "failed"), steps["sleepy"]
    assert steps["after"]["status"] in ("cancelled", "skipped"), steps["after"]
    # finally runs after a timeout and sees run.status == timed_out (SPEC §8)
    assert steps["report"]["status"] == "completed", steps["report"]
    assert steps["report"]["result"] == "Echo: run ended as timed_out"
    # the 30 s operation was cut at about 5 s
    assert data["duration_ms"] - data["preflight_ms"] < 15000, data
    types = [json.loads(x)["type"] for x in (tmp_path / "ev.jsonl").read_text(encoding="utf-8").splitlines()]
    assert types[0] == "run_started" and types[-1] not in ("run_completed", "run_failed"), types
