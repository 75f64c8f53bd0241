"""The loader: YAML with positions, strict tags, alias limits, schemas, the model.

Ids: ``loader:positions``, ``loader:no-code-execution``, ``loader:alias-bomb``,
``loader:duplicate-keys``, ``loader:model``, ``schema:editor-help``, ``schema:fast-check``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.errors import WorkflowInvalid
from runner.load import (
    SourceMap,
    json_path,
    load_agents_file,
    load_workflow,
    load_yaml,
    workflow_hash,
)
from runner.load import schema as loader  # the fast schema check's internals
from runner.load.schema import fast_schema_valid, fast_valid, schema, schema_dir, schema_validator
from runner.model import RetryPolicy, TransportKind

FIXTURES = Path(__file__).parent / "fixtures"
VALID = FIXTURES / "valid"
INVALID = FIXTURES / "invalid"


def _problems(text: str) -> list[Any]:
    with pytest.raises(WorkflowInvalid) as info:
        load_yaml(text, "t.yaml")
    return info.value.problems


# --------------------------------------------------------------------------- YAML


def test_positions_of_keys_and_values() -> None:
    text = "name: x\nsteps:\n  - step_id: a\n    depends_on: [b, c]\n"
    data, smap = load_yaml(text, "t.yaml")
    assert data == {"name": "x", "steps": [{"step_id": "a", "depends_on": ["b", "c"]}]}
    assert smap.position(("steps", 0, "depends_on", 1)) == (4, 21)
    assert smap.position(("steps", 0, "depends_on"), key=True) == (4, 5)
    assert smap.position(("steps", 0, "depends_on")) == (4, 17)
    # a path that leaves the document stops at the deepest node that exists
    assert smap.position(("steps", 0, "missing", 3)) == (3, 5)
    assert smap.position(("steps", 7)) == (3, 3)
    p = smap.problem("boom", ("steps", 0, "step_id"), key=True)
    assert (p.file, p.line, p.col, p.path, p.message) == ("t.yaml", 3, 5, "$.steps[0].step_id", "boom")


def test_json_path_quotes_odd_keys() -> None:
    assert json_path(()) == "$"
    assert json_path(("steps", 2, "depends_on", 0)) == "$.steps[2].depends_on[0]"
    assert json_path(("with", "a key", "x.y")) == '$.with["a key"]["x.y"]'


def test_scalars_are_json_values() -> None:
    text = "a: 2024-01-01\nb: '='\nc: 0x10\nd: 1_000\ne: 1.5\nf: yes\ng: ~\nh: !!str 12\ni: !!int '7'\non: 1\n1: one\n"
    data, _ = load_yaml(text)
    # timestamps stay text (the model is JSON); keys are always strings
    assert data == {
        "a": "2024-01-01", "b": "=", "c": 16, "d": 1000, "e": 1.5, "f": True, "g": None,
        "h": "12", "i": 7, "on": 1, "1": "one",
    }  # fmt: skip


def test_merge_keys_and_positions_through_them() -> None:
    text = "base: &b {delay: 1s, max_attempts: 2}\nretry:\n  <<: *b\n  max_attempts: 5\n"
    data, smap = load_yaml(text)
    assert data["retry"] == {"max_attempts": 5, "delay": "1s"}
    assert smap.position(("retry", "max_attempts")) == (4, 17)
    assert smap.position(("retry", "delay")) == (1, 18)  # found in the merged mapping


def test_aliases_give_independent_copies() -> None:
    data, _ = load_yaml("a: &x {k: [1]}\nb: *x\n")
    assert data["a"] == data["b"] and data["a"] is not data["b"]
    assert data["a"]["k"] is not data["b"]["k"]


def test_syntax_error_is_positioned() -> None:
    [p] = _problems((INVALID / "yaml_syntax.yaml").read_text())
    assert (p.line, p.col, p.path) == (4, 30, "$")
    assert p.message.startswith("invalid YAML: did not find expected ',' or ']'")


def test_duplicate_key_points_at_second_key() -> None:
    [p] = _problems((INVALID / "duplicate_key.yaml").read_text())
    assert (p.line, p.col, p.path) == (5, 5, "$.steps[0].tool_to_call")
    assert "duplicate key 'tool_to_call'" in p.message


@pytest.mark.parametrize(
    ("text", "tag", "pos"),
    [
        ("a: !!set {x, y}\n", "!!set", (1, 4)),
        ("a: !!binary aGk=\n", "!!binary", (1, 4)),
        ("a: !!timestamp 2024-01-01\n", "!!timestamp", (1, 4)),
        ("a:\n  - !custom x\n", "!custom", (2, 5)),
        ("!!python/name:os.system x: 1\n", "!!python/name:os.system", (1, 1)),
        ("a: !!omap [b: 1]\n", "!!omap", (1, 4)),
    ],
)
def test_only_core_tags(text: str, tag: str, pos: tuple[int, int]) -> None:
    [p] = _problems(text)
    assert p.message == f"unsupported YAML tag {tag!r}"
    assert (p.line, p.col) == pos


def test_every_bad_tag_and_duplicate_is_reported_at_once() -> None:
    problems = _problems("a: !!set {x}\nb: 1\nb: 2\nc: !x y\n")
    assert [(p.line, p.col) for p in problems] == [(1, 4), (3, 1), (4, 4)]


def test_non_scalar_keys_are_rejected() -> None:
    [p] = _problems("? [a, b]\n: 1\n")
    assert "mapping keys must be strings" in p.message and (p.line, p.col) == (1, 3)


def test_invalid_explicit_scalar() -> None:
    [p] = _problems("a: !!int zz\n")
    assert p.message == "invalid !!int value 'zz'"


def test_recursive_alias() -> None:
    [p] = _problems("a: &a [1, *a]\n")
    assert p.message.startswith("recursive YAML alias") and p.path == "$.a[1]"


def test_python_tag_is_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``loader:no-code-execution``: the hostile file is an error, and nothing ran."""
    text = (INVALID / "python_tag.yaml").read_text()
    marker = tmp_path / "runner-pwned-marker"
    monkeypatch.chdir(tmp_path)
    [p] = _problems(text)
    assert p.message == "unsupported YAML tag '!!python/object/apply:os.system'"
    assert (p.line, p.col, p.path) == (5, 21, "$.steps[0].tool_arguments")
    with pytest.raises(WorkflowInvalid):
        load_workflow(text)
    assert not marker.exists()
    # control: the same text under PyYAML's unsafe loader does run the command, so the
    # marker really would tell (done in a child process, inside tmp_path)
    code = "import sys, yaml; yaml.unsafe_load(sys.stdin.read())"
    subprocess.run([sys.executable, "-c", code], input=text, text=True, cwd=tmp_path, check=True)
    assert marker.exists()


