"""CLI output that says what happened, once. Ids: ``cli:quiet-result``, ``cli:missing-secret``."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, assert_no_traceback, run_cli

WORKFLOW = f"""name: sec
agents:
  - id: m
    transport: stdio
    command: python
    args: ["examples/agents/math_agent.py"]
    env: {{TOKEN: "{{{{ secrets.TOKEN }}}}"}}
    cwd: {REPO}
steps:
  - step_id: a
    tool_to_call: add
    tool_arguments: {{a: 1, b: 2}}
outputs:
  sum: "{{{{ steps.a.result }}}}"
"""


def test_quiet_hides_progress_not_the_outputs(tmp_path: Path) -> None:
    """cli:quiet-result"""
    path = tmp_path / "w.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    code, out, err = run_cli("run", "-q", "--store", "memory://", path, env={"RUNNER_SECRET_TOKEN": "x"})
    assert code == 0, err
    assert out == "sum: 3\n"
    assert err == ""


def test_missing_secret_is_exit_2_with_a_hint_printed_once(tmp_path: Path) -> None:
    """cli:missing-secret — not exit 3 (no agent is at fault), and the error once."""
    path = tmp_path / "w.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    code, out, err = run_cli("run", "--store", "memory://", path)
    assert code == 2, err
    assert_no_traceback(err)
    message = (
        "missing secret(s): TOKEN; set RUNNER_SECRET_TOKEN=... in the environment "
        "or pass --secrets FILE (a YAML mapping with TOKEN: ...)"
    )
    assert err.count("missing secret(s)") == 1, err
    assert err.splitlines()[-1] == f"runner: error: {message}"
