"""Every value is JSON data (issue 12): the rule, templates, tool results, reports, inputs, the journal.

A value JSON cannot hold (a method a template yields by mistake, a set, NaN, a huge
integer, a non-string key, deep nesting) is caught where it appears, with a message that
names it and, for templates, the ``file:line:col`` it was written at; the step (or for
``outputs`` the run) fails; the store never receives it; and if one got past anyway, the
journal stores the run ``failed`` with the reason instead of leaving it ``running``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.agents.results import result_value
from runner.engine import Engine
from runner.engine.journal import Journal
from runner.errors import BadArgument, InputInvalid, NotStorable, WorkflowInvalid
from runner.load import load_workflow
from runner.model import RunStatus, StepStatus
from runner.model import events as ev
from runner.model.data import MAX_DEPTH, MAX_INT_DIGITS, NotData, as_data, scrub
from runner.model.events import Event
from runner.model.outcomes import resolve_inputs
from runner.service import RunService
from runner.store import open_store
from runner.template import Masker, TemplateError, compile_value
from runner.testing import EventCapture, FakeAgent, FakePool


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(10**4000), 1.5, "", "é", [], {}, [1, "a", None, {"k": [False, 2.5]}], _nested(MAX_DEPTH)],
)
def test_data_is_returned_as_is_without_a_copy(value: Any) -> None:
    assert as_data(value) is value


def test_tuples_and_subclasses_become_plain_data() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    value = {"t": (1, (2, [3])), Name("key"): Name("v"), "n": Level.HIGH, "f": [1.0]}
    out = as_data(value)
    assert out == {"t": [1, [2, [3]]], "key": "v", "n": 3, "f": [1.0]}
    assert type(out["t"]) is list and type(out["t"][1]) is list
    assert all(type(k) is str for k in out) and type(out["key"]) is str and type(out["n"]) is int
    assert out["f"] is value["f"]  # an unchanged part is shared, not copied
    assert value["t"] == (1, (2, [3]))  # the input is left alone


@pytest.mark.parametrize(
    ("value", "found", "where", "hint"),
    [
        ("text".title, "a method (str.title)", "$", "did you mean `.title()` or `['title']`?"),
        ({"a": [1, {"b": {1, 2}}]}, "a set", "$.a[1].b", "make it a list"),
        ([math.nan], "NaN", "$[0]", "JSON has no NaN or Infinity"),
        ({"x": -math.inf}, "-Infinity", "$.x", "JSON has no NaN or Infinity"),
        ({"k": b"raw"}, "bytes", "$.k", "use text"),
        ({1: "a"}, "a mapping key that is not a string (int 1)", "$", "keys are strings"),
        ({"d": {(1, 2): "a"}}, "a mapping key that is not a string (a tuple object)", "$.d", "keys are strings"),
        ([10**MAX_INT_DIGITS], "an integer of about 4,301 digits", "$[0]", "at most 4,300 digits"),
        (len, "a function (len)", "$", "did you mean to call it"),
        (dict, "a class (dict)", "$", "did you mean to call it"),
        (math, "a module (math)", "$", None),
        ((i for i in ()), "a generator", "$", None),
        (_nested(MAX_DEPTH + 1), f"a list nested more than {MAX_DEPTH} levels deep", "$[0][0]", None),
        ({"weird key": object()}, "a object object", "$['weird key']", None),
    ],
)
def test_what_is_not_data_is_named_with_where_and_a_hint(value: Any, found: str, where: str, hint: str | None) -> None:
    with pytest.raises(NotData) as err:
        as_data(value)
    assert err.value.found == found
    assert err.value.where.startswith(where)
    if hint is None:
        assert err.value.hint is None
    else:
        assert hint in (err.value.hint or "")
        assert hint in str(err.value)
    assert "not JSON data" in str(err.value)


def test_a_cycle_is_refused_as_too_deep_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(NotData, match="nested more than"):
        as_data(loop)


def test_scrub_keeps_a_record_of_what_is_not_data() -> None:
    value = {"ok": [1, "x"], "m": "s".upper, 2: {3}, "t": (math.nan,), "deep": _nested(MAX_DEPTH + 5)}
    out = scrub(value)
    assert as_data(out) is out  # all data now
    assert out["ok"] == [1, "x"]
    assert out["m"] == "<not JSON data: a method (str.upper)>"
    assert out["2"] == "<not JSON data: a set>"
    assert out["t"] == ["<not JSON data: NaN>"]
    assert "nested more than" in str(out["deep"])


# --------------------------------------------------------------------------- templates


def render(text: Any, **ctx: Any) -> Any:
    return compile_value(text).render({"steps": {}, "inputs": {}, **ctx})


NAMES = {"steps": {"a": {"result": ["alpha", "beta"], "text": ""}}, "inputs": {"nan": "nan", "inf": "inf"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ steps.a.result | map('upper') }}", ["ALPHA", "BETA"]),  # a generator, drained
        ("{{ range(3) }}", [0, 1, 2]),  # documented: a range is a list
        ("{{ {'a': 1}.items() }}", [["a", 1]]),  # items are [key, value] lists, not tuples
        ("{{ {'a': 1}.keys() }}", ["a"]),
        ("{{ (1, (2, 3)) }}", [1, [2, 3]]),  # tuples are lists
        ("{{ steps.a.result[0].title() }}", "Alpha"),
        ("{{ steps.a.result[0] | escape }}", "alpha"),  # Markup is a str subclass: plain text
        ("{{ 10 ** 4000 % 97 }}", 10**4000 % 97),  # big intermediate values are fine
    ],
)
def test_lone_expressions_convert_by_the_documented_rule(text: str, expected: Any) -> None:
    value = render(text, **NAMES)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(value, list):
        assert all(type(v) is not tuple for v in value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{ steps.a.result[0].title }}", "yields a method (str.title), not JSON data: did you mean `.title()` or `['title']`?"),
        ("{{ steps.a.result.index }}", "a method (list.index)"),
        ("{{ steps.a.result[0].upper }}", "did you mean `.upper()` or `['upper']`?"),
        ("{{ range }}", "Jinja's `range`, not JSON data: did you mean `range(...)`?"),
        ("{{ namespace }}", "Jinja's `namespace`"),
        ("{{ cycler(1, 2) }}", "a Cycler object"),
        ("{{ inputs.nan | float }}", "NaN"),
        ("{{ 1e308 * 10 }}", "Infinity"),
        ("{{ {1: 'one'} }}", "a mapping key that is not a string (int 1)"),
        ("{{ [1, steps.a.result[1].title] }}", "a method (str.title) at $[1]"),
        ("x {{ steps.a.result[0].title }}", "a method (str.title)"),  # printed in text: the same rule
        ("{{ steps.a.result[0] }} and {{ inputs.inf | float }}", "Infinity"),
    ],
)
def test_values_that_are_not_data_are_data_errors(text: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(text, **NAMES)
    assert err.value.kind == "data"
    assert fragment in err.value.message
    assert repr(text)[:40].strip("'") in err.value.message  # names the template


def test_the_fast_path_delegates_methods_to_the_same_check() -> None:
    # `{{ x.title }}` is a plain path: the fast path sees str has `title` and hands it to Jinja
    for text in ("{{ steps.a.result[0].title }}", "<{{ steps.a.result[0].title }}>"):
        with pytest.raises(TemplateError, match="did you mean `.title\\(\\)`") as err:
            render(text, **NAMES)
        assert err.value.kind == "data"


def test_a_template_error_knows_where_it_sits_in_the_value() -> None:
    value = {"query": {"terms": ["ok", "{{ steps.a.result[0].title }}"]}, "n": "{{ 1 }}"}
    with pytest.raises(TemplateError) as err:
        render(value, **NAMES)
    assert err.value.path == ("query", "terms", 1)


# --------------------------------------------------------------------------- in a run

WORKFLOW = """\
name: data
agents:
  - {id: a, transport: inprocess, module: "fake:server"}
