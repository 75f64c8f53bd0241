"""``workflow:`` (a callee written in place), ``runner expand`` and ``runner graph --expand``.

The real ``runner`` CLI in subprocesses, real example agents over stdio: an expanded file
must validate and give the same outputs as the file it came from.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.load import load_workflow
from runner.load.dump import to_yaml, workflow_data
from runner.model import Workflow

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")
USES = ROOT / "tests/fixtures/uses"


def _runner(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _outputs(path: Path) -> Any:
    p = _runner("run", str(path), "--store", "memory://", "--output", "json", "-q")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "completed"
    return out["outputs"]


def _keys(value: Any) -> set[str]:
    """Every mapping key anywhere in a nested value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


# ---------------------------------------------------------------------------- workflow:


def test_an_inline_workflow_runs_exactly_as_uses_of_the_same_content() -> None:
    """inline.yaml is main.yaml with shout.yaml's text under `workflow:`."""
    inline = _outputs(USES / "inline.yaml")
    assert inline == _outputs(USES / "main.yaml")
    assert inline == {"team": {"shout": "HELLO THERE AGAIN", "words": 3}, "words": 3}


BAD_INLINE = """\
name: bad
agents:
  - {id: a, command: python, args: [x.py]}
steps:
  - step_id: one
    assigned_agent_id: a
    tool_to_call: t
  - step_id: two
    with: {txt: hi}
    workflow:
      inputs:
        text: {type: string}
      steps:
        - step_id: x
          assigned_agent_id: b
          tool_tocall: t
        - step_id: y
          depends_on: [z]
          assigned_agent_id: a
          tool_to_call: t
          tool_arguments: {v: "{{ inputs.nope }} {{ steps.one.result }}"}
  - step_id: three
    tool_to_call: t
    assigned_agent_id: a
    workflow: {steps: [{step_id: q}]}
  - step_id: four
    with: {n: "str"}
    workflow:
      inputs: {n: {type: integer}}
      runs_on: [gpu]
      steps: [{step_id: q, assigned_agent_id: a, tool_to_call: t}]
"""


def test_problems_inside_an_inline_body_are_positioned_in_the_calling_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_INLINE)
    p = _runner("validate", str(f))
    assert p.returncode == 2
    lines = set(p.stderr.splitlines())
    expected = [
        "16:11: unknown key 'tool_tocall' (did you mean 'tool_to_call'?) [$.steps[1].workflow.steps[0].tool_tocall]",
        "18:24: unknown step 'z' in depends_on [$.steps[1].workflow.steps[1].depends_on[0]]",
        "15:30: unknown agent 'b': not declared under agents nor in the --agents registry "
        "[$.steps[1].workflow.steps[0].assigned_agent_id]",
        # the body's own namespace: its inputs, its steps (not the caller's)
        "21:31: template references unknown step 'one' [$.steps[1].workflow.steps[1].tool_arguments.v]",
        "21:31: template references undeclared input 'nope'; declared: text [$.steps[1].workflow.steps[1].tool_arguments.v]",
        "25:5: a step either calls a tool (tool_to_call) or uses a pattern (uses) or runs a workflow written "
        "in place (workflow), one of them: this one has tool_to_call and workflow [$.steps[2].workflow]",
        "30:7: unknown key 'runs_on' [$.steps[3].workflow.runs_on]",
    ]
    for e in expected:
        assert f"{f}:{e}" in lines, p.stderr


WITH_CALLER = """\
name: caller
agents:
  - {id: a, command: python, args: [x.py]}
steps:
  - step_id: by_file
    uses: ./callee.yaml
    with: {txt: hi, n: "str"}
  - step_id: in_place
    with: {txt: hi, n: "str"}
    workflow:
%s
"""

CALLEE = """\
name: callee
inputs:
  text: {type: string}
  n: {type: integer}
  opt: {type: string, default: x}
steps:
  - {step_id: q, assigned_agent_id: a, tool_to_call: t}
"""


def test_with_is_checked_the_same_for_uses_and_workflow(tmp_path: Path) -> None:
    """Unknown keys, missing required inputs, literal values against the input schemas."""
    (tmp_path / "callee.yaml").write_text(CALLEE)
    body = "\n".join("      " + line for line in CALLEE.splitlines())
    f = tmp_path / "caller.yaml"
    f.write_text(WITH_CALLER % body)
    p = _runner("validate", str(f))
    assert p.returncode == 2
    found: dict[str, list[str]] = {"by_file": [], "in_place": []}
    for line in p.stderr.splitlines():
        m = re.match(r".*?:\d+:\d+: (.*) \[\$\.steps\[(\d)\]", line)
        if m:
            msg = m.group(1).replace("'./callee.yaml'", "CALLEE").replace("the inline workflow", "CALLEE")
            found[["by_file", "in_place"][int(m.group(2))]].append(msg)
    assert sorted(found["by_file"]) == sorted(found["in_place"])
    assert sorted(found["by_file"]) == [
        "CALLEE has no input 'txt' (did you mean 'text'?); inputs: text, n, opt",
        "CALLEE needs input 'text' (it has no default)",
        "input 'n' of CALLEE does not match its schema: 'str' is not of type 'integer'",
    ]


