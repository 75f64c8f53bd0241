"""Validation: one fixture per kind of problem, exact positions, order, output formats.

Ids: ``validate:positions``, ``validate:all-at-once``, ``validate:relevance-order``,
``validate:formats``, ``validate:agents``, ``validate:templates``, ``validate:patterns``,
``validate:paths``, ``validate:no-mcp``, ``dag:cycles``, ``dag:layers``, ``dag:ancestors``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.dag import CycleError, ancestors, find_cycles, topo_layers
from runner.errors import Problem
from runner.load.validation import (
    format_problems,
    has_errors,
    validate_file,
    validate_paths,
    validate_text,
)
from runner.model import AgentSpec, TransportKind
from runner.model.problems import RANK_INPUTS, RANK_REFERENCE, RANK_SCHEMA, RANK_STRUCTURE, RANK_YAML

FIXTURES = Path(__file__).parent / "fixtures"
VALID = FIXTURES / "valid"
INVALID = FIXTURES / "invalid"

# fixture, then for its FIRST problem: line, col, JSON path, a fragment of the message
CASES = [
    ("yaml_syntax.yaml", 4, 30, "$", "invalid YAML: did not find expected ',' or ']'"),
    ("python_tag.yaml", 5, 21, "$.steps[0].tool_arguments", "unsupported YAML tag '!!python/object/apply:os.system'"),
    ("duplicate_key.yaml", 5, 5, "$.steps[0].tool_to_call", "duplicate key 'tool_to_call'"),
    ("billion_laughs.yaml", 6, 4, "$.f[0]", "YAML aliases expand to too many nodes"),
    ("unknown_key.yaml", 8, 5, "$.steps[0].dependson", "unknown key 'dependson' (did you mean 'depends_on'?)"),
    ("bad_type.yaml", 2, 14, "$.concurrency", 'expected integer, got string "many"'),
    ("bad_duration.yaml", 5, 37, "$.steps[0].retry.delay", 'invalid duration "10 minutes"'),
    ("missing_steps.yaml", 1, 1, "$", "missing required key 'steps'"),
    ("bad_name.yaml", 1, 7, "$.name", "invalid name 'Release Notes'"),
    ("agent_transport.yaml", 3, 5, "$.agents[0]", "agent 'web' with transport 'http' needs 'url'"),
    ("duplicate_step_id.yaml", 6, 14, "$.finally[0].step_id", "duplicate step id 'a' (first defined on line 3)"),
    ("unknown_depends_on.yaml", 6, 25, "$.steps[1].depends_on[1]", "unknown step 'fecth' in depends_on (did you mean 'fetch'?)"),
    ("cycle.yaml", 4, 18, "$.steps[0].depends_on[0]", "dependency cycle: a -> c -> b -> a"),
    ("self_reference.yaml", 4, 18, "$.steps[0].depends_on[0]", "dependency cycle: a -> a"),
    ("finally_dependency.yaml", 4, 18, "$.steps[0].depends_on[0]", "cannot depend on finally step 'cleanup'"),
    ("tool_and_uses.yaml", 5, 5, "$.steps[0].uses", "either calls a tool (tool_to_call) or uses a pattern (uses)"),
    ("unknown_agent.yaml", 8, 24, "$.steps[0].assigned_agent_id", "unknown agent 'writter'"),
    ("unknown_role.yaml", 9, 20, "$.steps[0].assigned_role", "no agent has role 'reviewer'"),
    ("template_syntax.yaml", 6, 13, "$.steps[0].tool_arguments.text", "template syntax error"),
    ("template_abuse.yaml", 6, 12, "$.steps[0].tool_arguments.cmd", "names starting with '_' are not allowed"),
    ("non_ancestor.yaml", 7, 25, "$.steps[1].tool_arguments.x",
     "template references steps.a but step 'b' does not depend on 'a' (add it to depends_on)"),
    ("unknown_root.yaml", 5, 25, "$.steps[0].tool_arguments.x", "unknown name 'input' in template (did you mean 'inputs'?)"),
    ("item_outside.yaml", 5, 25, "$.steps[0].tool_arguments.x", "'item' is only defined in a step with for_each"),
    ("undeclared_input.yaml", 7, 25, "$.steps[0].tool_arguments.x", "undeclared input 'rpeo' (did you mean 'repo'?)"),
    ("bad_default.yaml", 3, 47, "$.inputs.count.default", "default of input 'count' does not match its schema: 0 is less than the minimum of 1"),
    ("unknown_pattern.yaml", 4, 11, "$.steps[0].uses", "unknown pattern 'no-such-pattern'"),
    ("pattern_inputs.yaml", 5, 5, "$.steps[0].with", "'./sub.yaml' needs input 'task' (it has no default)"),
    ("not_a_mapping.yaml", 1, 1, "$", "a workflow must be a mapping with name and steps, not array"),
    ("agents_only_bad.yaml", 2, 5, "$.agents[0]", "agent 'a' with transport 'stdio' needs 'command'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "line", "col", "path", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_each_problem_kind_is_positioned(name: str, line: int, col: int, path: str, fragment: str) -> None:
    """``validate:positions``: the most specific node at fault (key or value)."""
    problems = validate_paths([INVALID / name])
    assert problems, name
    first = problems[0]
    assert fragment in first.message
    assert (first.line, first.col, first.path) == (line, col, path)
    assert first.file == str(INVALID / name) and first.severity == "error"


def test_every_invalid_fixture_has_a_case() -> None:
    covered = {c[0] for c in CASES} | {"sub.yaml", "multiple.yaml"}  # sub.yaml: a valid callee
    assert {p.name for p in INVALID.glob("*.yaml")} == covered


def _find(problems: list[Problem], fragment: str) -> Problem:
    hits = [p for p in problems if fragment in p.message]
    assert hits, [p.message for p in problems]
    return hits[0]


def test_secondary_problems_of_fixtures() -> None:
    ps = validate_file(INVALID / "agent_transport.yaml")
    p = _find(ps, "'command' does not apply to transport 'http'")
    assert (p.line, p.col, p.path) == (5, 5, "$.agents[0].command")  # the key itself
    ps = validate_file(INVALID / "unknown_agent.yaml")
    p = _find(ps, "unknown agent 'ghost' in fallback_agents")
    assert (p.line, p.col, p.path) == (9, 31, "$.steps[0].fallback_agents[1]")
    assert "did you mean 'writer'" in ps[0].message
    ps = validate_file(INVALID / "unknown_role.yaml")
    p = _find(ps, "no agent with role 'writer' has capability 'translate'")
    assert (p.line, p.col, p.path) == (13, 40, "$.steps[1].required_capabilities[1]")
    ps = validate_file(INVALID / "pattern_inputs.yaml")
    p = _find(ps, "has no input 'tsk' (did you mean 'task'?)")
    assert (p.line, p.col, p.path) == (5, 12, "$.steps[0].with.tsk")
    p = _find(ps, "input 'parts' of './sub.yaml' does not match its schema")
    assert (p.line, p.col, p.rank) == (5, 31, RANK_INPUTS)
    ps = validate_file(INVALID / "self_reference.yaml")
    assert _find(ps, "cannot use its own result").path == "$.steps[0].tool_arguments.x"
    ps = validate_file(INVALID / "template_abuse.yaml")
    assert [p.message.split(":")[0] for p in ps] == [
        "template accesses '__subclasses__'", "template accesses '__mro__'", "template accesses '__class__'"]  # fmt: skip


def test_all_problems_at_once_in_relevance_order() -> None:
    """``validate:all-at-once`` and ``validate:relevance-order``."""
    ps = validate_file(INVALID / "multiple.yaml")
    got = [(p.rank, p.line, p.col, p.path) for p in ps]
    assert got == [
        (RANK_SCHEMA, 10, 5, "$.steps[1].colour"),  # shallower schema error first
        (RANK_SCHEMA, 9, 14, "$.steps[1].timeout"),
        (RANK_STRUCTURE, 7, 18, "$.steps[1].depends_on[0]"),
        (RANK_REFERENCE, 5, 25, "$.steps[0].tool_arguments.x"),
    ]
    assert ps[0].message == "unknown key 'colour'"
    assert [p.rank for p in ps] == sorted(p.rank for p in ps)
    assert RANK_YAML < RANK_SCHEMA < RANK_STRUCTURE < RANK_REFERENCE < RANK_INPUTS


def test_valid_fixtures_have_no_problems() -> None:
    for f in sorted(VALID.glob("*.yaml")):
        assert validate_file(f) == [], f
    # a directory: agents.yaml is recognised as an agents file and is valid too
    assert validate_paths([VALID]) == []


def test_agents_file_detection_and_skipping(tmp_path: Path) -> None:
    """``validate:paths``."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inputs.yml").write_text("repo: .\nmax_commits: 3\n")
    (tmp_path / "agents.yaml").write_text((VALID / "agents.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("name: x\nstep: []\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "junk.yaml").write_text("{{{")
    (tmp_path / "notes.txt").write_text("not yaml")
    ps = validate_paths([tmp_path])
    assert [(Path(p.file).name, p.severity) for p in ps] == [
        ("bad.yaml", "error"), ("bad.yaml", "error"), ("inputs.yml", "info")]  # fmt: skip
    assert {p.message for p in ps if p.severity == "error"} == {
        "missing required key 'steps'", "unknown key 'step' (did you mean 'steps'?)"}  # fmt: skip
    assert not has_errors([p for p in ps if p.severity == "info"])
    # named explicitly, a non-workflow file is checked, not skipped
    explicit = validate_paths([tmp_path / "sub" / "inputs.yml"])
    assert has_errors(explicit) and any("unknown key 'repo'" in p.message for p in explicit)
    missing = validate_paths([tmp_path / "nope.yaml"])
    assert [p.message.startswith("cannot read workflow file") for p in missing] == [True]


def test_registry_resolves_agents_roles_and_capabilities() -> None:
    """``validate:agents``: the --agents registry counts as declared."""
    text = (INVALID / "unknown_role.yaml").read_text()
    assert len(validate_text(text)) == 2
    registry = [
        AgentSpec(id="rev", role="reviewer"),
        AgentSpec(id="tr", role="writer", capabilities=("summarize", "translate"), transport=TransportKind.PULL),
    ]
    assert validate_text(text, registry=registry) == []


def test_capabilities_without_role() -> None:
    text = """name: caps
agents:
  - {id: a, command: x, capabilities: [read]}
  - {id: b, command: x, capabilities: [write]}
steps:
  - step_id: s
    required_capabilities: [read, write]
    tool_to_call: t
"""
    [p] = validate_text(text)
    assert p.message == "no agent has all of the capabilities ['read', 'write']"
    assert p.path == "$.steps[0].required_capabilities"


def test_patterns_leave_agents_to_their_callers(tmp_path: Path) -> None:
    text = "name: p\ninputs: {task: {type: string}}\nsteps:\n  - {step_id: s, assigned_role: coordinator, tool_to_call: t}\n"
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "p.yaml").write_text(text)
    (tmp_path / "w.yaml").write_text(text)
    assert validate_paths([tmp_path / "patterns"]) == []
    assert "no agent has role 'coordinator'" in validate_paths([tmp_path / "w.yaml"])[0].message