def test_billion_laughs_fails_fast() -> None:
    """``loader:alias-bomb``: 10^9 nodes would take hours; the limit stops it at once."""
    text = (INVALID / "billion_laughs.yaml").read_text()
    start = time.perf_counter()
    [p] = _problems(text)
    elapsed = time.perf_counter() - start
    assert p.message.startswith("YAML aliases expand to too many nodes")
    assert (p.line, p.col) == (6, 4)
    assert elapsed < 5.0, elapsed  # measured: ~0.04 s


def test_many_legitimate_aliases_are_fine() -> None:
    body = "".join(f"  - {{step_id: s{i}, tool_to_call: t, retry: *r}}\n" for i in range(3000))
    text = "x: &r {max_attempts: 2, delay: 1s, backoff: 2, max_delay: 9s, jitter: 0.1}\nsteps:\n" + body
    data, _ = load_yaml(text)
    assert len(data["steps"]) == 3000 and data["steps"][-1]["retry"]["jitter"] == 0.1


def test_empty_document() -> None:
    assert load_yaml("")[0] is None
    assert load_yaml("# only a comment\n")[0] is None


# --------------------------------------------------------------------------- model


def test_load_workflow_builds_the_model() -> None:
    """``loader:model``: native types, durations parsed, ``if`` -> condition, with -> with_."""
    path = VALID / "full.yaml"
    wf = load_workflow(path)
    assert wf.name == "release-notes"
    assert wf.source == str(path) and wf.source_text == path.read_text()
    assert wf.concurrency == 8 and wf.timeout == 600.0
    assert wf.inputs["max_commits"] == {"type": "integer", "default": 20, "minimum": 1}
    git, writer, local, puller = wf.agents
    assert git.transport is TransportKind.STDIO and git.command == "mcp-server-git"
    assert git.args == ("--repository", "{{ inputs.repo }}") and git.timeout == 5.0
    assert git.capabilities == ("git",) and git.source == str(path)
    assert writer.transport is TransportKind.HTTP and writer.max_concurrency == 4
    assert writer.headers == {"Authorization": "Bearer {{ secrets.WRITER_TOKEN }}"}
    assert local.transport is TransportKind.INPROCESS and local.module == "my_agents.text:server"
    assert local.required is False and puller.transport is TransportKind.PULL
    log, summarize, per_file, review, team = wf.steps
    assert log.tool_arguments == {"repo_path": "{{ inputs.repo }}", "max_count": "{{ inputs.max_commits }}"}
    assert summarize.condition == "{{ steps.log.text | length > 0 }}"
    assert summarize.retry == RetryPolicy(max_attempts=3, delay=1.0, backoff=2.0, max_delay=30.0, jitter=0.1)
    assert summarize.timeout == 30.0 and summarize.continue_on_error is False
    assert summarize.depends_on == ("log",) and summarize.required_capabilities == ("summarize",)
    assert per_file.for_each == "{{ steps.log.result.files }}" and per_file.max_parallel == 4
    assert per_file.fallback_agents == ("local",)
    assert review.is_pull and review.depends_on == ("summarize",) and review.timeout == 3600.0
    assert team.uses == "./team.yaml" and team.with_ == {"task": "{{ steps.summarize.text }}", "worker_role": "vcs"}
    assert team.condition == "{{ true }}" and team.retry == RetryPolicy()
    [notify] = wf.finally_steps
    assert notify.is_finally and notify.assigned_agent_id == "writer" and not log.is_finally
    assert wf.outputs == {"summary": "{{ steps.summarize.text }}", "team": "{{ steps.team.result }}"}
    assert wf.agent_modifiable is False


