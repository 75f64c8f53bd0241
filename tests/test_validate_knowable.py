"""``runner validate`` catches before a run what is knowable before a run.

Ids: ``validate:no-agents``, ``validate:step-attributes``, ``validate:for-each-literal``,
``validate:filters``, ``validate:synonyms``, ``validate:deep-scalar-result``. Each of these
passed validation once and failed only at run time; each is now an exit-2 problem at the
value at fault, through the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.model.spec import STEP_ATTRIBUTES, StepOutcome
from tests.conftest import REPO, assert_no_traceback, run_cli

AGENTS = "agents: [{id: x, transport: inprocess, module: 'm:s'}]\n"


def _problems(tmp_path: Path, text: str, *extra: str) -> list[dict[str, object]]:
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli("validate", path, "--format", "json", *extra)
    assert code == 2, (out, err)
    assert_no_traceback(err)
    return json.loads(out)  # type: ignore[no-any-return]


def test_tool_step_in_a_workflow_without_agents(tmp_path: Path) -> None:
    """validate:no-agents"""
    problems = _problems(tmp_path, "name: w\nsteps:\n  - step_id: a\n    tool_to_call: t\n")
    assert problems[0]["message"] == (
        "step 'a' calls tool 't' but there is no agent to run it: the workflow declares no agents "
        "(add an agents: list) and no --agents registry was given"
    )
    assert (problems[0]["line"], problems[0]["col"], problems[0]["path"]) == (4, 19, "$.steps[0].tool_to_call")


def test_a_registry_gives_the_workflow_its_agents(tmp_path: Path) -> None:
    """validate:no-agents — the same workflow with --agents is valid."""
    (tmp_path / "agents.yaml").write_text(AGENTS, encoding="utf-8")
    (tmp_path / "w.yaml").write_text("name: w\nsteps:\n  - step_id: a\n    tool_to_call: t\n", encoding="utf-8")
    code, out, err = run_cli("validate", tmp_path / "w.yaml", "--agents", tmp_path / "agents.yaml")
    assert code == 0, err


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("steps.a.reslt", "steps.a.reslt: a step has no attribute 'reslt' (did you mean 'result'?)"),
        ("steps.a.outputs", "steps.a.outputs: a step has no attribute 'outputs' (did you mean 'result'?)"),
        ("steps['a'].statuss", "steps.a.statuss: a step has no attribute 'statuss' (did you mean 'status'?)"),
        ("steps.a.reslt | length", "steps.a.reslt: a step has no attribute 'reslt' (did you mean 'result'?)"),
    ],
)
def test_unknown_step_attribute_with_did_you_mean(tmp_path: Path, ref: str, message: str) -> None:
    """validate:step-attributes — the set is fixed, so a typo is knowable."""
    text = (
        f"name: w\n{AGENTS}steps:\n  - step_id: a\n    tool_to_call: t\n  - step_id: b\n    depends_on: [a]\n"
        f"    tool_to_call: t\n    tool_arguments: {{x: \"{{{{ {ref} }}}}\"}}\n"
    )
    problems = _problems(tmp_path, text)
    assert problems[0]["message"] == message + "; it has: " + ", ".join(STEP_ATTRIBUTES)
    assert (problems[0]["line"], problems[0]["path"]) == (9, "$.steps[1].tool_arguments.x")


def test_step_attributes_are_what_templates_see() -> None:
    """validate:step-attributes — the checked set is the context's own keys."""
    assert tuple(StepOutcome().as_context()) == STEP_ATTRIBUTES


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "for_each is the plain string 'abc', not a list"),
        ("'{{ 42 }}'", "for_each must give a list; '{{ 42 }}' is always a number"),
        ("\"{{ 'abc' }}\"", "for_each must give a list; \"{{ 'abc' }}\" is always a string"),
        ("\"{{ {'a': 1} }}\"", "for_each must give a list; \"{{ {'a': 1} }}\" is always a mapping"),
        ("{a: 1}", "expected string or array, got object"),
    ],
)
def test_literal_for_each_that_is_not_a_list(tmp_path: Path, value: str, message: str) -> None:
    """validate:for-each-literal"""
    text = f"name: w\n{AGENTS}steps:\n  - step_id: a\n    tool_to_call: t\n    for_each: {value}\n"
    problems = _problems(tmp_path, text)
    assert str(problems[0]["message"]).startswith(message), problems
    assert (problems[0]["line"], problems[0]["col"], problems[0]["path"]) == (6, 15, "$.steps[0].for_each")


def test_literal_list_for_each_is_valid(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        f"name: w\n{AGENTS}steps:\n  - step_id: a\n    tool_to_call: t\n    for_each: '{{{{ [1, 2] }}}}'\n"
        "  - step_id: b\n    tool_to_call: t\n    for_each: [1, 2]\n",
        encoding="utf-8",
    )
    code, out, err = run_cli("validate", tmp_path / "w.yaml")
    assert code == 0, err


def test_unknown_filter_and_test(tmp_path: Path) -> None:
    """validate:filters"""
    text = f"name: w\n{AGENTS}steps:\n  - step_id: a\n    tool_to_call: t\n    tool_arguments: {{x: '{{{{ 1 | nosuch }}}}', y: '{{{{ 1 is nosuch }}}}'}}\n"
    messages = [p["message"] for p in _problems(tmp_path, text)]
    assert messages == ["template uses unknown filter 'nosuch'", "template uses unknown test 'nosuch'"]


def test_needs_suggests_depends_on(tmp_path: Path) -> None:
    """validate:synonyms — another system's word for a key."""
    text = f"name: w\n{AGENTS}steps:\n  - step_id: a\n    tool_to_call: t\n  - step_id: b\n    needs: [a]\n    tool_to_call: t\n"
    problems = _problems(tmp_path, text)
    assert problems[0]["message"] == "unknown key 'needs' (did you mean 'depends_on'?)"
    assert (problems[0]["line"], problems[0]["col"]) == (7, 5)


def test_deep_field_of_a_tool_returning_a_number(tmp_path: Path) -> None:
    """validate:deep-scalar-result — `add` returns int | float (anyOf): it has no fields."""
    path = REPO / "tests/fixtures/deep/scalar-result.yaml"
    code, out, err = run_cli("validate", "--deep", "--format", "json", path)
    assert code == 2, err
    problems = json.loads(out)
    assert [(p["line"], p["col"], p["path"], p["message"]) for p in problems] == [
        (
            15,
            25,
            "$.steps[1].tool_arguments.a",
            "steps.add.result.total: tool 'add' returns an integer or number, which has no field 'total'",
        )
    ]
