"""``runner runs show`` lists steps in workflow order; a run's error names nested failures.

Real CLI in subprocesses, the example text agent over stdio, a real SQLite file.

- The store keeps a run's steps in the order they first appeared (starts, skips), which is
  not the workflow's when a step written early waits for one written later, or nested runs
  overlap. ``runs show`` (text and ``--output json``) must list them as ``runner run
  --output json`` does: the file's order, each nested run's steps right after the step that
  called it, calls in item order, each callee in its own order.
- A run whose ``uses:``/``workflow:`` step failed because a nested step did says which one
  (``step(s) failed: outer/inner/bad``), not just the top-level call.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import REPO, assert_no_traceback, parse_json_stdout, run_cli

AGENT = REPO / "examples" / "agents" / "text_agent.py"


CALL = "assigned_agent_id: text, tool_to_call: upper"
# Each body writes `second` before `first`, which it waits for: run order is the reverse.
BODY = """\
      steps:
        - {step_id: second, depends_on: [first], CALL, tool_arguments: {text: "{{ steps.first.result }}"}}
        - {step_id: first, CALL, tool_arguments: {text: b}}
"""
ORDER = """\
name: order
agents:
  - {id: text, transport: stdio, command: python, args: ["AGENT"]}
steps:
  - {step_id: zeta, depends_on: [alpha], CALL, tool_arguments: {text: z}}
  - step_id: team
    workflow:
BODY
  - step_id: teams
    for_each: [1, 2]
    workflow:
BODY
  - {step_id: alpha, CALL, tool_arguments: {text: a}}
  - {step_id: skipped, if: false, CALL, tool_arguments: {text: s}}
finally:
  - {step_id: cleanup, CALL, tool_arguments: {text: c}}
""".replace("BODY\n", BODY)
WORKFLOW_ORDER = [
    "zeta",
    "team", "team/second", "team/first",
    "teams", "teams[0]/second", "teams[0]/first", "teams[1]/second", "teams[1]/first",
    "alpha", "skipped", "cleanup",
]  # fmt: skip


def _run(tmp_path: Path, text: str, name: str) -> tuple[int, dict[str, Any], str, str]:
    """Run ``text`` into a SQLite file: exit code, ``--output json``, stderr, store URL."""
    wf = tmp_path / f"{name}.yaml"
    wf.write_text(text.replace("CALL", CALL).replace("AGENT", str(AGENT)))
    store = f"sqlite:///{tmp_path}/runs.db"
    code, out, err = run_cli("run", wf, "--store", store, "--output", "json", "-q", cwd=tmp_path, timeout=120)
    assert_no_traceback(err)
    return code, parse_json_stdout(out, err), err, store


def _shown(run_id: str, store: str) -> tuple[list[str], dict[str, Any], str]:
    """``runs show``: the step ids of its table (text), its JSON, and its text."""
    code, text, err = run_cli("runs", "show", run_id, "--store", store)
    assert code == 0, err
    code, out, err = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
    assert code == 0, err
    table = text.split("RESULT / ERROR\n", 1)[1].split("\n")
    ids = [line.split()[0] for line in table if line and not line.startswith(("outputs:", "session "))]
    return ids, json.loads(out), text


def test_runs_show_lists_steps_in_workflow_order_in_text_and_json(tmp_path: Path) -> None:
    code, ran, err, store = _run(tmp_path, ORDER, "order")
    assert code == 0, err
    assert list(ran["steps"]) == WORKFLOW_ORDER
    text_ids, shown, _ = _shown(ran["run_id"], store)
    assert list(shown["steps"]) == WORKFLOW_ORDER
    assert text_ids == WORKFLOW_ORDER
    # the store's own order is another one (what runs show listed before): the test means something
    started = [h["step_id"] for h in shown["history"] if h["type"] == "step_completed"]
    assert started.index("alpha") < started.index("zeta") and started.index("team/first") < started.index("team/second")


def test_runs_show_keeps_the_order_of_the_version_that_ran(tmp_path: Path) -> None:
    """The file changed since (steps reordered, one removed): the stored text decides, and an
    id it does not know would come last rather than be lost."""
    code, ran, err, store = _run(tmp_path, ORDER, "order")
    assert code == 0, err
    (tmp_path / "order.yaml").write_text("name: order\nsteps:\n  - {step_id: other, tool_to_call: t}\n")
    _, shown, _ = _shown(ran["run_id"], store)
    assert list(shown["steps"]) == WORKFLOW_ORDER


NESTED_FAIL = """\
name: nested-fail
agents:
  - {id: text, transport: stdio, command: python, args: ["AGENT"]}
steps:
  - step_id: outer
    workflow:
      steps:
        - step_id: inner
          workflow:
            steps:
              - {step_id: ok, CALL, tool_arguments: {text: a}}
              - {step_id: bad, depends_on: [ok], CALL, tool_arguments: {text: "{{ steps.ok.result.missing }}"}}
  - {step_id: plain, depends_on: [fine], CALL, tool_arguments: {text: "{{ steps.fine.result.missing }}"}}
  - {step_id: fine, CALL, tool_arguments: {text: f}}
"""


def test_a_failed_run_names_the_nested_steps_that_failed(tmp_path: Path) -> None:
    code, ran, err, store = _run(tmp_path, NESTED_FAIL, "nested-fail")
    assert code == 1 and ran["status"] == "failed", err
    want = "step(s) failed: outer/inner/bad, plain"  # the deepest failure, not the calls around it
    assert err.splitlines()[-1] == f"run failed: {want}", err
    assert ran["steps"]["outer"]["error"].endswith(": failed: step(s) failed: outer/inner/bad")
    assert ran["steps"]["outer/inner"]["error"].endswith(": failed: step(s) failed: inner/bad")
    assert ran["steps"]["fine"]["status"] == "completed"
    _, shown, text = _shown(ran["run_id"], store)
    assert shown["error"] == want
    assert re.search(rf"^error: {re.escape(want)}$", text, re.MULTILINE), text
