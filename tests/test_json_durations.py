"""``--output json`` has ``duration_ms`` for every finished step. Id: ``cli:json-durations``.

A step that failed at its call, one that failed before any call (its arguments could not
render), and one kept from an earlier session by ``runner retry`` each carry a number;
the kept one equals what ``runs show`` reports for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, run_cli

WORKFLOW = f"""name: d
inputs:
  p: {{type: string, default: "(a)\\\\1"}}
agents:
  - id: m
    transport: stdio
    command: python
    args: ["examples/agents/math_agent.py"]
    cwd: {REPO}
steps:
  - step_id: a
    tool_to_call: add
    tool_arguments: {{a: 1, b: 2}}
  - step_id: b
    tool_to_call: divide
    tool_arguments: {{a: 1, b: 0}}
    depends_on: a
  - step_id: c
    tool_to_call: add
    tool_arguments: {{a: "{{{{ 1 if 'x' is search(inputs.p) else 0 }}}}", b: 0}}
    depends_on: a
"""


def _steps(out: str) -> dict[str, dict[str, object]]:
    return json.loads(out)["steps"]  # type: ignore[no-any-return]


def test_failed_and_kept_steps_have_durations(tmp_path: Path) -> None:
    """cli:json-durations"""
    path = tmp_path / "w.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    store = f"sqlite:///{tmp_path}/s.db"
    code, out, err = run_cli("run", "--store", store, "--output", "json", path)
    assert code == 1, err
    steps = _steps(out)
    assert (steps["b"]["status"], steps["c"]["status"]) == ("failed", "failed"), steps
    assert "invalid regular expression" in str(steps["c"]["error"])
    for sid in "abc":
        assert isinstance(steps[sid]["duration_ms"], float), (sid, steps[sid])
    assert steps["c"]["duration_ms"] == 0.0  # it failed before any call started
    run_id = json.loads(out)["run_id"]

    code, out, err = run_cli("retry", run_id, "--store", store, "--output", "json")
    assert code == 1, err
    retried = _steps(out)
    assert retried["a"]["status"] == "completed" and retried["a"]["attempts"] == 1  # kept, not re-run
    assert isinstance(retried["b"]["duration_ms"], float), retried["b"]
    code, shown, err = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
    assert code == 0 or code == 1, err
    assert retried["a"]["duration_ms"] == json.loads(shown)["steps"]["a"]["duration_ms"] == steps["a"]["duration_ms"]
