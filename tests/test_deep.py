"""``runner validate --deep`` against the real text agent over stdio (CLI in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")


def test_deep_reports_typed_dataflow_problems_with_positions():
    f = ROOT / "tests/fixtures/deep/bad-dataflow.yaml"
    p = subprocess.run(
        [RUNNER, "validate", "--deep", "--format", "json", str(f)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2, p.stderr
    problems = json.loads(p.stdout)
    got = {(x["line"], x["col"], x["path"]) for x in problems}
    assert (11, 31, "$.steps[0].tool_arguments.extra") in got  # unknown argument, at its key
    assert (11, 28, "$.steps[0].tool_arguments.text") in got  # literal of the wrong type
    assert (13, 19, "$.steps[1].tool_to_call") in got  # unknown tool
    msgs = " | ".join(x["message"] for x in problems)
    assert "did you mean 'keywords'?" in msgs and "it offers: decompose_task, join, keywords" in msgs
    assert "output has no field 'wordz' (did you mean 'words'?)" in msgs
    assert "Traceback" not in p.stderr


def test_deep_accepts_the_shipped_workflows():
    p = subprocess.run(
        [RUNNER, "validate", "--deep", str(ROOT / "workflows/hello.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stdout + p.stderr