def test_template_scopes() -> None:
    """``validate:templates``: item/index only in for_each steps; finally and outputs see all."""
    text = """name: scopes
inputs: {n: {type: integer, default: 1}}
agents:
  - {id: a, command: "{{ inputs.n }}", env: {K: "{{ secrets.K }}"}, args: ["{{ steps.x.result }}"]}
steps:
  - step_id: x
    for_each: "{{ [item] }}"
    tool_to_call: t
    tool_arguments: {i: "{{ item }}", j: "{{ index }}", w: "{{ workflow.name }}", r: "{{ run.id }}"}
  - step_id: y
    depends_on: [x]
    tool_to_call: t
    tool_arguments: {v: "{{ steps.x.result }}", z: "{{ steps['x'].status }}"}
    if: "{{ inputs['n'] > 0 and inputs.get('n') }}"
finally:
  - step_id: f
    tool_to_call: t
    tool_arguments: {a: "{{ steps.y.result }}", b: "{{ steps.g.result }}"}
  - step_id: g
    depends_on: [f]
    tool_to_call: t
    tool_arguments: {a: "{{ steps.f.result }}", c: "{{ steps.nope }}"}
outputs:
  all: "{{ steps.g.result }}"
  bad: "{{ steps.x.result[secrets.K] | frobnicate }}"
"""
    got = [(p.path, p.message) for p in validate_text(text)]
    assert got == [
        ("$.agents[0].args[0]", "agent settings cannot use step results (agents start before any step runs)"),
        ("$.steps[0].for_each", "'item' is only defined in a step with for_each (used in for_each itself)"),
        (
            "$.finally[0].tool_arguments.b",
            "template references steps.g but step 'f' does not depend on 'g' (add it to depends_on)",
        ),
        ("$.finally[1].tool_arguments.c", "template references unknown step 'nope'"),
        ("$.outputs.bad", "template uses unknown filter 'frobnicate'"),
    ]


