"""An ``inprocess`` agent's ``module`` is imported relative to the workflow file's directory.

Id: ``agents:inprocess-relative``. The workflow lives in a directory with its own
``examples/agents`` package; the CLI runs from ``/`` with no ``PYTHONPATH``, so only the
workflow's directory on ``sys.path`` can make the import work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO, assert_no_traceback, run_cli

WORKFLOW = """name: rel
agents:
  - id: m
    transport: inprocess
    module: examples.agents.math_agent:server
steps:
  - step_id: a
    tool_to_call: add
    tool_arguments: {a: 1, b: 2}
outputs:
  s: "{{ steps.a.result }}"
"""


def test_module_relative_to_the_workflow_file(tmp_path: Path) -> None:
    """agents:inprocess-relative"""
    pkg = tmp_path / "proj" / "examples" / "agents"
    pkg.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "agents" / "math_agent.py", pkg / "math_agent.py")
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg.parent / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "proj" / "w.yaml").write_text(WORKFLOW, encoding="utf-8")
    code, out, err = run_cli("run", "-q", "--store", "memory://", tmp_path / "proj" / "w.yaml", cwd="/", env={"PYTHONPATH": ""})
    assert code == 0, err
    assert out == "s: 3\n"


def test_a_module_that_is_not_there_is_named(tmp_path: Path) -> None:
    """agents:inprocess-relative — without the package next to it, the import error names the module."""
    (tmp_path / "w.yaml").write_text(WORKFLOW.replace("examples.agents.math_agent", "nowhere_pkg.agent"), encoding="utf-8")
    code, out, err = run_cli("run", "-q", "--store", "memory://", tmp_path / "w.yaml", cwd="/")
    assert code == 3, (code, err)
    assert_no_traceback(err)
    assert "nowhere_pkg" in err, err
