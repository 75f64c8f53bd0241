"""JUnit for CI reporters. Ids: ``junit:continue-on-error``, ``junit:skip-reason``.

A ``continue_on_error`` failure did not fail the run, so the report has no failure for it
(its error is still there, in ``<system-out>`` and a property); a skipped case says why.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import REPO, run_cli

WORKFLOW = f"""name: j
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
  - step_id: tolerant
    tool_to_call: divide
    tool_arguments: {{a: 1, b: 0}}
    continue_on_error: true
  - step_id: gated
    tool_to_call: add
    tool_arguments: {{a: 1, b: 2}}
    if: "{{{{ steps.a.result > 10 }}}}"
    depends_on: a
"""


def _cases(path: Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.parse(path).getroot()
    return root, {c.get("name", ""): c for c in root.iter("testcase")}


def test_tolerated_failure_is_green_and_skips_say_why(tmp_path: Path) -> None:
    """junit:continue-on-error, junit:skip-reason"""
    wf = tmp_path / "w.yaml"
    wf.write_text(WORKFLOW, encoding="utf-8")
    report = tmp_path / "junit.xml"
    code, out, err = run_cli("run", "--store", "memory://", wf, "--junit", report)
    assert code == 0, err
    root, cases = _cases(report)
    assert root.get("failures") == "0" and root.get("errors") == "0", report.read_text()
    tolerant = cases["tolerant"]
    assert tolerant.find("failure") is None and tolerant.find("error") is None
    assert "division by zero" in (tolerant.findtext("system-out") or "")
    prop = tolerant.find("properties/property")
    assert prop is not None and prop.get("name") == "continue_on_error" and "division by zero" in prop.get("value", "")
    skipped = cases["gated"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "skipped: its if: was false ({{ steps.a.result > 10 }})"


def test_skipped_after_a_failed_dependency_names_it(tmp_path: Path) -> None:
    """junit:skip-reason — and a real failure still counts."""
    wf = tmp_path / "w.yaml"
    wf.write_text(
        WORKFLOW.replace("    continue_on_error: true\n", "").replace("depends_on: a", "depends_on: [a, tolerant]"),
        encoding="utf-8",
    )
    report = tmp_path / "junit.xml"
    code, out, err = run_cli("run", "--store", "memory://", wf, "--junit", report)
    assert code == 1, err
    root, cases = _cases(report)
    assert root.get("failures") == "1"
    assert cases["tolerant"].find("failure") is not None
    skipped = cases["gated"].find("skipped")
    assert skipped is not None and skipped.get("message") == "skipped: dependency 'tolerant' failed", report.read_text()
