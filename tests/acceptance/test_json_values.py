"""Issue 12 through the real CLI on SQLite: a value that is not JSON data fails cleanly, never strands a run.

Found by fuzzing ``runner run``: a template yielding a Python method (``x.title`` meant as
a field) reached the store, whose encoder failed at the end of the run — exit 70, a
message blaming the store, and the run left ``running`` for ever. Each test here drives
``runner run`` in a subprocess with an in-process agent (tests/agents/odd_agent.py) and
then reads the run back with ``runner runs show``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, assert_no_traceback, parse_json_stdout, run_cli

ODD_AGENT = REPO / "tests" / "agents" / "odd_agent.py"
Q = '"'
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
AGENT = """\
agents:
  - id: odd
    transport: inprocess
    module: "odd_agent:server"
"""


def _setup(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    shutil.copy(ODD_AGENT, tmp_path / "odd_agent.py")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _store(tmp_path: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path}/r.db"]


def _position(text: str, needle: str) -> str:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return f"{i}:{line.index(needle) + 1}"
    raise AssertionError(needle)


def _show(tmp_path: Path, run_id: str) -> dict[str, Any]:
    rc, out, err = run_cli("runs", "show", run_id, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert rc == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_the_issue_example_fails_the_run_with_exit_1_and_a_positioned_hint(tmp_path: Path) -> None:
    text = AGENT + (
        "name: repro\n"
        "steps:\n"
        "  - {step_id: a, assigned_agent_id: odd, tool_to_call: names}\n"
        "outputs:\n"
        '  first: "{{ steps.a.result[0].title }}"\n'
    )
    path = _setup(tmp_path, text)
    rc, out, err = run_cli("run", path, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 1, err
    res = parse_json_stdout(out, err)
    where = f"{path}:{_position(text, Q + '{{ steps')}"
    expected = f"{where}: outputs.first: yields a method (str.title), not JSON data: did you mean `.title()` or `['title']`?"
    assert res["status"] == "failed"
    assert res["outputs"] == {"first": None}
    assert res["steps"]["a"]["status"] == "completed" and res["steps"]["a"]["result"] == ["alpha", "beta"]
    assert expected in err
    assert "once the store works again" not in err and "cannot store" not in err
    stored = _show(tmp_path, res["run_id"])
    assert stored["status"] == "failed"
    assert stored["error"].startswith(expected)
    rc, out, err = run_cli("runs", "list", "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert rc == 0 and [r["status"] for r in json.loads(out)] == ["failed"]


def test_every_place_a_template_appears_fails_only_its_own_step(tmp_path: Path) -> None:
    sub = "name: sub\ninputs:\n  v: {}\n" + AGENT + (
        "steps:\n  - {step_id: e, assigned_agent_id: odd, tool_to_call: echo, tool_arguments: {value: '{{ inputs.v }}'}}\n"
        "outputs:\n  got: '{{ steps.e.result.got }}'\n"
    )
    _setup(tmp_path, sub, "sub.yaml")
    text = AGENT + (
        "name: places\n"
        "steps:\n"
        "  - {step_id: a, assigned_agent_id: odd, tool_to_call: names}\n"
        "  - step_id: args\n"
        "    depends_on: [a]\n"
        "    assigned_agent_id: odd\n"
        "    tool_to_call: echo\n"
        "    tool_arguments:\n"
        '      value: {nested: ["{{ steps.a.result.index }}"]}\n'
        "  - {step_id: after_args, depends_on: [args], assigned_agent_id: odd, tool_to_call: names}\n"
        "  - step_id: cond\n"
        "    depends_on: [a]\n"
        '    if: "{{ steps.a.result[0].isupper }}"\n'
        "    assigned_agent_id: odd\n"
        "    tool_to_call: names\n"
        "  - step_id: each\n"
        "    depends_on: [a]\n"
        '    for_each: "{{ steps.a.result[1].split }}"\n'
        "    assigned_agent_id: odd\n"
        "    tool_to_call: echo\n"
        "  - step_id: team\n"
        "    depends_on: [a]\n"
        "    uses: ./sub.yaml\n"
        '    with: {v: "{{ steps.a.result.count }}"}\n'
        "  - step_id: fine\n"
        "    depends_on: [a]\n"
        "    uses: ./sub.yaml\n"
        "    with: {v: \"{{ {'pairs': {'x': 1}.items(), 'r': range(2), 't': (1, 2)} }}\"}\n"
        "outputs:\n"
        '  fine: "{{ steps.fine.result.got }}"\n'
    )
    path = _setup(tmp_path, text)
    rc, out, err = run_cli("run", path, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 1, err
    res = parse_json_stdout(out, err)
    steps = res["steps"]
    expected = {
        "args": (f"{_position(text, Q + '{{ steps.a.result.index')}: tool_arguments.value.nested[0]: ", "list.index"),
        "cond": (f"{_position(text, Q + '{{ steps.a.result[0].isupper')}: if: ", "str.isupper"),
        "each": (f"{_position(text, Q + '{{ steps.a.result[1].split')}: for_each: ", "str.split"),
        "team": (f"{_position(text, Q + '{{ steps.a.result.count')}: with.v: ", "list.count"),
    }
    for sid, (where, method) in expected.items():
        assert steps[sid]["status"] == "failed", (sid, steps[sid])
        assert steps[sid]["error"].startswith(f"{path}:{where}yields a method ({method})"), steps[sid]["error"]
        name = method.split(".")[1]
        assert f"did you mean `.{name}()` or `['{name}']`?" in steps[sid]["error"]
    assert steps["after_args"]["status"] == "skipped"
    assert steps["fine"]["status"] == "completed"
    assert res["outputs"]["fine"] == {"pairs": [["x", 1]], "r": [0, 1], "t": [1, 2]}
    stored = _show(tmp_path, res["run_id"])
    assert stored["status"] == "failed"
    assert {sid: s["status"] for sid, s in stored["steps"].items() if sid in expected} == dict.fromkeys(expected, "failed")


def test_a_tool_result_that_is_not_data_fails_its_step(tmp_path: Path) -> None:
    text = AGENT + (
        "name: results\n"
        "steps:\n"
        "  - {step_id: big, assigned_agent_id: odd, tool_to_call: odd, tool_arguments: {spec: {bigint: 5000}}}\n"
        "  - {step_id: deep, assigned_agent_id: odd, tool_to_call: odd, tool_arguments: {spec: {deep: 150}}}\n"
        "  - {step_id: uses_big, depends_on: [big], assigned_agent_id: odd, tool_to_call: names}\n"
        "  - {step_id: nan_text, assigned_agent_id: odd, tool_to_call: text, tool_arguments: {value: NaN}}\n"
        "  - {step_id: inf_text, assigned_agent_id: odd, tool_to_call: text, tool_arguments: {value: '1e999'}}\n"
    )
    path = _setup(tmp_path, text)
    rc, out, err = run_cli("run", path, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 1, err
    steps = parse_json_stdout(out, err)["steps"]
    assert steps["big"]["status"] == "failed"
    assert "integer of" in steps["big"]["error"] and "4,300 digits" in steps["big"]["error"]
    assert steps["deep"]["status"] == "failed"
    assert "a list nested more than 128 levels deep at $.value[0]" in steps["deep"]["error"]
    assert steps["uses_big"]["status"] == "skipped"
    # text that only Python's lenient parser takes for JSON stays text
    assert (steps["nan_text"]["status"], steps["nan_text"]["result"]) == ("completed", "NaN")
    assert (steps["inf_text"]["status"], steps["inf_text"]["result"]) == ("completed", "1e999")
    assert _show(tmp_path, parse_json_stdout(out)["run_id"])["status"] == "failed"


def test_inputs_that_are_not_json_data_are_exit_2_and_dates_stay_text(tmp_path: Path) -> None:
    text = AGENT + (
        "name: ins\n"
        "inputs:\n  x: {}\n  n: {type: number, default: 1}\n"
        "steps:\n  - {step_id: e, assigned_agent_id: odd, tool_to_call: echo, tool_arguments: {value: '{{ inputs.x }}'}}\n"
        "outputs:\n  got: '{{ steps.e.result.got }}'\n"
    )
    path = _setup(tmp_path, text)
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("x: [1, .nan]\n", encoding="utf-8")
    rc, out, err = run_cli("run", path, "--inputs", inputs, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    assert f"{inputs}:1:8: '.nan' is not a finite number (JSON has no NaN or Infinity)" in err
    rc, out, err = run_cli("run", path, "-i", "x=a", "-i", "n=1e999", *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert rc == 2, err
    assert "input 'n'" in err and "1e999" in err
    inputs.write_text("x: 2024-01-31\n", encoding="utf-8")  # YAML 1.1 would make it a date object
    rc, out, err = run_cli("run", path, "--inputs", inputs, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert rc == 0, err
    assert parse_json_stdout(out, err)["outputs"] == {"got": "2024-01-31"}
    rc, out, err = run_cli("runs", "list", "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert [r["status"] for r in json.loads(out)] == ["completed"]  # nothing stored for the refused ones


def test_a_nan_literal_in_a_workflow_is_a_validation_error(tmp_path: Path) -> None:
    text = AGENT + "name: lit\nsteps:\n  - {step_id: e, assigned_agent_id: odd, tool_to_call: echo, tool_arguments: {value: .inf}}\n"
    path = _setup(tmp_path, text)
    for cmd in (["validate", path], ["run", path, *_store(tmp_path)]):
        rc, out, err = run_cli(*cmd, cwd=tmp_path)
        assert_no_traceback(err)
        assert rc == 2, err
        assert f"{path}:{_position(text, '.inf}')}: '.inf' is not a finite number" in err


# --------------------------------------------------------------------------- generated

_SPECS = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text("ab", max_size=3),
        st.just({"nan": True}), st.sampled_from([{"inf": 1}, {"inf": -1}]), st.just({"bigint": 4400}),
        st.builds(lambda xs: {"set": xs}, st.lists(st.integers(0, 3), max_size=3)),
        st.just({"bytes": "ab"}), st.sampled_from([{"deep": 130}, {"deep": 5}]),
    ),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"tuple": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"list": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda d: {"dict": d}, st.dictionaries(st.sampled_from(["a", "b", "title"]), inner, max_size=3)),
        st.builds(lambda v: {"intkey": 1, "value": v}, inner),
    ),
    max_leaves=6,
)  # fmt: skip
_EXPRS = st.sampled_from([
    "steps.src.result.value", "steps.src.result.value[0]", "steps.src.result.value.title",
    "steps.src.result.value.items()", "steps.src.result.value | list", "steps.src.result.keys",
    "steps.src.result", "steps.names.result[0].title", "steps.names.result", "range(3)",
    "(1, (2, 3))", "{1: 'a'}", "steps.src.text | float", "10 ** 4400", "{'k': steps.names.result.copy}",
    "steps.src.result.value is defined", "namespace", "steps.names.result | map('upper')",
])  # fmt: skip
_PLACES = st.sampled_from(["tool_arguments", "with", "outputs", "for_each", "if", "text"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=_SPECS, expr=_EXPRS, place=_PLACES)
def test_odd_results_and_templates_never_exit_70_nor_strand_a_run(tmp_path: Path, spec: Any, expr: str, place: str) -> None:
    """Generated tool results (sets, NaN, huge ints, tuples, deep nesting) and templates, end to end.

    Few examples: each is a ``runner run`` subprocess. The many-example version, with raw
    Python values (methods too, which the SDK's serializer refuses in process) handed to
    the engine by a fake agent, is in tests/test_json_data.py.
    """
    tmpl = json.dumps(f"{{{{ {expr} }}}}" if place != "text" else f"x {{{{ {expr} }}}} y")
    src = json.dumps({"spec": spec})
    sub = "name: sub\ninputs:\n  v: {}\n" + AGENT + (
        "steps:\n  - {step_id: e, assigned_agent_id: odd, tool_to_call: echo, tool_arguments: {value: '{{ inputs.v }}'}}\n"
    )
    use = {
        "tool_arguments": f"    assigned_agent_id: odd\n    tool_to_call: echo\n    tool_arguments: {{value: {tmpl}}}\n",
        "text": f"    assigned_agent_id: odd\n    tool_to_call: echo\n    tool_arguments: {{value: {tmpl}}}\n",
        "with": f"    uses: ./sub.yaml\n    with: {{v: {tmpl}}}\n",
        "outputs": "    assigned_agent_id: odd\n    tool_to_call: names\n",
        "for_each": f"    for_each: {tmpl}\n    assigned_agent_id: odd\n    tool_to_call: echo\n"
                    "    tool_arguments: {value: '{{ item }}'}\n",
        "if": f"    if: {tmpl}\n    assigned_agent_id: odd\n    tool_to_call: names\n",
    }[place]
    text = AGENT + (
        "name: fuzz\n"
        "steps:\n"
        f"  - {{step_id: src, assigned_agent_id: odd, tool_to_call: odd, tool_arguments: {src}, continue_on_error: true}}\n"
        "  - {step_id: names, assigned_agent_id: odd, tool_to_call: names}\n"
        "  - step_id: use\n"
        "    depends_on: [src, names]\n" + use
    ) + (f"outputs:\n  out: {tmpl}\n" if place == "outputs" else "")
    with_dir = tmp_path / f"ex{abs(hash((json.dumps(spec), expr, place))) % 10**8}"
    with_dir.mkdir(exist_ok=True)
    _setup(with_dir, sub, "sub.yaml")
    path = _setup(with_dir, text)
    rc, out, err = run_cli("run", path, "--output", "json", *_store(with_dir), cwd=with_dir)
    assert_no_traceback(err)
    assert rc in (0, 1, 2), f"exit {rc}\n{text}\n{err}"
    assert "once the store works again" not in err
    if rc == 2:
        return  # refused before anything ran (nothing to read back)
    run_id = parse_json_stdout(out, err)["run_id"]
    stored = _show(with_dir, run_id)
    assert stored["status"] in TERMINAL, stored
    assert stored["status"] == ("completed" if rc == 0 else "failed"), (rc, stored)
