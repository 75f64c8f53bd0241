"""Black-box audit of ``runner expand``, ``workflow:`` and ``runner graph --expand``.

The real ``runner`` CLI in subprocesses, as a demanding user drives it: an expansion is a
fixed point, keeps every key and every awkward YAML value exactly, runs like the file it
came from; bad input is exit 2 with a position (or the argument's name) and leaves no
file behind; Mermaid is well-formed and DOT is accepted by Graphviz.
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.load import load_workflow
from runner.load.dump import to_yaml, workflow_data
from runner.load.yaml import load_yaml
from runner.model import Workflow

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")
USES = ROOT / "tests/fixtures/uses"
TEXT_AGENT = str(ROOT / "examples/agents/text_agent.py")
FIXTURES = ["main.yaml", "inline.yaml", "two_level.yaml"]
POSITION = re.compile(r"^\S+:\d+:\d+: ", re.M)


def _runner(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def _expand(src: Path, out: Path) -> str:
    p = _runner("expand", str(src), "--output", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and "Traceback" not in p.stderr
    return out.read_text(encoding="utf-8")


def _body(text: str) -> str:
    """The expansion without its first line (a comment naming the file it was made from)."""
    first, _, rest = text.partition("\n")
    assert first.startswith("# runner expand ")
    return rest


def _run(path: Path) -> dict[str, Any]:
    p = _runner("run", str(path), "--store", "memory://", "--output", "json", "-q")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    return {
        "status": out["status"],
        "outputs": out["outputs"],
        "steps": {k: (v["status"], v["result"], v["attempts"]) for k, v in out["steps"].items()},
    }


# ------------------------------------------------------------------------- fixed point


@pytest.mark.parametrize("name", FIXTURES)
def test_expanding_an_expansion_changes_nothing(name: str, tmp_path: Path) -> None:
    once = _expand(USES / name, tmp_path / "once.yaml")
    twice = _expand(tmp_path / "once.yaml", tmp_path / "twice.yaml")
    assert _body(twice) == _body(once)
    assert "uses:" not in _body(once)
    p = _runner("validate", str(tmp_path / "once.yaml"))
    assert p.returncode == 0, p.stderr
    # stdout and --output in the same directory are the same text
    beside = _runner("expand", str(USES / name))
    assert beside.returncode == 0, beside.stderr
    here = _runner("expand", str(USES / name), "--output", str(USES / name) + ".tmp-expand")
    try:
        assert here.returncode == 0, here.stderr
        assert (USES / (name + ".tmp-expand")).read_text(encoding="utf-8") == beside.stdout
    finally:
        (USES / (name + ".tmp-expand")).unlink(missing_ok=True)


# ------------------------------------------------------------- awkward YAML values

AWKWARD = [
    "123", "1.5", "007", "-0", "+1", "1_000", "0o17", "0x1F", "0b101", "1e3", "12e03", "1.0e+3", ".inf", "-.inf",
    ".nan", "+.5", "1:20", "190:20:30", "true", "False", "yes", "no", "NO", "on", "off", "OFF", "y", "n", "~",
    "null", "Null", "2024-01-01", "2024-01-01T10:00:00Z", "=", "<<", "", " leading", "trailing ", "a, b", "[a, b]",
    "{a: b}", "a #b", "#c", "- x", "? q", ": c", "a: b", "@at", "`bt", "%pct", "!bang", "&amp", "*star", "|pipe",
    ">gt", "'quote", '"dq', "multi\nline", "multi\nline\n", "ends\n\n", "\nstarts", "  indented\nx", "sp  \nb",
    "x\n ", "tab\tsep", "héllo 日本 🎉", "line\u2028sep", "nel\x85x", "bell\x07", "bom\ufeff", "crlf\r\nx",
    "{{ inputs.v }}", "{% if true %}x{% endif %}", "{# c #}",
]  # fmt: skip
AWKWARD_KEYS: dict[str, Any] = {
    "on": 1, "yes": "yes", "no": False, "y": "y", "null": None, "~": "~", "a: b": 1, "#h": 2, "- d": 3, "": "e",
    "123": "numkey", "true": "boolkey", "2024-01-01": "datekey", "ü": "ü", "ints": [0, -1, 2**62, 10**30],
    "floats": [1.0, -0.0, 1.25e20, 1.5e-7, 3.14159], "bools": [True, False], "nulls": [None],
    "nested": {"a": [{"b": ["c", {"d": None}]}]}, "empty_list": [], "empty_map": {}, "long": ["x" * 30] * 5,
}  # fmt: skip


def _json(value: Any) -> str:
    """``value`` as YAML that holds every string exactly: JSON (which is YAML) with the
    characters YAML reads as line breaks escaped (PyYAML's own dump loses NEL)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _awkward_args() -> dict[str, Any]:
    return {**{f"k{i}": v for i, v in enumerate(AWKWARD)}, **AWKWARD_KEYS}


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not True, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def test_awkward_yaml_values_round_trip_exactly(tmp_path: Path) -> None:
    args = _awkward_args()
    (tmp_path / "sub").mkdir()
    callee = {
        "name": "callee",
        "inputs": {"v": {}},
        "agents": [{"id": "t", "command": "python", "args": ["x.py"]}],
        "steps": [{"step_id": "s", "assigned_agent_id": "t", "tool_to_call": "echo", "tool_arguments": args}],
        "outputs": {**args, "v": "{{ inputs.v }}"},
    }
    (tmp_path / "sub/callee.yaml").write_text(_json(callee))
    main = {
        "name": "special",
        "inputs": {"v": {"default": "d"}},
        "agents": [{"id": "t", "command": "python", "args": ["x.py"]}],
        "steps": [
            {"step_id": "a", "assigned_agent_id": "t", "tool_to_call": "echo", "tool_arguments": args},
            {"step_id": "b", "uses": "./sub/callee.yaml", "with": {"v": args}},
        ],
        "outputs": args,
    }
    (tmp_path / "main.yaml").write_text(_json(main))
    once = _expand(tmp_path / "main.yaml", tmp_path / "out.yaml")
    assert _body(_expand(tmp_path / "out.yaml", tmp_path / "out2.yaml")) == _body(once)
    a, b = load_workflow(str(tmp_path / "main.yaml")), load_workflow(str(tmp_path / "out.yaml"))
    da, db = workflow_data(a), workflow_data(b)
    for got in (db["steps"][0]["tool_arguments"], db["steps"][1]["with"]["v"], db["outputs"]):
        bad = {k: (args[k], got.get(k, "<missing>")) for k in args if not _same(args[k], got.get(k, object()))}
        assert not bad
    body = db["steps"][1]["workflow"]
    assert _same(body["steps"][0]["tool_arguments"], args)
    assert _same(workflow_data(b.children["b"])["outputs"], workflow_data(a.children["b"])["outputs"])
    assert da["steps"][0] == db["steps"][0]


# ------------------------------------------------------------------ every schema key

ALL_KEYS_CALLEE = """\
# a callee with every key of the schema
name: all-keys
description: "every key: here"
inputs:
  n: {type: integer, default: 3}
  flag: {type: boolean}
agents:
  - id: s1
    name: Stdio One
    role: worker
    capabilities: [a, b]
    description: a stdio agent
    transport: stdio
    command: python
    args: [agent.py, 3, true, "--x={{ inputs.n }}", "./rel/path"]
    env: {TOKEN: "{{ secrets.TOKEN }}", PLAIN: "yes"}
    cwd: ./work
    max_concurrency: 2
    required: false
    timeout: 1.5
    model_type: llm
    model_version: "1.0"
    group: g
  - id: h1
    transport: http
    url: http://127.0.0.1:1/mcp
    headers: {Authorization: "Bearer {{ secrets.API }}"}
    required: true
    timeout: 90s
  - {id: p1, transport: pull, role: puller}
  - {id: abs, command: /bin/true, cwd: /tmp}
  - {id: home, command: /bin/true, cwd: ~/somewhere}
concurrency: 3
timeout: 1h
steps:
  - step_id: a
    description: first
    assigned_role: worker
    required_capabilities: [a]
    fallback_agents: [h1, p1]
    tool_to_call: t
    tool_arguments: "{{ inputs }}"
    if: false
    retry: {max_attempts: 3, delay: 2s, backoff: 2, max_delay: 1m, jitter: 0.5}
    timeout: 0.25
    continue_on_error: true
  - step_id: b
    depends_on: a
    assigned_agent_id: s1
    for_each: "{{ range(inputs.n) | list }}"
    max_parallel: 2
    tool_to_call: t
    tool_arguments: {i: "{{ item }}", idx: "{{ index }}"}
    if: "{{ inputs.flag }}"
  - step_id: c
    depends_on: [b]
    for_each: []
    assigned_agent_id: p1
    tool_to_call: t
  - step_id: d
    if: true
    assigned_agent_id: s1
    tool_to_call: t
    timeout: 1500ms
  - step_id: e
    assigned_agent_id: s1
    with: {x: "{{ inputs.n }}"}
    workflow:
      inputs: {x: {}}
      steps:
        - {step_id: f, assigned_agent_id: s1, tool_to_call: t, tool_arguments: {x: "{{ inputs.x }}"}}
      outputs: {x: "{{ steps.f.result }}"}
finally:
  - step_id: z
    assigned_agent_id: s1
    tool_to_call: cleanup
    retry: {max_attempts: 2}
outputs:
  a: "{{ steps.a.result }}"
  n: 3
  lst: [1, "{{ inputs.n }}"]
"""


def _canonical(wf: Workflow) -> dict[str, Any]:
    """``wf``'s data in the model's own spellings (without the text it was read from)."""
    return workflow_data(dataclasses.replace(wf, source_text=None))


def test_every_key_of_a_callee_survives_inlining(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/callee.yaml").write_text(ALL_KEYS_CALLEE)
    (tmp_path / "main.yaml").write_text(
        "name: main\nconcurrency: 4\ntimeout: 10m\nruns_on: [gpu, linux]\nagent_modifiable: true\n"
        "steps:\n  - step_id: call\n    uses: ./sub/callee.yaml\n    with: {flag: true}\n"
        "    retry: {max_attempts: 2, delay: 500ms}\n    timeout: 2m\n    continue_on_error: true\n"
    )
    out = tmp_path / "out.yaml"
    _expand(tmp_path / "main.yaml", out)
    assert _runner("validate", str(out)).returncode == 0
    a, b = load_workflow(str(tmp_path / "main.yaml")), load_workflow(str(out))
    top_a, top_b = workflow_data(a), workflow_data(b)
    body = top_b["steps"][0].pop("workflow")
    assert top_a["steps"][0].pop("uses") == "./sub/callee.yaml"
    assert top_a == top_b  # the caller's own keys, runs_on and agent_modifiable included
    # compared as the models' canonical data: the callee file spells its literals as written
    # (if: false, timeout: 0.25), the inline body of a loaded model has no text of its own
    want, got = _canonical(a.children["call"]), _canonical(b.children["call"])
    # a nested run goes where its caller goes: a body holds neither of these
    want.pop("runs_on", None), want.pop("agent_modifiable", None)
    assert "runs_on" not in body and "agent_modifiable" not in body
    # the relative cwd is rewritten to the same directory; absolute and ~ ones are kept
    cwd = {x["id"]: x.get("cwd") for x in got["agents"]}
    assert cwd == {"s1": "sub/work", "h1": None, "p1": None, "abs": "/tmp", "home": "~/somewhere"}
    assert (tmp_path / cwd["s1"]).resolve() == (tmp_path / "sub/work").resolve()
    for x in want["agents"]:
        x.pop("cwd", None)
    for x in got["agents"]:
        x.pop("cwd", None)
    assert want == got


# -------------------------------------------------------------- runs identically


def test_awkward_literals_run_to_the_same_outputs_through_an_expansion(tmp_path: Path) -> None:
    strings = [v for v in AWKWARD if "{" not in v and "#" not in v]
    (tmp_path / "callee.yaml").write_text(
        _json(
            {
                "name": "joiner",
                "inputs": {"parts": {"type": "array"}},
                "agents": [{"id": "t", "command": "python", "args": [TEXT_AGENT]}],
                "steps": [
                    {
                        "step_id": "j",
                        "assigned_agent_id": "t",
                        "tool_to_call": "join",
                        "tool_arguments": {"parts": "{{ inputs.parts }}", "sep": "|"},
                    },
                ],  # fmt: skip
                "outputs": {"joined": "{{ steps.j.result }}", "literal": strings, "keys": AWKWARD_KEYS},
            }
        )
    )
    (tmp_path / "main.yaml").write_text(
        _json(
            {
                "name": "main",
                "steps": [{"step_id": "call", "uses": "./callee.yaml", "with": {"parts": strings}}],
                "outputs": {"all": "{{ steps.call.result }}", "literal": strings},
            }
        )
    )
    _expand(tmp_path / "main.yaml", tmp_path / "out.yaml")
    before, after = _run(tmp_path / "main.yaml"), _run(tmp_path / "out.yaml")
    assert before == after
    assert before["outputs"]["all"]["joined"] == "|".join(strings)
    assert before["outputs"]["literal"] == strings


# ---------------------------------------------------------------------- bad input

RECURSIVE = {
    "a.yaml": "name: a\nsteps:\n  - step_id: x\n    uses: ./b.yaml\n",
    "b.yaml": "name: b\nsteps:\n  - step_id: y\n    workflow:\n      steps:\n        - step_id: z\n"
    "          uses: ./a.yaml\n",
}


@pytest.mark.parametrize(
    ("files", "target", "where"),
    [
        ({}, "missing.yaml", "missing.yaml"),
        ({"bad.yaml": "name: x\nsteps:\n  - step_id: a\n    tool_to_call: [unclosed\n"}, "bad.yaml", "bad.yaml:5:1"),
        (RECURSIVE, "a.yaml", "b.yaml:7:17"),
        ({"p.yaml": "name: p\nsteps:\n  - step_id: a\n    uses: no-such-pattern\n"}, "p.yaml", "p.yaml:4:11"),
        ({"f.yaml": "name: f\nsteps:\n  - step_id: a\n    uses: ./nofile.yaml\n"}, "f.yaml", "f.yaml:4:11"),
        ({"e.yaml": ""}, "e.yaml", "e.yaml:1:1"),
    ],
)
def test_bad_input_is_exit_2_with_a_position_and_writes_nothing(
    files: dict[str, str], target: str, where: str, tmp_path: Path
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    keep = tmp_path / "keep.yaml"
    keep.write_text("kept\n")
    for extra in ([], ["--output", str(tmp_path / "new.yaml")], ["--output", str(keep)]):
        p = _runner("expand", target, *extra, cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        assert where in p.stderr and "Traceback" not in p.stderr and p.stdout == ""
        assert not (tmp_path / "new.yaml").exists() and keep.read_text() == "kept\n"
    if target != "missing.yaml":
        g = _runner("graph", target, "--expand", cwd=tmp_path)
        assert g.returncode == 2 and where in g.stderr and g.stdout == ""


def test_a_directory_is_exit_2(tmp_path: Path) -> None:
    p = _runner("expand", str(tmp_path))
    assert p.returncode == 2 and "is a directory" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("where", ["no/such/dir/out.yaml", "afile/out.yaml", "adir"])
def test_an_output_that_cannot_be_written_is_exit_2_naming_the_option(where: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    p = _runner("expand", str(USES / "main.yaml"), "--output", str(tmp_path / where))
    assert p.returncode == 2, p.stderr
    assert "--output" in p.stderr and "internal error" not in p.stderr and "Traceback" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["adir", "afile"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_output_replaces_a_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    out.write_text("x" * 100_000)
    out.chmod(0o640)
    _expand(USES / "main.yaml", out)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.yaml"]
    assert out.stat().st_mode & 0o777 == 0o640
    assert "x" * 100 not in out.read_text()


def test_the_header_comment_survives_a_file_name_with_a_line_break(tmp_path: Path) -> None:
    src = tmp_path / "odd\nname: evil.yaml"
    src.write_text(
        "name: shout\nagents: [{id: t, command: python, args: [x.py]}]\nsteps: [{step_id: a, assigned_agent_id: t}]\n"
    )
    p = _runner("expand", str(src))
    assert p.returncode == 0, p.stderr
    assert yaml.safe_load(p.stdout)["name"] == "shout"
    out = tmp_path / "out.yaml"
    out.write_text(p.stdout)
    assert _runner("validate", str(out)).returncode == 0


def test_help_describes_what_it_does() -> None:
    p = _runner("expand", "--help")
    assert p.returncode == 0
    for words in ("uses:", "--output", "Exit 0, or 2"):
        assert words in p.stdout
    g = _runner("graph", "--help")
    assert g.returncode == 0 and "--expand" in g.stdout and "mermaid|dot" in g.stdout


# -------------------------------------------------------------------------- graph

GRAPH = """\
name: g
agents:
  - {id: x, command: python, args: [x.py]}
steps:
  - step_id: a
    assigned_agent_id: x
    tool_to_call: 'to"ol #35; <b>x</b> & \\\\ {y} end'
  - step_id: end
    depends_on: [a]
    uses: './we"ird [x] #1.yaml'
    with: {v: 1}
  - step_id: subgraph
    depends_on: [end]
    workflow:
      name: inner
      steps:
        - {step_id: graph, assigned_agent_id: x, tool_to_call: "x\\\\ny"}
        - {step_id: node, depends_on: [graph], assigned_agent_id: x, tool_to_call: "multi\\nline"}
      finally:
        - {step_id: fin, assigned_agent_id: x, tool_to_call: clean}
finally:
  - {step_id: f, assigned_agent_id: x, tool_to_call: done}
"""
CALLEE = """\
name: weird
inputs: {v: {}}
agents: [{id: x, command: python, args: [x.py]}]
steps:
  - {step_id: s, assigned_agent_id: x, tool_to_call: echo}
  - {step_id: t, assigned_agent_id: x, tool_to_call: echo}
"""


def _graph_files(tmp_path: Path) -> Path:
    (tmp_path / 'we"ird [x] #1.yaml').write_text(CALLEE)
    (tmp_path / "g.yaml").write_text(GRAPH)
    return tmp_path / "g.yaml"


_NODE = re.compile(r'^\s*(s\d+)(\["|\(\[")(.*?)("\]|"\]\))$')
_EDGE = re.compile(r"^\s*(s\d+) (-->|-\.->) (s\d+)$")


def _mermaid(text: str) -> tuple[dict[str, str], list[tuple[str, str]], int]:
    """Nodes (id → label), edges and the number of subgraphs of a flowchart; fails on any
    line that is not one of those, on unbalanced subgraph blocks and on a label that holds
    what Mermaid would read as markup, an entity or the end of the string."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    depth = groups = 0
    for line in lines[1:]:
        if m := re.match(r'^\s*subgraph (g\d+) \["(.*)"\]$', line):
            depth, groups, label = depth + 1, groups + 1, m.group(2)
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0, line
            continue
        elif m := _NODE.match(line):
            assert m.group(1) not in nodes
            nodes[m.group(1)], label = m.group(3), m.group(3)
        elif m := _EDGE.match(line):
            edges.append((m.group(1), m.group(3)))
            continue
        else:
            raise AssertionError(f"not Mermaid this checker knows: {line!r}")
        bare = re.sub(r"#(quot|\d+);|<br/>", "", label)
        assert not re.search(r'["<>#&]', bare), line
    assert depth == 0
    assert all(a in nodes and b in nodes for a, b in edges)
    return nodes, edges, groups


def _decode(label: str) -> str:
    label = label.replace("<br/>", "\n").replace("#quot;", '"')
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label)


def test_mermaid_is_well_formed_and_labels_read_back_as_written(tmp_path: Path) -> None:
    g = _graph_files(tmp_path)
    p = _runner("graph", str(g))
    assert p.returncode == 0, p.stderr
    nodes, edges, groups = _mermaid(p.stdout)
    labels = sorted(_decode(v) for v in nodes.values())
    assert groups == 0 and len(nodes) == 4 and len(edges) == 3
    assert 'a\nto"ol #35; <b>x</b> & \\\\ {y} end' in labels
    assert 'end\nuses ./we"ird [x] #1.yaml' in labels
    e = _runner("graph", str(g), "--expand")
    assert e.returncode == 0, e.stderr
    nodes, edges, groups = _mermaid(e.stdout)
    assert groups == 2
    got = sorted(_decode(v).split("\n")[0] for v in nodes.values())
    assert got == ["a", "end/s", "end/t", "f", "subgraph/fin", "subgraph/graph", "subgraph/node"]
    by = {_decode(v).split("\n")[0]: k for k, v in nodes.items()}
    # into a call: its first steps; out of it: its last (a finally ends the nested run)
    assert (by["a"], by["end/s"]) in edges and (by["a"], by["end/t"]) in edges
    assert (by["end/s"], by["subgraph/graph"]) in edges and (by["subgraph/fin"], by["f"]) in edges


@pytest.mark.parametrize("expand", [[], ["--expand"]])
def test_dot_of_awkward_names_is_accepted_by_graphviz(expand: list[str], tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("graphviz is not installed")
    g = _graph_files(tmp_path)
    p = _runner("graph", str(g), "--format", "dot", *expand)
    assert p.returncode == 0, p.stderr
    svg = subprocess.run(["dot", "-Tsvg"], input=p.stdout, capture_output=True, text=True, timeout=60)
    assert svg.returncode == 0 and svg.stderr == "" and "<svg" in svg.stdout
    plain = subprocess.run(["dot", "-Tplain"], input=p.stdout, capture_output=True, text=True, timeout=60)
    names = sorted(line.split()[1].strip('"') for line in plain.stdout.splitlines() if line.startswith("node "))
    if expand:
        assert names == ["a", "end/s", "end/t", "f", "subgraph/fin", "subgraph/graph", "subgraph/node"]
        assert p.stdout.count('subgraph "cluster_') == 2
    else:
        assert names == ["a", "end", "f", "subgraph"] and "cluster_" not in p.stdout


@pytest.mark.parametrize("name", ["main.yaml", "inline.yaml", "two_level.yaml"])
def test_graph_of_an_expansion_matches_the_graph_of_its_source(name: str, tmp_path: Path) -> None:
    """``workflow:`` and ``uses:`` draw alike once expanded (the collapsed label says which)."""
    out = tmp_path / name
    _expand(USES / name, out)
    for fmt in ("mermaid", "dot"):
        a = _runner("graph", str(USES / name), "--expand", "--format", fmt)
        b = _runner("graph", str(out), "--expand", "--format", fmt)
        assert a.returncode == b.returncode == 0
        strip = re.compile(r'(uses|workflow)( [^"<]+)?')
        assert strip.sub("CALL", a.stdout) == strip.sub("CALL", b.stdout)
    nodes, _, groups = _mermaid(_runner("graph", str(USES / name), "--expand").stdout)
    assert groups >= 1 and any("/" in _decode(v).split("\n")[0] for v in nodes.values())


# ------------------------------------------------------------- any string, any key


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.text(max_size=12), st.one_of(st.text(), st.lists(st.text(max_size=8), max_size=3)), max_size=4)
)
def test_any_text_is_written_so_the_loader_reads_it_back_exactly(value: dict[str, Any]) -> None:
    """What ``runner expand`` writes for a string (NEL, LS, CR, BOM, trailing spaces,
    leading blanks in a block...) is read back by the runner's own loader as that string."""
    text = to_yaml({"v": value})
    assert _same(load_yaml(text, "<expand>")[0], {"v": value})


def test_output_dash_is_stdout(tmp_path: Path) -> None:
    """`--output -` is the usual spelling of stdout: the same text, and no file named '-'."""
    plain = _runner("expand", str(USES / "main.yaml"), cwd=tmp_path)
    dash = _runner("expand", str(USES / "main.yaml"), "--output", "-", cwd=tmp_path)
    assert plain.returncode == dash.returncode == 0, dash.stderr
    assert dash.stdout == plain.stdout and dash.stdout.startswith("# runner expand main.yaml")
    assert not (tmp_path / "-").exists()
