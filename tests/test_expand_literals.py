"""``runner expand`` prints literals as their author wrote them.

The model normalizes some values (``if: false`` becomes the template ``{{ false }}``, a
duration becomes seconds, ``backoff: 2`` becomes ``2.0``, ``depends_on: a`` a tuple); the
expansion is made from the model, yet must read back as written — in the calling file, in
a ``uses:`` callee and in an inline ``workflow:`` body — and still load as the same model.
Real CLI in subprocesses.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from runner.load import load_workflow
from runner.model import Workflow

RUNNER = str(Path(sys.executable).parent / "runner")

# every key whose literal the model normalizes, written as people write them
STEPS = """\
  - step_id: a
    assigned_agent_id: w
    tool_to_call: t
    if: false
    timeout: 90
    retry: {max_attempts: 3, delay: 0.5, backoff: 2, max_delay: 1.5s, jitter: 0.25}
    continue_on_error: true
  - step_id: b
    depends_on: a
    for_each: [{caps: [x], fb: [v]}]
    required_capabilities: "{{ item.caps }}"
    fallback_agents: "{{ item.fb }}"
    tool_to_call: t
    if: true
    timeout: 120
  - step_id: c
    depends_on: [a]
    assigned_agent_id: w
    tool_to_call: t
    if: "{{ false }}"
    timeout: 2m
    retry: {max_attempts: "{{ inputs.n }}", delay: "{{ inputs.n }}", backoff: 1.5}
"""
AGENTS = """\
agents:
  - {id: w, capabilities: [x], command: python, args: [x.py], timeout: 30}
  - {id: v, capabilities: [x], command: python, args: [x.py]}
"""


def _runner(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _model(wf: Workflow) -> Any:
    """What runs, whichever way a callee was written (uses: or workflow:) and wherever from."""
    steps = tuple(dataclasses.replace(s, uses=None, inline=None, with_={}) for s in (*wf.steps, *wf.finally_steps))
    agents = tuple(dataclasses.replace(a, source=None) for a in wf.agents)
    bare = dataclasses.replace(
        wf, name="", source=None, source_text=None, warnings=(), agents=agents, steps=steps, finally_steps=(),
        children={},
    )  # fmt: skip
    return bare, {k: _model(c) for k, c in sorted(wf.children.items())}


def test_expand_prints_literals_as_written_and_loads_as_the_same_model(tmp_path: Path) -> None:
    (tmp_path / "callee.yaml").write_text(f"name: callee\ninputs: {{n: {{default: 2}}}}\n{AGENTS}steps:\n{STEPS}")
    inline = "\n".join("        " + line for line in STEPS.splitlines())
    (tmp_path / "main.yaml").write_text(
        f"name: main\ninputs: {{n: {{type: integer, default: 2}}}}\n{AGENTS}timeout: 600\nsteps:\n{STEPS}"
        "  - step_id: called\n    uses: ./callee.yaml\n"
        "  - step_id: inline\n    workflow:\n      inputs: {n: {default: 2}}\n      steps:\n"
        f"{inline}\n"
    )
    out = tmp_path / "out.yaml"
    p = _runner("expand", "main.yaml", "--output", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "{{ false }}'" not in text.replace("if: '{{ false }}'", ""), text  # only where written so
    data = yaml.safe_load(text)
    assert data["timeout"] == 600 and data["agents"][0]["timeout"] == 30
    bodies = [data["steps"][:3], data["steps"][3]["workflow"]["steps"], data["steps"][4]["workflow"]["steps"]]
    for steps in bodies:
        a, b, c = steps
        assert a["if"] is False and b["if"] is True and c["if"] == "{{ false }}", steps
        assert a["timeout"] == 90 and b["timeout"] == 120 and c["timeout"] == "2m"
        assert a["retry"] == {"max_attempts": 3, "delay": 0.5, "backoff": 2, "max_delay": "1.5s", "jitter": 0.25}
        assert type(a["retry"]["backoff"]) is int and a["continue_on_error"] is True
        assert b["depends_on"] == "a" and c["depends_on"] == ["a"]
        assert b["required_capabilities"] == "{{ item.caps }}" and b["fallback_agents"] == "{{ item.fb }}"
        assert c["retry"] == {"max_attempts": "{{ inputs.n }}", "delay": "{{ inputs.n }}", "backoff": 1.5}
    assert _runner("validate", str(out)).returncode == 0
    assert _model(load_workflow(out)) == _model(load_workflow(tmp_path / "main.yaml"))
    again = _runner("expand", str(out))  # and an expansion of the expansion is the same text
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 1)[1] == text.split("\n", 1)[1]
