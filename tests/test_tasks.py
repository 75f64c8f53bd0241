"""The task tools' pure logic: decomposition by structure, assignment by capability and
load, deterministic merging with conflicts — outputs that follow the inputs, refusals
that name the argument, and hostile sizes answered in bounded work.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runner.core.tasks import MAX_TASK_CHARS, assign_subtasks, decompose_by_structure, merge_results
from runner.errors import BadArgument


def descriptions(subtasks: list[dict[str, Any]]) -> list[str]:
    return [s["description"] for s in subtasks]


# --- decompose ----------------------------------------------------------------------------


def test_bullets_with_markers_dependencies_and_priorities() -> None:
    task = """Ship the release:
- Write the changelog [capabilities: writing, docs]
  and mention the breaking change
* Then run the test suite (needs: testing)
    - unit tests
    - integration tests
+ Deploy to staging (after 1, 2) — urgent
- Optional: tweet about it [priority: low] (after 9)

Thanks, everyone.
"""
    subtasks = decompose_by_structure(task)
    assert subtasks == [
        {
            "id": "subtask-1",
            "description": "Write the changelog and mention the breaking change",
            "required_capabilities": ["writing", "docs"],
            "depends_on": [],
            "priority": "medium",
        },
        {
            "id": "subtask-2",
            "description": "Then run the test suite; unit tests; integration tests",
            "required_capabilities": ["testing"],
            "depends_on": ["subtask-1"],
            "priority": "medium",
        },
        {
            "id": "subtask-3",
            "description": "Deploy to staging — urgent",
            "required_capabilities": [],
            "depends_on": ["subtask-1", "subtask-2"],
            "priority": "high",
        },
        {
            "id": "subtask-4",
            "description": "Optional: tweet about it",  # (after 9) names no earlier item
            "required_capabilities": [],
            "depends_on": [],
            "priority": "low",
        },
    ]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("1. Fetch data\n2. Clean it\n3. Plot it", ["Fetch data", "Clean it", "Plot it"]),
        ("1) Fetch\n2) Clean", ["Fetch", "Clean"]),
        ("(1) Fetch\n(2) Clean", ["Fetch", "Clean"]),
        ("a. Fetch\nb. Clean\nc. Plot", ["Fetch", "Clean", "Plot"]),
        ("Intro text.\n\n- one\n- two\n\nPhase two:\n- three", ["one", "two", "three"]),
        (
            "# Plan\nGather data.\n## Analyze\nRun stats\nand tests\n## Report",
            ["Plan: Gather data.", "Analyze: Run stats and tests", "Report"],
        ),
        ("Collect the logs. Find the error! Write a fix?", ["Collect the logs.", "Find the error!", "Write a fix?"]),
        ("Just one   thing\nto do", ["Just one thing to do"]),
    ],
)
def test_structure_decides_the_subtasks(task: str, expected: list[str]) -> None:
    assert descriptions(decompose_by_structure(task)) == expected


def test_sequence_words_chain_sentences() -> None:
    subtasks = decompose_by_structure("Collect the logs. Then find the error. After that, fix it. Finally ship it.")
    assert [s["depends_on"] for s in subtasks] == [[], ["subtask-1"], ["subtask-2"], ["subtask-3"]]
    independent = decompose_by_structure("Collect the logs. Find the error. Fix it.")
    assert [s["depends_on"] for s in independent] == [[], [], []]


def test_more_items_than_allowed_are_gathered_not_dropped() -> None:
    task = "\n".join(f"- step {i}" for i in range(1, 31))
    subtasks = decompose_by_structure(task, max_subtasks=5)
    assert len(subtasks) == 5 and descriptions(subtasks)[:4] == ["step 1", "step 2", "step 3", "step 4"]
    assert subtasks[4]["description"].startswith("Remaining 26 items: step 5; step 6;")
    assert len(decompose_by_structure(task, max_subtasks=1)) == 1
    assert len(decompose_by_structure(task)) == 20


def test_hostile_sizes_are_bounded() -> None:
    many = "".join(f"- item {i} (needs: x) (after 1)\n" for i in range(40_000))  # ~1.2 MB
    subtasks = decompose_by_structure(many)
    assert len(subtasks) == 20 and subtasks[-1]["description"].startswith("Remaining 39981 items")
    one_line = "word " * 200_000  # 1 MB without any structure
    [only] = decompose_by_structure(one_line)
    assert len(only["description"]) == 2000 and only["description"].endswith("…")
    markers = "(needs: " * 120_000
    assert len(decompose_by_structure(markers)) == 1
    long_item = "- x\n" + "  more words here\n" * 60_000
    [item] = decompose_by_structure(long_item)
    assert item["description"].startswith("x more words here") and len(item["description"]) <= 2000


@pytest.mark.parametrize(
    ("kwargs", "argument", "reason"),
    [
        ({"task": ""}, "task", "must not be empty"),
        ({"task": "  \n "}, "task", "must not be empty"),
        ({"task": 42}, "task", "must be a string"),
        ({"task": "x" * (MAX_TASK_CHARS + 1)}, "task", "the limit is"),
        ({"task": "a", "max_subtasks": 0}, "max_subtasks", "from 1 to 100"),
        ({"task": "a", "max_subtasks": 101}, "max_subtasks", "from 1 to 100"),
        ({"task": "a", "max_subtasks": True}, "max_subtasks", "whole number"),
        ({"task": "a", "max_subtasks": 2.5}, "max_subtasks", "whole number"),
    ],
)
def test_decompose_refuses_bad_arguments(kwargs: dict[str, Any], argument: str, reason: str) -> None:
    with pytest.raises(BadArgument, match=reason) as info:
        decompose_by_structure(**kwargs)
    assert info.value.argument == argument


# --- assign -------------------------------------------------------------------------------

AGENTS = [
    {"id": "bob", "role": "worker", "capabilities": ["python"], "status": "working"},
    {"id": "ann", "role": "worker", "capabilities": ["python", "go"], "status": "available", "circuit": "open"},
    {"id": "cat", "role": "worker", "capabilities": ["python", "sql"], "status": "idle"},
    {"id": "dan", "role": "worker", "capabilities": ["sql"], "status": "offline"},
    {"id": "eve", "role": "worker", "capabilities": ["python"], "status": "available", "circuit": "half_open"},
]


def test_assignment_by_capability_and_load() -> None:
    subtasks = [
        {"id": "s1", "required_capabilities": ["python"]},
        {"id": "s2", "required_capabilities": ["sql"]},
        {"id": "s3", "required_capabilities": ["go"]},
        {"id": "s4", "required_capabilities": ["rust"]},
        {"id": "s5", "required_capabilities": ["python"]},
        {"id": "s6", "required_capabilities": ["python"]},
    ]
    out = assign_subtasks(subtasks, AGENTS, load={"cat": 2})
    assert [(a["subtask_id"], a["agent_id"]) for a in out["assignments"]] == [
        ("s1", "eve"),  # load 0 everywhere but cat; eve is available (bob is working)
        ("s2", "cat"),  # the only live sql agent, however loaded
        ("s5", "bob"),  # eve now has one
        ("s6", "eve"),  # bob 1, eve 1, cat 3: available before working
    ]
    assert out["unassigned"] == [
        {"subtask_id": "s3", "reason": "no agent with capabilities [go] is available (ann: circuit open)"},
        {"subtask_id": "s4", "reason": "no agent with capabilities [rust]"},
    ]
    assert out["load"] == {"bob": 1, "ann": 0, "cat": 3, "eve": 2, "dan": 0}
    assert (
        "least loaded of 3 eligible agent(s) with capabilities [python] (load 0, status available)"
        in (out["assignments"][0]["reason"])
    )


def test_assignment_follows_the_inputs() -> None:
    subtasks = [{"id": "a", "required_capabilities": ["python"]}]

    def chosen(agents: list[dict[str, Any]], load: dict[str, int] | None = None) -> str:
        return str(assign_subtasks(subtasks, agents, load)["assignments"][0]["agent_id"])

    assert chosen(AGENTS) == "cat"  # idle with a closed circuit; eve is half-open, bob working
    assert chosen(AGENTS, {"cat": 1}) == "eve"
    assert chosen(AGENTS, {"cat": 1, "eve": 1}) == "bob"  # least loaded beats status
    healthy = [{**a, "circuit": "closed"} for a in AGENTS]
    assert chosen(healthy, {"cat": 1, "eve": 1}) == "ann"  # once its circuit closes
    # Closed circuits before half-open ones when all else is equal.
    twins = [
        {"id": "z", "capabilities": [], "status": "idle"},
        {"id": "y", "capabilities": [], "circuit": "half_open", "status": "idle"},
    ]
    assert assign_subtasks([{"id": "t"}], twins)["assignments"][0]["agent_id"] == "z"


def test_high_priority_subtasks_are_placed_first() -> None:
    agents = [
        {"id": "fast", "capabilities": [], "status": "available"},
        {"id": "slow", "capabilities": [], "status": "working"},
    ]
    subtasks = [{"id": "later", "priority": "low"}, {"id": "now", "priority": "high"}]
    out = assign_subtasks(subtasks, agents)
    assert [(a["subtask_id"], a["agent_id"]) for a in out["assignments"]] == [("later", "slow"), ("now", "fast")]


def test_assignment_is_deterministic_and_leaves_its_inputs_alone() -> None:
    subtasks = decompose_by_structure("- a (needs: python)\n- b (needs: sql)\n- c")
    before = (copy.deepcopy(subtasks), copy.deepcopy(AGENTS))
    first = assign_subtasks(subtasks, AGENTS)
    assert assign_subtasks(subtasks, list(reversed(AGENTS))) == first  # the order of agents does not matter
    assert assign_subtasks(subtasks, AGENTS) == first
    assert (subtasks, AGENTS) == before


@pytest.mark.parametrize(
    ("subtasks", "agents", "load", "argument", "reason"),
    [
        ("x", [], None, "subtasks", "must be a list"),
        ([{"name": "x"}], [], None, "subtasks", "entry 0 must be an object with a non-empty string 'id'"),
        ([{"id": "a"}, {"id": "a"}], [], None, "subtasks", "appears twice"),
        ([{"id": "a", "required_capabilities": "py"}], [], None, "subtasks", "list of strings"),
        ([{"id": str(i)} for i in range(1001)], [], None, "subtasks", "the limit is 1000"),
        ([], {"id": "a"}, None, "agents", "must be a list"),
        ([], [{"capabilities": []}], None, "agents", "non-empty string 'id'"),
        ([], [{"id": "a", "capabilities": "py"}], None, "agents", "list of strings"),
        ([], [], {"a": -1}, "load", "whole numbers"),
        ([], [], {"a": True}, "load", "whole numbers"),
        ([], [], ["a"], "load", "whole numbers"),
    ],
)
def test_assign_refuses_bad_arguments(subtasks: Any, agents: Any, load: Any, argument: str, reason: str) -> None:
    with pytest.raises(BadArgument, match=reason) as info:
        assign_subtasks(subtasks, agents, load)
    assert info.value.argument == argument


# --- merge --------------------------------------------------------------------------------


def test_dicts_merge_deeply_and_report_conflicts() -> None:
    out = merge_results(
        [
            {"subtask_id": "s1", "result": {"summary": {"files": 3, "langs": ["py"]}, "ok": True}},
            {"summary": {"files": 4, "langs": ["py", "go"], "tests": 10}, "ok": True},
            {"subtask_id": "s3", "result": {"summary": {"files": 5}, "ok": False}},
        ]
    )
    assert out["strategy"] == "dict" and out["count"] == 3
    assert out["merged"] == {"summary": {"files": 3, "langs": ["py", "go"], "tests": 10}, "ok": True}
    assert out["conflicts"] == [
        {
            "path": "summary.files",
            "values": [3, 4, 5],
            "sources": [0, 1, 2],
            "resolution": "kept the first value (from result 0)",
        },
        {
            "path": "ok",
            "values": [True, False],
            "sources": [0, 2],
            "resolution": "kept the first value (from result 0)",
        },
    ]
    assert out["subtask_ids"] == ["s1", None, "s3"]


def test_a_conflict_names_where_the_kept_value_came_from() -> None:
    out = merge_results([{"a": 1}, {"b": {"c": 1}}, {"b": {"c": 2}}, {"b": "flat"}])
    assert out["merged"] == {"a": 1, "b": {"c": 1}}
    assert out["conflicts"] == [
        {"path": "b.c", "values": [1, 2], "sources": [1, 2], "resolution": "kept the first value (from result 1)"},
        {
            "path": "b",
            "values": [{"c": 1}, "flat"],
            "sources": [1, 3],
            "resolution": "kept the first value (from result 1)",
        },
    ]


@pytest.mark.parametrize(
    ("results", "strategy", "merged"),
    [
        ([[1, 2], [2, 3], [{"a": 1}], [{"a": 1}]], "list", [1, 2, 3, {"a": 1}]),
        (["Intro.\n\nDetails A.", "Intro.\n\n\nDetails B."], "text", "Intro.\n\nDetails A.\n\nDetails B."),
        ([3, 4.5, -1], "numbers", {"values": [3, 4.5, -1], "sum": 6.5}),
        ([{"result": "only"}], "text", "only"),
        ([True, True], "mixed", [True, True]),
    ],
)
def test_each_kind_merges_its_own_way(results: list[Any], strategy: str, merged: Any) -> None:
    out = merge_results(results)
    assert (out["strategy"], out["merged"], out["conflicts"], out["count"]) == (strategy, merged, [], len(results))


def test_mixed_types_are_kept_as_given_with_a_type_conflict() -> None:
    out = merge_results([{"a": 1}, "text", [1], 2, None])
    assert out["strategy"] == "mixed" and out["merged"] == [{"a": 1}, "text", [1], 2, None]
    assert out["conflicts"] == [
        {
            "path": "",
            "reason": "type mismatch",
            "values": ["dict", "text", "list", "number", "null"],
            "sources": [0, 1, 2, 3, 4],
        }
    ]


def test_merge_leaves_its_inputs_alone_and_is_deterministic() -> None:
    results = [{"a": {"b": [1]}}, {"a": {"b": [2]}}]
    before = copy.deepcopy(results)
    out = merge_results(results)
    out["merged"]["a"]["b"].append(99)
    assert results == before and merge_results(results)["merged"] == {"a": {"b": [1, 2]}}


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        ({"a": 1}, "must be a list"),
        ([], "must not be empty"),
        ([1] * 1001, "the limit is 1000"),
    ],
)
def test_merge_refuses_bad_arguments(results: Any, reason: str) -> None:
    with pytest.raises(BadArgument, match=reason) as info:
        merge_results(results)
    assert info.value.argument == "results"


def test_merge_refuses_hostile_nesting() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = {"k": deep}
    with pytest.raises(BadArgument, match="nested more than 64 levels"):
        merge_results([deep, {"k": 2}])
