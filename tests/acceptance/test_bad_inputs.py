"""What a user sees when something is wrong: one clear line, the documented exit code, no traceback.

Exit codes (SPEC §4): 2 invalid input (workflow, inputs, arguments), 3 a required agent
could not be started or reached. Validation messages are ``file:line:col: message [path]``
with the position of the YAML node at fault (SPEC §2, §8).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import assert_no_traceback, run_cli

WORKFLOWS = Path(__file__).parent / "workflows"
INVALID = WORKFLOWS / "invalid"
BROKEN = WORKFLOWS / "broken"
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+?)(?: \[(?P<path>\$[^ ]*)\])?$")


def _lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def _position(path: Path, needle: str, within: str | None = None) -> tuple[int, int]:
    """1-based line and column of ``needle`` on the first line holding ``within`` (default: needle)."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if (within or needle) in line and not line.lstrip().startswith("#"):
            return i, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in {path}")


def _store(tmp_path: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path}/r.db"]


def _problems(stderr: str) -> list[re.Match[str]]:
    lines = _lines(stderr)
    matches = [PROBLEM_LINE.match(ln) for ln in lines]
    assert lines and all(matches), f"every line must be file:line:col: message [path]:\n{stderr}"
    return [m for m in matches if m is not None]


@pytest.mark.parametrize("command", ["run", "validate"])
def test_missing_workflow_file(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope" / "missing.yaml"
    rc, out, err = run_cli(command, missing, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    lines = _lines(err)
    assert len(lines) == 1 and str(missing) in lines[0], err


def test_malformed_yaml_has_file_line_col(tmp_path: Path) -> None:
    wf = INVALID / "malformed.yaml"
    line, _ = _position(wf, "tool_to_call: echo: broken")
    for command in ("validate", "run"):
        rc, out, err = run_cli(command, wf, *_store(tmp_path), cwd=tmp_path)
        assert_no_traceback(err)
        assert rc == 2, (command, err)
        (p,) = _problems(err)
        assert p["file"].endswith("malformed.yaml")
        assert int(p["line"]) == line, err
        assert int(p["col"]) >= 1
        assert "yaml" in p["msg"].lower(), err


def test_unknown_key_points_at_the_key(tmp_path: Path) -> None:
    wf = INVALID / "unknown-key.yaml"
    line, col = _position(wf, "tool_argumnets")
    rc, out, err = run_cli("run", wf, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    (p,) = _problems(err)
    assert (int(p["line"]), int(p["col"])) == (line, col), err
    assert "tool_argumnets" in p["msg"]
    assert p["path"] == "$.steps[0].tool_argumnets"


def test_cycle_is_named(tmp_path: Path) -> None:
    rc, out, err = run_cli("run", INVALID / "cycle.yaml", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    (p,) = _problems(err)
    assert "cycle" in p["msg"]
    assert all(name in p["msg"] for name in ("first", "second", "third")), err


def test_unknown_depends_on(tmp_path: Path) -> None:
    wf = INVALID / "unknown-dep.yaml"
    line, _ = _position(wf, "nowhere")
    rc, out, err = run_cli("run", wf, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    (p,) = _problems(err)
    assert "nowhere" in p["msg"] and int(p["line"]) == line, err


def test_hostile_template_is_a_validation_error(tmp_path: Path) -> None:
    wf = INVALID / "hostile.yaml"
    line, _ = _position(wf, "__mro__")
    for command in ("validate", "run"):
        rc, out, err = run_cli(command, wf, *_store(tmp_path), cwd=tmp_path)
        assert_no_traceback(err)
        assert rc == 2, (command, err)
        problems = _problems(err)
        assert all(int(p["line"]) == line for p in problems), err
        assert any("__" in p["msg"] for p in problems), err
        assert "<class" not in out + err, "the template must never be rendered"


def test_dead_agent_command_is_exit_3(tmp_path: Path) -> None:
    rc, out, err = run_cli("run", BROKEN / "dead-agent.yaml", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 3, err
    assert any("ghost" in ln and "/nonexistent/agent" in ln for ln in _lines(err)), err


def test_agent_exiting_at_once_is_exit_3(tmp_path: Path) -> None:
    rc, out, err = run_cli("run", BROKEN / "exits-at-once.yaml", "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 3, err
    assert any("quitter" in ln for ln in _lines(err)), err


def test_unknown_tool_caught_before_any_call(tmp_path: Path, everything_js: Path) -> None:
    wf = BROKEN / "unknown-tool.yaml"
    line, col = _position(wf, "ecko", within="tool_to_call: ecko")
    rc, out, err = run_cli("run", wf, "--events", tmp_path / "ev.jsonl", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    msg = next((ln for ln in _lines(err) if ln.startswith(str(wf)) and "ecko" in ln), None) or err
    assert "echo" in msg and "get-sum" in msg, f"the agent's tool list belongs in the message: {err}"
    # caught in preflight: not even the valid step ran
    events = (tmp_path / "ev.jsonl").read_text(encoding="utf-8") if (tmp_path / "ev.jsonl").exists() else ""
    assert "step_started" not in events
    # SPEC §2/§8: file:line:col of the offending node, and a JSON path
    p = PROBLEM_LINE.match(msg)
    assert p is not None, msg
    assert (int(p["line"]), int(p["col"])) == (line, col), f"expected {wf.name}:{line}:{col}: {msg}"
    assert p["path"] == "$.steps[1].tool_to_call", msg


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-i", "repeat=abc"], "repeat"),  # not an integer
        (["-i", "repeat=0"], "repeat"),  # below the input's minimum
        (["-i", "time=noon"], "time"),  # fails the input's pattern
        (["-i", "nosuch=1"], "nosuch"),  # undeclared input
        (["-i", "no-equals-sign"], "NAME=VALUE"),  # not a pair
        (["--inputs", "{missing}"], "{missing}"),  # --inputs file does not exist
    ],
    ids=["not-integer", "below-minimum", "pattern", "unknown-input", "not-a-pair", "inputs-file-missing"],
)
def test_bad_inputs_are_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    missing = str(tmp_path / "absent" / "inputs.yaml")
    args = [a.replace("{missing}", missing) for a in args]
    fragment = fragment.replace("{missing}", missing)
    rc, out, err = run_cli("run", WORKFLOWS / "time.yaml", *args, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    lines = _lines(err)
    assert len(lines) == 1 and fragment in lines[0], err
    assert "running" not in err, "bad inputs must be refused before the run starts"


def test_inputs_file_with_bad_value(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("repeat: many\n", encoding="utf-8")
    rc, out, err = run_cli("run", WORKFLOWS / "time.yaml", "--inputs", inputs, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    lines = _lines(err)
    assert len(lines) == 1 and "repeat" in lines[0], err
