"""``runs show`` has ``duration_ms`` for every step that ended. Id: ``cli:show-durations``.

A step that completed, failed at its call, failed before any call (its arguments could
not render), failed on its own ``timeout``, or was cancelled in flight by the run's
``timeout``: each has a number in ``runs show`` (text and ``--output json``), read back
from the SQLite and the PostgreSQL store, equal to what ``run --output json`` reported.
(The run's 8 s ``timeout`` also bounds the agent's start-up: not less, on a loaded machine.)
Once the failure events lacked the duration the success event carried, and ``runs show``
printed ``duration_ms: null`` for every failed step.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, run_cli
from tests.store_fixtures import Backend, durable_fixture, pg_template, pg_url  # noqa: F401 - fixtures this module uses

WORKFLOW = f"""name: durations
timeout: 8s
inputs:
  p: {{type: string, default: "(a)\\\\1"}}
agents:
  - id: m
    transport: stdio
    command: python
    args: ["examples/agents/math_agent.py"]
    cwd: {REPO}
steps:
  - step_id: ok
    tool_to_call: add
    tool_arguments: {{a: 1, b: 2}}
  - step_id: bad
    tool_to_call: divide
    tool_arguments: {{a: 1, b: 0}}
    depends_on: ok
  - step_id: unrendered
    tool_to_call: add
    tool_arguments: {{a: "{{{{ 1 if 'x' is search(inputs.p) else 0 }}}}", b: 0}}
  - step_id: slow
    tool_to_call: sleep
    tool_arguments: {{seconds: 5}}
    timeout: 300ms
  - step_id: cut
    tool_to_call: sleep
    tool_arguments: {{seconds: 30}}
"""


def test_runs_show_has_durations_for_failed_and_cancelled_steps(tmp_path: Path, durable: Backend) -> None:
    """cli:show-durations"""
    path = tmp_path / "w.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    code, out, err = run_cli("run", "--store", durable.url, "--output", "json", path)
    assert code == 4, err  # the run timed out (the `cut` step was still sleeping)
    ran = json.loads(out)
    run_id = ran["run_id"]

    code, out, err = run_cli("runs", "show", run_id, "--store", durable.url, "--output", "json")
    assert code == 0, err
    steps = json.loads(out)["steps"]
    statuses = {sid: s["status"] for sid, s in steps.items()}
    assert statuses == {
        "ok": "completed",
        "bad": "failed",
        "unrendered": "failed",
        "slow": "failed",
        "cut": "cancelled",
    }, steps
    assert "timed out" in steps["slow"]["error"], steps["slow"]
    for sid, s in steps.items():
        assert isinstance(s["duration_ms"], float), (sid, s)
        assert s["duration_ms"] == ran["steps"][sid]["duration_ms"], (sid, s, ran["steps"][sid])
    assert steps["unrendered"]["duration_ms"] == 0.0  # it failed before any call started
    assert steps["slow"]["duration_ms"] >= 250.0, steps["slow"]  # it ran until its 300 ms timeout
    assert steps["cut"]["duration_ms"] >= 1000.0, steps["cut"]  # it ran until the run's 8 s timeout

    code, text, err = run_cli("runs", "show", run_id, "--store", durable.url)
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split() and line.split()[0] in steps}
    assert rows.keys() == steps.keys(), text
    for sid, row in rows.items():
        assert row[4] == f"{steps[sid]['duration_ms']:.1f}", (sid, row, text)  # the MS column, never "-"