steps:
  - step_id: names
    assigned_agent_id: a
    tool_to_call: names
  - step_id: bad_args
    depends_on: [names]
    assigned_agent_id: a
    tool_to_call: echo
    tool_arguments:
      query:
        - ok
        - "{{ steps.names.result[0].title }}"
  - step_id: after_bad
    depends_on: [bad_args]
    assigned_agent_id: a
    tool_to_call: echo
  - step_id: bad_if
    depends_on: [names]
    if: "{{ steps.names.result[1].upper }}"
    assigned_agent_id: a
    tool_to_call: echo
  - step_id: bad_each
    depends_on: [names]
    for_each: "{{ steps.names.result.copy }}"
    assigned_agent_id: a
    tool_to_call: echo
  - {step_id: map, assigned_agent_id: a, tool_to_call: mapping}
  - step_id: pairs
    depends_on: [map]
    for_each: "{{ steps.map.result }}"
    assigned_agent_id: a
    tool_to_call: echo
    tool_arguments: {pair: "{{ item }}"}
  - step_id: fine
    depends_on: [names]
    assigned_agent_id: a
    tool_to_call: echo
    tool_arguments: {n: "{{ steps.names.result | length }}", r: "{{ range(2) }}"}
outputs:
  fine: "{{ steps.fine.result }}"