def test_if_warnings_do_not_fail_validation() -> None:
    text = "name: w\nagents: [{id: a, command: x}]\nsteps:\n  - {step_id: s, tool_to_call: t, if: 'false', max_parallel: 2}\n"
    ps = validate_text(text)
    assert [p.severity for p in ps] == ["warning", "warning"] and not has_errors(ps)
    assert "not a template" in ps[0].message and "max_parallel" in ps[1].message


def test_a_duplicate_steps_own_references_are_still_checked() -> None:
    text = (
        "name: w\nagents: [{id: a, command: x}]\nsteps:\n"
        "  - {step_id: s, tool_to_call: t}\n"
        "  - {step_id: s, tool_to_call: t, depends_on: [nope]}\n"
    )
    messages = [p.message for p in validate_text(text)]
    assert messages[0].startswith("duplicate step id 's'")
    assert "unknown step 'nope' in depends_on" in messages


def test_long_step_lists_keep_real_indices() -> None:
    """Only failing steps go through jsonschema; their paths still name the real index."""
    steps = "".join(f"  - {{step_id: s{i}, tool_to_call: t}}\n" for i in range(60))
    text = "name: long\nagents: [{id: a, command: x}]\nsteps:\n" + steps
    assert validate_text(text) == []
    bad = text.replace("{step_id: s47, tool_to_call: t}", "{step_id: s47, tool_to_call: t, retry: {max_attempts: 0}}")
    [p] = validate_text(bad)
    assert p.path == "$.steps[47].retry.max_attempts" and p.line == 51
    assert p.message == '0 is less than the minimum of 1 (or a template: "{{ ... }}")'
    top = text.replace("name: long", "name: long\nconcurrency: 0")
    assert [p.path for p in validate_text(top)] == ["$.concurrency"]


