"""The orchestration patterns shipped in ``patterns/`` (SPEC §3, issue 9).

Each pattern documents itself at the top of its file, validates, resolves by name through
``uses:`` (the wheel's ``runner/patterns``), and expands (``runner expand``) to workflow
YAML that validates.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.load.patterns import list_patterns, resolve_uses

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = ROOT / "patterns"
NAMES = ["assembly-line", "hierarchical", "hub-and-spoke", "peer-to-peer"]
RUNNER = str(Path(sys.executable).parent / "runner")


def _uses_left(data: object) -> list[str]:
    """Every ``uses:`` still in an expanded workflow, at any depth."""
    if isinstance(data, dict):
        own = [str(data["uses"])] if "uses" in data else []
        return own + [u for v in data.values() for u in _uses_left(v)]
    if isinstance(data, list):
        return [u for v in data for u in _uses_left(v)]
    return []


def _header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return "\n".join(lines)


def test_the_four_patterns_are_shipped_and_resolve_by_name() -> None:
    assert set(NAMES) <= set(list_patterns())
    for name in NAMES:
        assert resolve_uses(name, None).resolve() == (PATTERNS / f"{name}.yaml").resolve()
    # the wheel's copy is this directory (runner/patterns is a symlink to it in a checkout)
    assert (ROOT / "runner" / "patterns" / "hub-and-spoke.yaml").resolve() == (
        PATTERNS / "hub-and-spoke.yaml"
    ).resolve()


@pytest.mark.parametrize("name", NAMES)
def test_each_pattern_documents_itself_at_the_top(name: str) -> None:
    """Purpose, every input and every output by name, the agents it needs, a usage snippet."""
    path = PATTERNS / f"{name}.yaml"
    head = _header(path)
    data = yaml.safe_load(path.read_text())
    assert data["name"] == name and data.get("description")
    for section in ("Inputs", "Outputs", "Agents", "Usage"):
        assert re.search(rf"^{section}\b", head, re.MULTILINE), f"{name}: no {section} section in the header"
    for key in [*data["inputs"], *data["outputs"]]:
        assert re.search(rf"\b{re.escape(key)}\b", head), f"{name}: {key} is not documented in the header"
    assert f"uses: {name}" in head


def test_hierarchical_nests_hub_and_spoke_rather_than_copying_it() -> None:
    data = yaml.safe_load((PATTERNS / "hierarchical.yaml").read_text())
    [team] = [s for s in data["steps"] if "uses" in s]
    assert team["uses"] == "hub-and-spoke" and "for_each" in team
    # the workers are only ever called by hub-and-spoke: no worker call is written out here
    assert not [s for s in data["steps"] if "worker_tool" in str(s.get("tool_to_call", ""))]
    assert set(team["with"]) <= set(yaml.safe_load((PATTERNS / "hub-and-spoke.yaml").read_text())["inputs"])


@pytest.mark.parametrize("name", NAMES)
def test_each_pattern_validates(name: str) -> None:
    p = subprocess.run([RUNNER, "validate", str(PATTERNS / f"{name}.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("name", NAMES)
def test_each_pattern_expands_to_yaml_that_validates(name: str, tmp_path: Path) -> None:
    p = subprocess.run([RUNNER, "expand", str(PATTERNS / f"{name}.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    expanded = yaml.safe_load(p.stdout)
    assert expanded["name"] == name
    assert not _uses_left(expanded)
    if name == "hierarchical":
        [team] = [s for s in expanded["steps"] if "workflow" in s]
        inner = [s["step_id"] for s in team["workflow"]["steps"]]
        assert inner == ["decompose", "assign", "work", "merge"]
    out = tmp_path / f"{name}.yaml"
    out.write_text(p.stdout)
    # the expanded file is checked where patterns live: agents are its callers' business
    (tmp_path / "patterns").mkdir()
    moved = tmp_path / "patterns" / out.name
    out.rename(moved)
    v = subprocess.run([RUNNER, "validate", str(moved)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.parametrize("example", ["assembly-line", "hierarchical", "hub-and-spoke", "peer-to-peer"])
def test_each_example_expands_to_a_workflow_that_validates(example: str, tmp_path: Path) -> None:
    """What the examples' READMEs promise: `runner expand` shows the whole team, as a file
    `runner validate` accepts (written beside the example, so its agents' paths still hold)."""
    src = ROOT / "examples" / example / "workflow.yaml"
    out = tmp_path / "expanded.yaml"
    p = subprocess.run([RUNNER, "expand", str(src), "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load(out.read_text())
    assert not _uses_left(data) and [s["step_id"] for s in data["steps"] if "workflow" in s]
    v = subprocess.run([RUNNER, "validate", str(out)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr


def test_nested_runs_share_the_callers_agent_processes() -> None:
    """A caller whose own steps need no agent (its one step is a ``uses:``, as in the
    examples) still hands its children one pool: three nested runs, one agent process —
    not a process started and stopped per nested run (2-3 s each on a loaded machine)."""
    p = subprocess.run(
        [
            RUNNER,
            "run",
            str(ROOT / "tests/fixtures/patterns/pid-caller.yaml"),
            "--store",
            "memory://",
            "-q",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    pids = json.loads(p.stdout)["outputs"]["pids"]
    assert len(pids) == 3 and len(set(pids)) == 1, pids


@pytest.mark.parametrize("example", ["assembly-line", "hierarchical", "hub-and-spoke", "peer-to-peer"])
def test_each_example_readme_shows_its_expanded_graph(example: str) -> None:
    """The Mermaid picture in the README is what `runner graph --expand` draws today."""
    p = subprocess.run(
        [RUNNER, "graph", "--expand", str(ROOT / "examples" / example / "workflow.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    readme = (ROOT / "examples" / example / "README.md").read_text()
    assert f"```mermaid\n{p.stdout.strip()}\n```" in readme


def test_preflight_starts_the_agents_only_callees_use(tmp_path: Path) -> None:
    """SPEC §2: before the first step, the run connects to every agent it can use — those
    its nested runs use too, in parallel, rather than one nested preflight after another.
    An agent that cannot start is reported before the first step, and the run goes on."""
    events = tmp_path / "events.jsonl"
    p = subprocess.run(
        [
            RUNNER,
            "run",
            str(ROOT / "tests/fixtures/patterns/eager-caller.yaml"),
            "--store",
            "memory://",
            "-q",
            "--output",
            "json",
            "--events",
            str(events),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert isinstance(json.loads(p.stdout)["outputs"]["pid"], int)
    kinds = [(e["type"], e.get("agent_id")) for e in map(json.loads, events.read_text().splitlines())]
    assert kinds.index(("agent_unavailable", "ghost")) < kinds.index(("step_started", None))