"""


def _agent(**extra: Any) -> FakeAgent:
    async def echo(**kw: Any) -> Any:
        return kw

    return FakeAgent("a", {"names": lambda: ["alpha", "beta"], "mapping": lambda: {"x": 1, "y": 2}, "echo": echo, **extra})


def _line_col(text: str, needle: str) -> str:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return f"{i}:{line.index(needle) + 1}"
    raise AssertionError(needle)


def test_template_errors_fail_their_step_with_the_file_position(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    agent = _agent()
    pool = FakePool([agent])
    res = asyncio.run(Engine(load_workflow(str(path)), pool=pool, registry=pool.specs).run({}))
    steps = res.steps
    assert res.status == RunStatus.FAILED
    assert steps["names"].status == StepStatus.COMPLETED
    assert steps["fine"].status == StepStatus.COMPLETED  # independent branches go on
    assert steps["fine"].result == {"n": 2, "r": [0, 1]}
    assert res.outputs == {"fine": {"n": 2, "r": [0, 1]}}
    assert steps["after_bad"].status == StepStatus.SKIPPED  # dependents of a failed step
    err = steps["bad_args"].error or ""
    at_args, at_if, at_each = (
        _line_col(WORKFLOW, '"{{ steps.names.result' + rest) for rest in ("[0].title", "[1].upper", ".copy")
    )
    assert err.startswith(f"{path}:{at_args}: tool_arguments.query[1]: yields a method (str.title)"), err
    assert "did you mean `.title()` or `['title']`?" in err
    assert (steps["bad_if"].error or "").startswith(f"{path}:{at_if}: if: yields a method (str.upper)")
    assert (steps["bad_each"].error or "").startswith(f"{path}:{at_each}: for_each: yields a method (list.copy)")
    assert steps["pairs"].result == [{"pair": ["x", 1]}, {"pair": ["y", 2]}]  # a mapping's items are lists
    assert [c.arguments for c in agent.calls if c.tool == "echo" and "pair" in c.arguments][0]["pair"] == ["x", 1]
    assert not [c for c in agent.calls if "query" in c.arguments]  # nothing was sent


def test_an_output_that_is_not_data_fails_a_completed_run(tmp_path: Path) -> None:
    text = "name: out\nagents:\n  - {id: a, transport: inprocess, module: 'fake:server'}\nsteps:\n"
    text += "  - {step_id: a, assigned_agent_id: a, tool_to_call: names}\n"
    text += "outputs:\n  ok: \"{{ steps.a.result }}\"\n  first: \"{{ steps.a.result[0].title }}\"\n"
    path = tmp_path / "out.yaml"
    path.write_text(text, encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    capture = EventCapture()
    try:
        service = RunService(store, pool=FakePool([_agent()]))
        res = asyncio.run(service.run(load_workflow(str(path)), {}, sinks=[capture]))
        assert res.status == RunStatus.FAILED
        assert res.outputs == {"ok": ["alpha", "beta"], "first": None}
        assert res.error is not None
        assert res.error.startswith(f"{path}:8:10: outputs.first: yields a method (str.title)")
        stored = store.get_run(res.run_id)
        assert stored.status == "failed" and stored.error == res.error
        assert capture.types()[-2:] == ["output_failed", ev.RUN_FAILED]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"x": math.nan}, "NaN at $.x"),
        ({"s": {1, 2}}, "a set at $.s"),
        ("s".strip, "a method (str.strip)"),
        ([10**5000], "an integer of about 5,001 digits at $[0]"),
        (_nested(200), "a list nested more than 128 levels deep"),
        ({1: "a"}, "a mapping key that is not a string (int 1)"),
    ],
)
def test_a_tool_result_that_is_not_data_fails_the_step(tmp_path: Path, value: Any, fragment: str) -> None:
    text = "name: r\nagents:\n  - {id: a, transport: inprocess, module: 'fake:server'}\nsteps:\n"
    text += "  - {step_id: odd, assigned_agent_id: a, tool_to_call: odd, retry: {max_attempts: 3}}\n"
    text += "  - {step_id: next, depends_on: [odd], assigned_agent_id: a, tool_to_call: names}\n"
    text += "  - {step_id: other, assigned_agent_id: a, tool_to_call: names}\n"
    agent = _agent(odd=lambda: value)
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        res = asyncio.run(RunService(store, pool=FakePool([agent])).run(load_workflow(text), {}))
        assert res.status == RunStatus.FAILED
        assert res.steps["odd"].status == StepStatus.FAILED
        assert res.steps["odd"].attempts == 1  # another attempt would get the same value
        assert f"tool 'odd' returned {fragment}" in (res.steps["odd"].error or "")
        assert res.steps["next"].status == StepStatus.SKIPPED
        assert res.steps["other"].status == StepStatus.COMPLETED
        assert store.get_run(res.run_id).status == "failed"
        assert {x.step_id: x for x in store.get_steps(res.run_id)}["odd"].result is None
    finally:
        store.close()


def test_tool_text_is_json_only_when_it_is_data() -> None:
    assert result_value(None, "[1, 2]", unwrap=False) == [1, 2]
    assert result_value(None, "NaN", unwrap=False) == "NaN"  # Python's parser takes it; JSON does not
    assert result_value(None, '{"x": Infinity}', unwrap=False) == '{"x": Infinity}'
    assert result_value(None, "1e999", unwrap=False) == "1e999"  # would parse to inf
    deep = "[" * 300 + "]" * 300
    assert result_value(None, deep, unwrap=False) == deep
    deeper = "[" * 100_000 + "]" * 100_000  # past the parser's recursion limit: text, not a crash
    assert result_value(None, deeper, unwrap=False) == deeper


def test_a_pull_report_must_be_data(tmp_path: Path) -> None:
    text = "name: p\nagents:\n  - {id: human, transport: pull}\nsteps:\n  - {step_id: ask, assigned_agent_id: human}\n"
    wf = load_workflow(text)
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        service = RunService(store)
        run_id, lease = service.start(wf, {})
        with pytest.raises(BadArgument, match=r"argument 'result': a set at \$.tags, not JSON data"):
            service.report(run_id, "ask", "human", result={"tags": {"a"}})
        with pytest.raises(BadArgument, match="NaN"):
            service.report(run_id, "ask", "human", result=[math.nan])
        service.release(run_id=run_id, lease=lease)
        assert [e.type for e in store.get_events(run_id) if e.type == ev.STEP_REPORTED] == []
    finally:
        store.close()

    # in a run kept in no store, reports are made in-process: checked when the step reads them
    async def go() -> Any:
        eng = Engine(wf)
        task = asyncio.ensure_future(eng.run({}))
        for _ in range(500):
            if eng.pull.waiting:
                break
            await asyncio.sleep(0.01)
        eng.pull.report("ask", result={"when": math.inf})
        return await task

    res = asyncio.run(go())
    assert res.status == RunStatus.FAILED
    assert "the reported result is Infinity at $.when, not JSON data" in (res.steps["ask"].error or "")


def test_inputs_must_be_data() -> None:
    wf = load_workflow("name: i\ninputs:\n  x: {}\nsteps:\n  - {step_id: s, tool_to_call: t, assigned_agent_id: a}\n"
                       "agents:\n  - {id: a, transport: inprocess, module: 'm:s'}\n")
    assert resolve_inputs(wf, {"x": (1, 2)}) == {"x": [1, 2]}
    for bad, fragment in ((math.nan, "NaN"), ({"s": {1}}, "a set at $.s"), (b"x", "bytes")):
        with pytest.raises(InputInvalid, match=re.escape(f"input 'x': {fragment}")):
            resolve_inputs(wf, {"x": bad})


@pytest.mark.parametrize("literal", [".nan", ".inf", "-.Inf", ".NaN"])
def test_yaml_nan_and_infinity_are_validation_errors(literal: str) -> None:
    text = f"name: y\nsteps:\n  - step_id: s\n    tool_to_call: t\n    tool_arguments: {{x: {literal}}}\n"
    with pytest.raises(WorkflowInvalid) as err:
        load_workflow(text, file="y.yaml")
    p = err.value.problems[0]
    assert (p.file, p.line, p.col) == ("y.yaml", 5, 25)
    assert "is not a finite number (JSON has no NaN or Infinity)" in p.message
    assert p.path == "$.steps[0].tool_arguments.x"


# --------------------------------------------------------------------------- store and journal


def test_the_sql_store_refuses_what_json_cannot_hold_and_writes_nothing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        wf = load_workflow("name: s\nsteps:\n  - {step_id: s, tool_to_call: t, assigned_agent_id: a}\n"
                           "agents:\n  - {id: a, transport: inprocess, module: 'm:s'}\n")
        run_id, _lease = RunService(store).start(wf, {})
        before = len(store.get_events(run_id))
        for data in ({"x": math.nan}, {"x": {1}}, {"x": "s".title}):
            batch = [Event(type=ev.STEP_STARTED, run_id=run_id, step_id="s"),
                     Event(type=ev.STEP_COMPLETED, run_id=run_id, step_id="s", data={"result": data})]
            with pytest.raises(NotStorable, match="cannot store event step_completed"):
                store.append_many(batch)
            assert len(store.get_events(run_id)) == before  # one transaction: nothing of the batch
    finally:
        store.close()


def test_the_journal_stores_a_refused_batch_described_and_fails_the_run(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        wf = load_workflow("name: j\nsteps:\n  - {step_id: s, tool_to_call: t, assigned_agent_id: a}\n"
                           "agents:\n  - {id: a, transport: inprocess, module: 'm:s'}\n")
        run_id, _lease = RunService(store).start(wf, {})
        broken: list[str] = []
        journal = Journal(store, [], Masker(["hush"]), masking=True)
        journal.run_id = run_id
        journal.on_broken = broken.append
        journal.emit(ev.STEP_STARTED, "s", attempt=1)
        journal.emit(ev.STEP_COMPLETED, "s", attempt=1, data={"result": {"f": "s".title, "ok": [1]}})
        journal.emit(ev.RUN_COMPLETED, data={"outputs": {"o": {2}}})
        journal.flush()
        assert broken == [
            "event step_completed of step 's': a method (str.title) at $.result.f, not JSON data: "
            "did you mean `.title()` or `['title']`?"
        ]
        assert journal.broken == broken[0]
        run = store.get_run(run_id)
        assert run.status == "failed"  # never left running
        assert run.error == broken[0]  # the first value that was not data is the reason
        step = {x.step_id: x for x in store.get_steps(run_id)}["s"]
        assert step.status == "completed"
        assert step.result == {"f": "<not JSON data: a method (str.title)>", "ok": [1]}
        events = store.get_events(run_id)
        assert events[-1].type == ev.RUN_FAILED
        assert events[-1].data == {"outputs": {"o": "<not JSON data: a set>"}}

        # a run whose end is fine but whose last step event was not: still failed
        run_id, _lease = RunService(store).start(wf, {})
        journal = Journal(store, [], Masker([]), masking=False)
        journal.run_id = run_id
        journal.emit(ev.STEP_STARTED, "s", attempt=1)
        journal.emit(ev.STEP_COMPLETED, "s", attempt=1, data={"result": math.nan})
        journal.emit(ev.RUN_COMPLETED, data={"outputs": {}})
        journal.flush()
        run = store.get_run(run_id)
        assert (run.status, run.error) == ("failed", journal.broken)
        assert journal.broken is not None and "NaN at $.result" in journal.broken
    finally:
        store.close()


def test_an_aborted_run_ends_failed_with_the_reason_and_runs_finally(tmp_path: Path) -> None:
    engine: list[Engine] = []

    def breaks() -> str:
        engine[0].abort("event step_completed of step 'x': something not data")
        return "done"

    text = "name: a\nagents:\n  - {id: a, transport: inprocess, module: 'fake:server'}\nsteps:\n"
    text += "  - {step_id: x, assigned_agent_id: a, tool_to_call: breaks}\n"
    text += "  - {step_id: y, depends_on: [x], assigned_agent_id: a, tool_to_call: names}\n"
    text += "finally:\n  - {step_id: z, assigned_agent_id: a, tool_to_call: echo, tool_arguments: {s: '{{ run.status }}'}}\n"
    wf = load_workflow(text)
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    agent = _agent(breaks=breaks)
    try:
        service = RunService(store, pool=FakePool([agent]))
        run_id, lease = service.start(wf, {})
        prepared = service.prepare(run_id, lease=lease, inputs={}, workflow=wf)
        engine.append(service.engine(prepared))
        res = asyncio.run(service.execute(prepared, engine=engine[0]))
        assert res.status == RunStatus.FAILED
        assert res.error == "event step_completed of step 'x': something not data"
        assert res.steps["y"].status == StepStatus.CANCELLED
        assert res.steps["z"].status == StepStatus.COMPLETED and res.steps["z"].result == {"s": "failed"}
        run = store.get_run(run_id)
        assert (run.status, run.error) == ("failed", res.error)
    finally:
        store.close()


# --------------------------------------------------------------------------- generated

class _Big:
    """Stands for 10**4400 until the agent returns it (hypothesis cannot print such an int)."""

    def __repr__(self) -> str:
        return "10**4400"


_BIG = _Big()


def _realize(value: Any) -> Any:
    if value is _BIG:
        return 10**4400
    if isinstance(value, list):
        return [_realize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_realize(v) for v in value)
    if isinstance(value, dict):
        return {k: _realize(v) for k, v in value.items()}
    return value


_ODD_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text("ab", max_size=3), st.just(_BIG), st.just(b"raw"), st.just("s".title), st.just(len),
    st.frozensets(st.integers(0, 3), max_size=2), st.sets(st.text("a", max_size=1), max_size=2),
    st.just(_nested(MAX_DEPTH + 2)), st.just(_nested(3)),
)  # fmt: skip
_ODD = st.recursive(
    _ODD_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["a", "title", "items"]), inner, max_size=3),
        st.dictionaries(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 1))), inner, max_size=2),
    ),
    max_leaves=8,
)
_EXPRS = st.sampled_from([
    "steps.src.result", "steps.src.result.a", "steps.src.result[0]", "steps.src.result.title",
    "steps.src.result.items()", "steps.src.result | list", "steps.src.result.keys", "steps.src.text",
    "steps.names.result[0].title", "range(3)", "(1, (2, 3))", "{1: 'a'}", "10 ** 4400", "namespace",
    "{'k': steps.names.result.copy}", "steps.names.result | map('upper')", "steps.src.result is defined",
    "steps.src.result | string", "steps.names.result[0] | float", "steps.src.result | tojson",
])  # fmt: skip
_PLACES = st.sampled_from(["tool_arguments", "with", "outputs", "for_each", "if", "text"])
_SUB = """\
name: sub
inputs:
  v: {}