def test_input_schemas_are_checked_against_the_metaschema() -> None:
    text = "name: m\ninputs: {n: {type: integr}, 'bad name': {}}\nagents: [{id: a, command: x}]\nsteps: [{step_id: s, tool_to_call: t}]\n"
    ps = validate_text(text)
    assert [p.path for p in ps] == ['$.inputs["bad name"]', "$.inputs.n.type"]
    assert ps[0].message.startswith("invalid input name 'bad name'") and (ps[0].line, ps[0].col) == (2, 29)
    assert (
        '"integr" is not one of: array, boolean, integer' in ps[1].message
        and "did you mean 'integer'?" in ps[1].message
    )


# --------------------------------------------------------------------------- formats


def _sample() -> list[Problem]:
    return [
        Problem("bad, very: bad\nnext 100%", "$.steps[0]", "dir,x/w:f.yaml", 3, 7),
        Problem("careful", "$.steps[1].if", "w.yaml", 9, 5, severity="warning"),
        Problem("cannot read workflow file: gone.yaml", "$", "gone.yaml", 0, 0),
    ]


def test_text_format() -> None:
    """``validate:formats``."""
    assert format_problems(_sample(), "text").splitlines()[1:] == [
        "next 100% [$.steps[0]]",
        "w.yaml:9:5: warning: careful [$.steps[1].if]",
        "gone.yaml: cannot read workflow file: gone.yaml [$]",
    ]
    assert format_problems([], "text") == ""


