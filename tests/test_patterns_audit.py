"""Black-box audit of the four patterns and their examples, from a user's point of view.

Everything goes through the real ``runner`` CLI in subprocesses: the patterns called by name
from a fresh workflow in a temporary folder (outside the repository) with the example agents
given by absolute path, the examples' README commands as written, the wheel's copy of the
patterns. Every number is recomputed here from the files the agents read, and the files are
generated per test, so only real work passes.
"""

from __future__ import annotations

import glob
import json
import random
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    NPM_MODULES,
    REPO,
    assert_no_traceback,
    parse_json_stdout,
    require_node,
    require_peer,
    run_cli,
)

AGENTS = REPO / "examples" / "agents"
PATTERNS = REPO / "patterns"
FS_JS = NPM_MODULES / "server-filesystem" / "dist" / "index.js"
WORDS = ["cache", "latency", "replica", "queue", "shard", "disk"]


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _corpus(root: Path, seed: int) -> Path:
    """Three documents of random sentences: how often each word occurs is known only here."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    for name in ("a.md", "b.md", "c.md"):
        sentences = [
            " ".join(rng.choice([*WORDS, "the", "of", "and"]) for _ in range(8)).capitalize() + "." for _ in range(12)
        ]
        (root / name).write_text("\n".join(sentences) + "\n")
    return root


def _counts(root: Path, term: str) -> dict[str, int]:
    pat = re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)
    found = {p.name: len(pat.findall(p.read_text())) for p in sorted(root.glob("*.md"))}
    return {k: v for k, v in found.items() if v}


def _team(corpus: str = "{{ inputs.corpus }}") -> list[dict[str, Any]]:
    """A coordinator and two specialists, the example agents by absolute path."""
    py = sys.executable
    return [
        {"id": "boss", "transport": "stdio", "command": py, "args": [str(AGENTS / "coordinator_agent.py")]},
        {
            "id": "counter",
            "capabilities": ["count"],
            "transport": "stdio",
            "command": py,
            "args": [str(AGENTS / "corpus_agent.py"), "--corpus", corpus],
        },
        {
            "id": "finder",
            "capabilities": ["search", "quote"],
            "transport": "stdio",
            "command": py,
            "args": [str(AGENTS / "corpus_agent.py"), "--corpus", corpus],
        },
    ]


def _run_json(path: Path, *extra: str, cwd: Path, timeout: float = 120.0) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli(
        "run", path, "--store", "memory://", "--output", "json", "-q", *extra, cwd=cwd, timeout=timeout
    )
    assert_no_traceback(err)
    data: dict[str, Any] = parse_json_stdout(out, err)
    return code, data


def test_hub_and_spoke_by_name_from_a_fresh_folder_answers_from_the_input(tmp_path: Path) -> None:
    """Ten lines of YAML: `uses: hub-and-spoke` + the user's agents; change the corpus and
    the answers change with it (no canned replies)."""
    wf = _write(
        tmp_path / "team.yaml",
        {
            "name": "my-team",
            "inputs": {"corpus": {"type": "string"}},
            "agents": _team(),
            "steps": [
                {
                    "step_id": "team",
                    "uses": "hub-and-spoke",
                    "with": {
                        "task": "- Count 'cache'.\n- Count 'shard'.\n- Search for 'replica'.",
                        "coordinator": "boss",
                    },
                }
            ],
            "outputs": {
                "answers": "{{ steps.team.result.result.merged }}",
                "by": "{{ steps.team.result.assignments }}",
            },
        },
    )
    seen = []
    for seed in (1, 2):
        corpus = _corpus(tmp_path / f"corpus{seed}", seed)
        code, data = _run_json(wf, "-i", f"corpus={corpus}", cwd=tmp_path)
        assert code == 0, data
        answers = data["outputs"]["answers"]
        assert {a["subtask_id"]: a["agent_id"] for a in data["outputs"]["by"]} == {
            "subtask-1": "counter",
            "subtask-2": "counter",
            "subtask-3": "finder",
        }
        for sid, term in (("subtask-1", "cache"), ("subtask-2", "shard")):
            assert answers[sid]["by_document"] == _counts(corpus, term)
            assert answers[sid]["total"] == sum(_counts(corpus, term).values())
        assert [d["document"] for d in answers["subtask-3"]["documents"]] == sorted(_counts(corpus, "replica"))
        assert data["steps"]["team/work"]["status"] == "completed" and len(data["steps"]["team/work"]["result"]) == 3
        seen.append(answers)
    assert seen[0] != seen[1]


@pytest.mark.parametrize(
    ("with_", "problem"),
    [
        ({"task": "x"}, r"'hub-and-spoke' needs input 'coordinator'"),
        (
            {"task": "x", "coordinator": "boss", "workers": "counter"},
            r"input 'workers' of 'hub-and-spoke'.*not of type 'array'",
        ),
        (
            {"task": "x", "coordinator": "boss", "wokers": ["counter"]},
            r"no input 'wokers' \(did you mean 'workers'\?\)",
        ),
        ({"task": "", "coordinator": "boss"}, r"input 'task' of 'hub-and-spoke'"),
    ],
)
def test_wrong_with_inputs_are_exit_2_at_the_input(tmp_path: Path, with_: dict[str, Any], problem: str) -> None:
    wf = _write(
        tmp_path / "bad.yaml",
        {
            "name": "bad",
            "agents": _team("/nowhere"),
            "steps": [{"step_id": "team", "uses": "hub-and-spoke", "with": with_}],
        },
    )
    for command in ("validate", "run"):
        code, out, err = run_cli(command, wf, "--store", "memory://", cwd=tmp_path)
        assert code == 2, (command, out, err)
        assert re.search(rf"bad\.yaml:\d+:\d+: .*{problem}", out + err), (command, out + err)
        assert_no_traceback(err)


def test_an_unknown_pattern_name_is_exit_2_with_a_suggestion(tmp_path: Path) -> None:
    wf = _write(
        tmp_path / "typo.yaml",
        {"name": "t", "agents": _team("/nowhere"), "steps": [{"step_id": "s", "uses": "hub-and-spokes", "with": {}}]},
    )
    code, out, err = run_cli("validate", wf, cwd=tmp_path)
    assert code == 2 and re.search(
        r"typo\.yaml:\d+:\d+: unknown pattern 'hub-and-spokes' \(did you mean 'hub-and-spoke'\?\)", out + err
    )


def test_failures_inside_a_team_are_reported_per_inner_step(tmp_path: Path) -> None:
    """A worker failing one subtask (after max_attempts) fails `work`: merge is skipped, the
    other workers' results stay in `work`'s result. No capable worker: nothing assigned, `work`
    is a completed fan-out over 0 items and merge has nothing to merge. An undeclared
    coordinator fails the call, naming it. An empty top-level for_each is completed too."""
    corpus = _corpus(tmp_path / "corpus", 3)
    calls = [
        (
            "worker_fails",
            {"task": "- Count 'cache'.\n- Count how often latency appears.\n- Quote 'queue'.", "coordinator": "boss"},
        ),
        (
            "none_capable",
            {"task": "- Count 'cache'. [capabilities: count]", "coordinator": "boss", "workers": ["finder"]},
        ),
        ("ghost", {"task": "- Count 'cache'.", "coordinator": "ghost"}),
    ]
    steps: list[dict[str, Any]] = [
        {"step_id": sid, "uses": "hub-and-spoke", "with": w, "continue_on_error": True} for sid, w in calls
    ]
    steps.append(
        {
            "step_id": "nothing",
            "for_each": "{{ [] }}",
            "assigned_agent_id": "counter",
            "tool_to_call": "count",
            "tool_arguments": {"term": "{{ item }}"},
        }
    )
    wf = _write(tmp_path / "fails.yaml", {"name": "fails", "agents": _team(str(corpus)), "steps": steps})
    code, data = _run_json(wf, cwd=tmp_path)
    assert code == 0, data  # every failing call is continue_on_error
    s = data["steps"]

    work = s["worker_fails/work"]
    assert work["status"] == "failed" and work["attempts"] == 2  # hub-and-spoke's max_attempts default
    assert "item 1" in work["error"] and "no quoted term" in work["error"]
    assert work["result"][0]["subtask-1"]["total"] == sum(_counts(corpus, "cache").values())
    assert work["result"][1] is None and "subtask-3" in work["result"][2]
    assert s["worker_fails/merge"]["status"] == "skipped"
    assert s["worker_fails"]["status"] == "failed" and "worker_fails/work" in s["worker_fails"]["error"]

    assert s["none_capable/assign"]["result"]["assignments"] == []
    assert "no agent with capabilities [count]" in s["none_capable/assign"]["result"]["unassigned"][0]["reason"]
    assert s["none_capable/work"] == {**s["none_capable/work"], "status": "completed", "result": []}
    assert s["none_capable/merge"]["status"] == "failed" and "must not be empty" in s["none_capable/merge"]["error"]

    assert s["ghost"]["status"] == "failed" and "agent 'ghost'" in s["ghost"]["error"]
    assert "hub-and-spoke.yaml" in s["ghost"]["error"]
    assert s["nothing"]["status"] == "completed" and s["nothing"]["result"] == []