def test_load_workflow_from_text_and_defaults() -> None:
    wf = load_workflow((VALID / "minimal.yaml").read_text(), file="mem.yaml")
    assert wf.source == "mem.yaml" and wf.concurrency == 16 and wf.timeout is None
    assert wf.agents[0].transport is TransportKind.STDIO and wf.agents[0].required is None  # unset: fatal only if a step needs it
    assert wf.steps[0].retry == RetryPolicy() and wf.steps[0].condition is None


def test_load_workflow_reports_every_problem() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(INVALID / "multiple.yaml")
    assert len(info.value.problems) == 4
    assert info.value.exit_code == 2
    assert "(and 3 more)" in str(info.value)


def test_check_inputs_false_skips_default_checks() -> None:
    text = (INVALID / "bad_default.yaml").read_text()
    with pytest.raises(WorkflowInvalid):
        load_workflow(text)
    assert load_workflow(text, check_inputs=False).inputs["count"]["default"] == 0


def test_registry_agents_count_as_declared() -> None:
    from runner.model import AgentSpec

    text = (INVALID / "unknown_agent.yaml").read_text()
    registry = [AgentSpec(id="writter"), AgentSpec(id="ghost", transport=TransportKind.PULL)]
    assert load_workflow(text, registry=registry).steps[0].assigned_agent_id == "writter"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(str(tmp_path / "nope.yaml"))
    [p] = info.value.problems
    assert p.message.startswith("cannot read workflow file: ") and "nope.yaml" in p.message
    assert info.value.exit_code == 2
    with pytest.raises(WorkflowInvalid, match="is a directory, not a workflow file"):
        load_workflow(tmp_path)  # a directory is not a file


def test_load_agents_file() -> None:
    fs, remote = load_agents_file(VALID / "agents.yaml")
    assert fs.id == "fs" and fs.capabilities == ("read", "write") and fs.env == {"LOG_LEVEL": "info"}
    assert remote.transport is TransportKind.HTTP and remote.url == "http://127.0.0.1:9000/mcp"
    with pytest.raises(WorkflowInvalid) as info:
        load_agents_file(INVALID / "agents_only_bad.yaml")
    assert [p.path for p in info.value.problems] == ["$.agents[0]", "$.agents[1].module", "$.agents[1].id"]