def test_json_format() -> None:
    data = json.loads(format_problems(_sample(), "json"))
    assert data[0] == {"file": "dir,x/w:f.yaml", "line": 3, "col": 7, "message": "bad, very: bad\nnext 100%",
                       "path": "$.steps[0]", "severity": "error"}  # fmt: skip
    assert [d["severity"] for d in data] == ["error", "warning", "error"]
    assert json.loads(format_problems([], "json")) == []


def test_github_format() -> None:
    lines = format_problems(_sample(), "github").splitlines()
    assert lines == [
        "::error file=dir%2Cx/w%3Af.yaml,line=3,col=7::bad, very: bad%0Anext 100%25 [$.steps[0]]",
        "::warning file=w.yaml,line=9,col=5::careful [$.steps[1].if]",
        "::error file=gone.yaml::cannot read workflow file: gone.yaml [$]",
    ]
    with pytest.raises(ValueError, match="unknown format"):
        format_problems([], "xml")


def test_real_problems_in_every_format() -> None:
    ps = validate_file(INVALID / "cycle.yaml")
    f = str(INVALID / "cycle.yaml")
    assert format_problems(ps, "text") == f"{f}:4:18: dependency cycle: a -> c -> b -> a [$.steps[0].depends_on[0]]"
    assert json.loads(format_problems(ps, "json"))[0]["line"] == 4
    assert format_problems(ps, "github").startswith(f"::error file={f},line=4,col=18::")


# --------------------------------------------------------------------------- imports


def test_validation_does_not_import_mcp_or_jsonschema_for_valid_files() -> None:
    """``validate:no-mcp``: plain validation stays light (jsonschema only when invalid)."""
    code = (
        "import sys\n"
        "import runner.load.validation as v\n"
        "assert 'jsonschema' not in sys.modules and 'jinja2' not in sys.modules\n"
        f"assert v.validate_file({str(VALID / 'full.yaml')!r}) == []\n"
        "assert not [m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')]\n"
        "assert 'jsonschema' not in sys.modules\n"
        f"assert v.validate_file({str(INVALID / 'bad_type.yaml')!r})\n"
        "assert 'jsonschema' in sys.modules and 'mcp' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- dag


def test_find_cycles() -> None:
    """``dag:cycles``."""
    deps = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"], "e": ["a", "zz"], "f": []}
    assert find_cycles(deps) == [["a", "b", "c"], ["d"]]
    assert find_cycles({"x": ["y"], "y": []}) == []
    # two cycles sharing a node form one component: one (shortest) cycle is reported
    assert find_cycles({"a": ["b", "c"], "b": ["a"], "c": ["a"]}) == [["a", "b"]]


def test_topo_layers() -> None:
    """``dag:layers``."""
    deps = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": [], "e": []}
    assert topo_layers(deps) == [["a", "e"], ["b", "c"], ["d"]]
    with pytest.raises(CycleError) as info:
        topo_layers({"a": ["b"], "b": ["a"], "c": []})
    assert info.value.args[1] == ["a", "b"] and "a -> b -> a" in info.value.args[0]


def _naive_ancestors(deps: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for n in deps:
        seen: set[str] = set()
        stack = [d for d in deps[n] if d in deps]
        while stack:
            d = stack.pop()
            if d not in seen:
                seen.add(d)
                stack += [x for x in deps[d] if x in deps]
        out[n] = frozenset(seen)
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 25), st.integers(0, 2**32 - 1), st.booleans())
def test_ancestors_match_naive(n: int, seed: int, allow_cycles: bool) -> None:
    """``dag:ancestors``: bitsets agree with a plain graph walk, cyclic or not."""
    rnd = random.Random(seed)
    names = [f"s{i}" for i in range(n)]
    deps = {
        name: [names[j] for j in rnd.sample(range(n), rnd.randint(0, min(3, n)))
               if allow_cycles or j < i] + (["unknown"] if rnd.random() < 0.1 else [])
        for i, name in enumerate(names)
    }  # fmt: skip
    got = ancestors(deps)
    expected = _naive_ancestors(deps)
    assert dict(got) == expected
    for a in names:
        for b in names:
            assert got.has(a, b) == (b in expected[a])
    cyclic = any(a in expected[a] for a in names)
    assert bool(find_cycles(deps)) == cyclic
    if not cyclic:
        layers = topo_layers(deps)
        level = {s: i for i, layer in enumerate(layers) for s in layer}
        assert sorted(level) == sorted(names)
        assert all(level[d] < level[s] for s in names for d in deps[s] if d in level)