def test_an_inline_body_that_uses_its_own_file_is_recursion(tmp_path: Path) -> None:
    f = tmp_path / "loop.yaml"
    f.write_text(
        "name: loop\nagents: [{id: a, command: python, args: [x.py]}]\nsteps:\n"
        "  - step_id: s\n    workflow:\n      steps:\n        - step_id: again\n          uses: ./loop.yaml\n"
    )
    p = _runner("run", str(f), "--store", "memory://")
    assert p.returncode == 2
    assert (
        f"{f}:8:17: step 'again': uses: recursion (loop.yaml -> loop.yaml) [$.steps[0].workflow.steps[0].uses]"
        in p.stderr
    )


# ---------------------------------------------------------------------------- the serializer


@pytest.mark.parametrize("name", ["full.yaml", "minimal.yaml", "team.yaml", "anchors.yaml"])
def test_the_model_written_back_loads_as_the_same_model(name: str) -> None:
    """model → data → YAML → model is the identity (what `runner expand` relies on)."""
    wf = load_workflow(ROOT / "tests/fixtures/valid" / name, check_inputs=False)
    text = to_yaml(workflow_data(wf))
    again = load_workflow(text, file=str(ROOT / "tests/fixtures/valid" / name), check_inputs=False)

    def same(w: Workflow) -> Workflow:
        agents = tuple(dataclasses.replace(a, source=None) for a in w.agents)
        return dataclasses.replace(w, source=None, source_text=None, warnings=(), agents=agents)

    assert same(again) == same(wf)
    assert "concurrency: 16" not in text and "max_attempts: 1\n" not in text  # defaults left out


# ---------------------------------------------------------------------------- runner expand


@pytest.mark.parametrize("name", ["main.yaml", "two_level.yaml"])
def test_expand_validates_and_runs_identically(name: str, tmp_path: Path) -> None:
    """Written to another directory: relative agent cwds are rewritten for it."""
    out = tmp_path / "expanded.yaml"
    p = _runner("expand", str(USES / name), "--output", str(out))
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load(out.read_text())
    assert "uses" not in _keys(data) and "workflow" in _keys(data)
    v = _runner("validate", str(out))
    assert v.returncode == 0, v.stderr
    assert _outputs(out) == _outputs(USES / name)
    # a fixed point: expanding the expansion changes nothing
    again = _runner("expand", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 1)[1] == out.read_text().split("\n", 1)[1]


def test_expand_rewrites_a_callees_relative_cwd() -> None:
    p = _runner("expand", str(USES / "two_level.yaml"))
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load(p.stdout)
    outer = data["steps"][1]
    assert "uses" not in outer and outer["workflow"]["agents"][0]["cwd"] == "../../.."  # was ../../../.. in nested/
    assert outer["workflow"]["steps"][0]["workflow"]["name"] == "shout"
    assert outer["retry"] == {"max_attempts": 2, "delay": "500ms"} and outer["timeout"] == "2m"


def test_expand_prints_templates_verbatim_and_reads_no_secret(tmp_path: Path) -> None:
    shutil.copy(USES / "shout.yaml", tmp_path / "shout.yaml")
    f = tmp_path / "main.yaml"
    f.write_text(
        "name: m\nagents:\n  - id: text\n    command: python\n    args: [agent.py]\n"
        '    env: {TOKEN: "{{ secrets.API_TOKEN }}"}\nsteps:\n'
        '  - step_id: team\n    uses: ./shout.yaml\n    with: {text: "{{ inputs.x | upper }}"}\n'
        "inputs: {x: {type: string, default: hi}}\n"
    )
    p = _runner("expand", str(f))
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load(p.stdout)
    assert data["agents"][0]["env"] == {"TOKEN": "{{ secrets.API_TOKEN }}"}
    assert data["steps"][0]["with"] == {"text": "{{ inputs.x | upper }}"}
    assert data["steps"][0]["workflow"]["steps"][0]["tool_arguments"] == {"text": "{{ inputs.text }}"}