def test_workflow_hash() -> None:
    assert workflow_hash("a") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    assert workflow_hash("a\n") != workflow_hash("a")


# --------------------------------------------------------------------------- schemas

SCHEMAS = ["workflow.schema.json", "step.schema.json", "agent.schema.json", "pattern.schema.json",
           "agents-file.schema.json"]  # fmt: skip


@pytest.mark.parametrize("name", SCHEMAS)
def test_schemas_are_valid_2020_12(name: str) -> None:
    doc = json.loads((schema_dir() / name).read_text())
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith("/" + name)


def _object_schemas(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((where, node))
        for k, v in node.items():
            found += _object_schemas(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _object_schemas(v, f"{where}/{i}")
    return found


@pytest.mark.parametrize("name", SCHEMAS)
def test_schemas_help_editors(name: str) -> None:
    """``schema:editor-help``: unknown keys are errors and every property is described."""
    for where, obj in _object_schemas(schema(name)):
        if where.endswith(("/if", "/then")):
            continue  # transport rules of agent.schema.json refine the main definition
        assert obj.get("additionalProperties") is False, where
        for prop, sub in obj["properties"].items():
            assert sub.get("description"), f"{name}{where}/{prop} has no description"


def test_pattern_schema_requires_an_interface() -> None:
    v = schema_validator("pattern.schema.json")
    doc = {"name": "p", "steps": [{"step_id": "a"}]}
    assert not v.is_valid(doc)
    assert v.is_valid({**doc, "inputs": {"task": {"type": "string"}}, "outputs": {"r": "x"}})
    assert not v.is_valid({**doc, "inputs": {}, "outputs": {}, "bogus": 1})


def test_validator_is_cached() -> None:
    assert schema_validator("workflow.schema.json") is schema_validator("workflow.schema.json")


# The fast exact check must agree with jsonschema: it may only say "valid" when jsonschema
# does, and it may only defer (``_Unsure``) rather than disagree.

_BASE = load_yaml((VALID / "full.yaml").read_text())[0]
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(["", "x", "1s", "10m", "stdio", "http", "pull", "inprocess", "a.b:c",
                       "http://h/mcp", "Bad Id", "log", "0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "command", "url", "module", "transport", "x", "delay", "type", "default"]),
        inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


_ALL_PATHS = _paths(_BASE)


@st.composite
def _mutants(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(_BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_ALL_PATHS))
        parent: Any = doc
        try:
            for p in path[:-1]:
                parent = parent[p]
        except (KeyError, IndexError, TypeError):
            continue
        if not path:
            continue
        last = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        try:
            if action == "replace":
                parent[last] = draw(_json)
            elif action == "delete":
                del parent[last]
            elif isinstance(parent[last], dict):
                parent[last][draw(st.sampled_from(["extra", "url", "command", "module", "type", "id"]))] = draw(_json)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutants())
def test_fast_check_agrees_with_jsonschema(doc: Any) -> None:
    """``schema:fast-check``."""
    expected = schema_validator("workflow.schema.json").is_valid(doc)
    check = loader._fast_check("workflow.schema.json")  # noqa: SLF001
    assert check is not None
    try:
        got = check(doc)
    except loader._Unsure:  # noqa: SLF001
        assert fast_valid("workflow.schema.json", doc) is False
        return
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "minimum", "maximum", "enum", "const", "minLength", "maxLength",
                         "items", "required", "properties", "default", "pattern", "format",
                         "exclusiveMinimum", "uniqueItems", "anyOf", "title", "x-custom"]),
        _json, max_size=4),
    _json,
)  # fmt: skip
def test_fast_user_schema_check_agrees_with_jsonschema(sch: dict[str, Any], value: Any) -> None:
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    if fast_schema_valid(sch, value):
        assert meta.is_valid(sch)
        assert Draft202012Validator(sch).is_valid(value)
    elif meta.is_valid(sch):
        try:
            loader._FastCompiler({}).compile(sch, "")(value)  # noqa: SLF001
        except (loader._Unsure, loader._Uncompilable):  # noqa: SLF001
            return
        assert not Draft202012Validator(sch).is_valid(value)


def test_sourcemap_without_document() -> None:
    assert SourceMap("f", None).position(("a", 1)) == (1, 1)