def test_ancestors_of_a_long_chain_and_a_wide_dag() -> None:
    chain = {f"c{i}": [f"c{i - 1}"] if i else [] for i in range(3000)}
    anc = ancestors(chain)
    assert anc.has("c2999", "c0") and not anc.has("c0", "c2999") and len(anc["c2999"]) == 2999
    wide = {f"l{layer}_{w}": [f"l{layer - 1}_{x}" for x in range(30)] if layer else []
            for layer in range(30) for w in range(30)}  # fmt: skip
    anc = ancestors(wide)
    assert len(anc["l29_0"]) == 29 * 30 and "l29_1" not in anc["l29_0"]
    assert not anc.has("missing", "l0_0") and "missing" not in anc


def test_uses_resolves_pattern_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``validate:patterns``: ``uses: <name>`` looks in patterns/, ``./x.yaml`` next to the file."""
    from runner.load import patterns, validation

    pdir = tmp_path / "patterns"
    pdir.mkdir()
    (pdir / "hub-and-spoke.yaml").write_text((INVALID / "sub.yaml").read_text().replace("name: sub", "name: hub"))
    monkeypatch.setattr(patterns, "pattern_dirs", lambda: [pdir])
    assert validation.known_patterns() == ["hub-and-spoke"]
    ok = "name: w\nsteps:\n  - step_id: t\n    uses: hub-and-spoke\n    with: {task: '{{ inputs.x }}'}\ninputs: {x: {type: string}}\n"
    assert validate_text(ok) == []
    [p] = validate_text(ok.replace("uses: hub-and-spoke", "uses: hub-and-spokes"))
    assert p.message == "unknown pattern 'hub-and-spokes' (did you mean 'hub-and-spoke'?); known: hub-and-spoke"
    assert (p.line, p.col, p.path) == (4, 11, "$.steps[0].uses")
    [p] = validate_text(ok.replace("{task: '{{ inputs.x }}'}", "{task: 3}"))
    assert p.message.startswith("input 'task' of 'hub-and-spoke' does not match its schema: 3 is not of type")
    # a relative path is resolved next to the calling file
    (tmp_path / "caller.yaml").write_text(ok.replace("uses: hub-and-spoke", "uses: ./patterns/hub-and-spoke.yaml"))
    assert validate_file(tmp_path / "caller.yaml") == []
    [p] = validate_text(ok.replace("uses: hub-and-spoke", "uses: ./missing.yaml"), str(tmp_path / "c.yaml"))
    assert p.message.startswith("workflow file './missing.yaml' not found")