agents:
  - {id: a, transport: inprocess, module: "fake:server"}
steps:
  - {step_id: e, assigned_agent_id: a, tool_to_call: echo, tool_arguments: {value: "{{ inputs.v }}"}}
outputs:
  got: "{{ steps.e.result.value }}"
"""
_DIRS = iter(range(10**9))


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("fuzz")
    (home / "sub.yaml").write_text(_SUB, encoding="utf-8")
    store = open_store(f"sqlite:///{home}/r.db")
    yield home, store
    store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_ODD, expr=_EXPRS, place=_PLACES)
def test_odd_values_and_templates_always_end_the_run_stored_and_terminal(
    fuzz_home: Any, value: Any, expr: str, place: str
) -> None:
    """Raw Python values from an agent and odd templates, in every place: a verdict, never a stranded run."""
    home, store = fuzz_home
    tmpl = json.dumps(f"{{{{ {expr} }}}}" if place != "text" else f"x {{{{ {expr} }}}} y")
    use = {
        "tool_arguments": f"    assigned_agent_id: a\n    tool_to_call: echo\n    tool_arguments: {{value: {tmpl}}}\n",
        "text": f"    assigned_agent_id: a\n    tool_to_call: echo\n    tool_arguments: {{value: {tmpl}}}\n",
        "with": f"    uses: ./sub.yaml\n    with: {{v: {tmpl}}}\n",
        "outputs": "    assigned_agent_id: a\n    tool_to_call: names\n",
        "for_each": f"    for_each: {tmpl}\n    assigned_agent_id: a\n    tool_to_call: echo\n"
        "    tool_arguments: {value: '{{ item }}'}\n",
        "if": f"    if: {tmpl}\n    assigned_agent_id: a\n    tool_to_call: names\n",
    }[place]
    text = (
        "name: fuzz\nagents:\n  - {id: a, transport: inprocess, module: 'fake:server'}\nsteps:\n"
        "  - {step_id: src, assigned_agent_id: a, tool_to_call: odd, continue_on_error: true}\n"
        "  - {step_id: names, assigned_agent_id: a, tool_to_call: names}\n"
        "  - step_id: use\n    depends_on: [src, names]\n" + use
    ) + (f"outputs:\n  out: {tmpl}\n" if place == "outputs" else "")
    path = home / f"wf{next(_DIRS)}.yaml"
    path.write_text(text, encoding="utf-8")
    agent = _agent(odd=lambda: _realize(value))
    service = RunService(store, pool=FakePool([agent]))
    try:
        wf = load_workflow(str(path))
    except WorkflowInvalid:
        return  # refused before it runs (a for_each that is always a mapping): exit 2, nothing stored
    res = asyncio.run(service.run(wf, {}))
    assert res.status in (RunStatus.COMPLETED, RunStatus.FAILED), res
    stored = store.get_run(res.run_id)
    assert stored is not None and stored.status == str(res.status)
    assert stored.error == res.error
    for call in agent.calls:  # what reached the agent was data
        assert as_data(call.arguments) == call.arguments
    for step in store.get_steps(res.run_id):  # and so was what the store kept (it decoded it)
        assert step.status in ("completed", "failed", "skipped", "cancelled"), step
    if res.steps["src"].status == StepStatus.FAILED:
        assert "tool 'odd' returned " in (res.steps["src"].error or "")
        assert "not JSON data" in (res.steps["src"].error or "")