def test_expand_refuses_what_inlining_cannot_keep(tmp_path: Path) -> None:
    """A callee's in-process agent is imported from the callee's directory: exit 2, positioned."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/callee.yaml").write_text(
        "name: callee\nagents:\n  - id: inner\n    transport: inprocess\n    module: 'agent_mod:server'\n"
        "steps:\n  - {step_id: q, assigned_agent_id: inner, tool_to_call: t}\n"
    )
    f = tmp_path / "main.yaml"
    f.write_text("name: m\nsteps:\n  - step_id: c\n    uses: ./sub/callee.yaml\n")
    p = _runner("expand", str(f))
    assert p.returncode == 2
    assert p.stderr.startswith(f"{tmp_path / 'sub/callee.yaml'}:5:13: agent 'inner' is in-process"), p.stderr
    assert p.stdout == ""


def test_expand_of_an_invalid_file_is_exit_2_with_positions(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nsteps:\n  - step_id: a\n    uses: ./nowhere.yaml\n")
    p = _runner("expand", str(f))
    assert p.returncode == 2
    assert f"{f}:4:11: workflow file './nowhere.yaml' not found" in p.stderr


# ---------------------------------------------------------------------------- runner graph


def _dot_structure(text: str) -> tuple[set[str], set[tuple[str, str]], list[str]]:
    """Nodes, edges and cluster names of the DOT ``runner graph`` writes; asserts it is well formed."""
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    q = r'"((?:[^"\\]|\\.)*)"'
    nodes = {m.group(1) for m in re.finditer(rf"^\s*{q} \[label=", text, re.M)}
    edges = {(m.group(1), m.group(2)) for m in re.finditer(rf"^\s*{q} -> {q}", text, re.M)}
    clusters = re.findall(rf"^\s*subgraph {q} {{$", text, re.M)
    assert all(c.startswith("cluster_") for c in clusters)
    assert {n for e in edges for n in e} <= nodes  # no edge to an undeclared node
    return nodes, edges, clusters


def test_graph_draws_a_call_as_one_node() -> None:
    p = _runner("graph", str(USES / "main.yaml"))
    assert p.returncode == 0, p.stderr
    assert '["team<br/>uses ./shout.yaml"]' in p.stdout and "subgraph" not in p.stdout
    nodes, edges, clusters = _dot_structure(_runner("graph", "--format", "dot", str(USES / "main.yaml")).stdout)
    assert nodes == {"first", "team", "after"} and edges == {("first", "team"), ("team", "after")} and not clusters


def test_graph_expand_draws_each_call_as_a_subgraph_recursively() -> None:
    p = _runner("graph", "--expand", "--format", "dot", str(USES / "two_level.yaml"))
    assert p.returncode == 0, p.stderr
    nodes, edges, clusters = _dot_structure(p.stdout)
    assert clusters == ["cluster_outer", "cluster_outer/inner", "cluster_outer/lines"]
    assert nodes == {"first", "outer/inner/up", "outer/inner/count", "outer/lines/n", "outer/done"}
    assert edges == {
        ("first", "outer/inner/up"),  # the caller's dependency into the callee's entry step
        ("outer/inner/up", "outer/inner/count"),
        ("outer/inner/count", "outer/lines/n"),  # an exit step of one call to the entry of the next
        ("outer/lines/n", "outer/done"),  # the DAG before the callee's finally step
    }
    m = _runner("graph", "--expand", str(USES / "main.yaml")).stdout.splitlines()
    assert m[0] == "flowchart TD" and m.count("  end") == 1
    ids = {
        label: nid
        for nid, label in (
            re.findall(r'^\s*(s\d+)\["([^<]+)<br/>', line)[0] for line in m if '["' in line and "subgraph" not in line
        )
    }
    assert set(ids) == {"first", "team/up", "team/count", "after"}
    assert f"  {ids['first']} --> {ids['team/up']}" in m and f"  {ids['team/count']} --> {ids['after']}" in m


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
@pytest.mark.parametrize("expand", [[], ["--expand"]])
def test_graph_dot_is_accepted_by_graphviz(expand: list[str]) -> None:
    p = _runner("graph", *expand, "--format", "dot", str(USES / "two_level.yaml"))
    svg = subprocess.run(["dot", "-Tsvg"], input=p.stdout, capture_output=True, text=True, timeout=60)
    assert svg.returncode == 0, svg.stderr
    assert svg.stdout.count('class="cluster"') == (3 if expand else 0)


def test_over_mcp_an_inline_body_obeys_the_same_restrictions() -> None:
    """A workflow defined over MCP may not start processes or read files, inside `workflow:` either."""
    from runner.service.workflows import mcp_restrictions

    text = (
        "name: sneaky\nagents: [{id: h, transport: http, url: 'http://127.0.0.1:1/mcp'}]\nsteps:\n"
        "  - step_id: s\n    workflow:\n      agents: [{id: p, transport: stdio, command: sh}]\n"
        "      steps: [{step_id: q, assigned_agent_id: h, tool_to_call: t}]\n"
    )
    problems = mcp_restrictions(load_workflow(text, file="<mcp>"))
    assert [(p.path, p.line, p.col) for p in problems] == [("$.steps[0].workflow.agents[0].transport", 6, 35)]
