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
import shutil
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
    other workers' results stay in `work`'s result. No capable worker: nothing assigned, so
    `work` fails before calling anyone, naming the subtask and why, and merge is skipped. An
    undeclared coordinator fails the call, naming it. An empty top-level for_each is completed."""
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
    assert s["none_capable/work"]["status"] == "failed" and s["none_capable/work"]["attempts"] == 0
    assert (
        "no subtask was assigned: no worker can take subtask-1 (no agent with capabilities [count])"
        in s["none_capable/work"]["error"]
    )
    assert s["none_capable/merge"]["status"] == "skipped"
    assert "none_capable/work" in s["none_capable"]["error"]

    assert s["ghost"]["status"] == "failed" and "agent 'ghost'" in s["ghost"]["error"]
    assert "hub-and-spoke.yaml" in s["ghost"]["error"]
    assert s["nothing"]["status"] == "completed" and s["nothing"]["result"] == []


def _readme_commands(example: str) -> list[str]:
    """The `runner ...` lines of the README's ```sh blocks, comments dropped."""
    text = (REPO / "examples" / example / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    lines = [ln.split("  #")[0].strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith("runner ")]


def _checkout(tmp_path: Path) -> Path:
    """A user's checkout as the READMEs see it: examples/ and .peers/ at its root (links to
    this repository's), nothing else — runs leave their store (.runner/, p2p.db) here."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "examples").symlink_to(REPO / "examples")
    if (REPO / ".peers").exists():
        (root / ".peers").symlink_to(REPO / ".peers")
    return root


def _shell(line: str, cwd: Path) -> tuple[int, str, str]:
    argv = shlex.split(line)
    assert argv[0] == "runner"
    return run_cli(*argv[1:], cwd=cwd, timeout=180)


def test_hub_and_spoke_readme_commands_work_verbatim(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    corpus = REPO / "examples" / "hub-and-spoke" / "corpus"
    commands = _readme_commands("hub-and-spoke")
    assert len(commands) == 2
    code, out, err = _shell(commands[1], root)  # the first is run by tests/test_examples_patterns.py
    assert code == 0, out + err
    answers = json.loads(re.search(r"^answers: (.*)$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert answers["subtask-1"]["total"] == sum(_counts(corpus, "cache").values())
    assert "replica" in answers["subtask-2"]["sentence"].lower()
    assert (root / ".runner" / "runner.db").exists()  # the default store, relative to the current directory


def test_peer_to_peer_readme_store_commands_work_verbatim(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    commands = [c for c in _readme_commands("peer-to-peer") if "p2p.db" in c]
    assert len(commands) == 2
    code, out, err = _shell(commands[0], root)
    assert code == 0, out + err
    code, out, err = _shell(commands[1], root)
    assert code == 0, out + err
    runs = [ln.split() for ln in out.splitlines() if "delegated-" in ln]
    assert len(runs) == 4 and all(r[2] == "completed" for r in runs)  # the four delegated questions


def test_the_wheel_ships_the_patterns(tmp_path: Path) -> None:
    """`uses: hub-and-spoke` resolves in an installed runner: runner/patterns/*.yaml are in
    the wheel as files (the symlink followed), identical to patterns/. Built from a copy:
    setuptools leaves a build/ directory in the tree it builds, which the repository-review
    examples would then count."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", ".peers", "build", "*.egg-info", "__pycache__", ".runner"),
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "-w",
            str(tmp_path / "dist"),
            "--no-deps",
            "-q",
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    [wheel] = glob.glob(str(tmp_path / "dist" / "*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.rsplit("/", 1)[1]: z.read(n) for n in z.namelist() if n.startswith("runner/patterns/")}
    assert shipped == {p.name: p.read_bytes() for p in PATTERNS.glob("*.yaml")}
    assert {"hub-and-spoke.yaml", "assembly-line.yaml", "hierarchical.yaml", "peer-to-peer.yaml"} <= set(shipped)


def _tree(root: Path, folders: int, per_folder: int, seed: int) -> dict[str, dict[str, int]]:
    """A generated repository of Python files, and the counts a review must find in it."""
    rng = random.Random(seed)
    expected: dict[str, dict[str, int]] = {}
    for f in range(folders):
        name = f"pkg{f}"
        c = expected.setdefault(
            name, dict.fromkeys(("files", "lines", "blank_lines", "functions", "classes", "todos", "bytes"), 0)
        )
        for i in range(per_folder):
            defs, classes, todos, blanks = rng.randint(0, 5), rng.randint(0, 2), rng.randint(0, 2), rng.randint(0, 4)
            body = [f"def f{k}(x):\n    return x + {k}" for k in range(defs)]
            body += [f"class C{k}:\n    async def m(self):\n        pass" for k in range(classes)]
            body += [f"# TODO item {k}" for k in range(todos)] + [""] * blanks
            rng.shuffle(body)
            text = "\n".join(body) + "\n"
            path = root / name / ("sub" if i % 3 == 0 else "") / f"m{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            lines = text.splitlines()
            c["files"] += 1
            c["lines"] += len(lines)
            c["blank_lines"] += sum(1 for x in lines if not x.strip())
            c["functions"] += defs + classes
            c["classes"] += classes
            c["todos"] += todos
            c["bytes"] += len(text.encode())
    return expected


def test_hierarchical_example_on_a_tree_of_sixty_workers_adds_up(tmp_path: Path) -> None:
    """The example's own workflow pointed at a generated tree: 6 teams, 60 worker calls,
    counts per folder and in total as computed here."""
    require_node()
    require_peer(FS_JS, "@modelcontextprotocol/server-filesystem")
    tree = tmp_path / "tree"
    expected = _tree(tree, folders=6, per_folder=10, seed=7)
    events = tmp_path / "events.jsonl"
    code, data = _run_json(
        REPO / "examples" / "hierarchical" / "workflow.yaml",
        "-i",
        f"root={tree}",
        "--events",
        str(events),
        cwd=tmp_path,
        timeout=300,
    )
    assert code == 0, data
    report = data["outputs"]["report"]
    assert report["folders"] == expected and report["teams"] == 6
    assert report["totals"] == {k: sum(c[k] for c in expected.values()) for k in next(iter(expected.values()))}
    assert report["totals"]["files"] == 60
    reads = [
        e
        for e in map(json.loads, events.read_text().splitlines())
        if e["type"] == "item_completed" and e.get("agent_id") == "files"
    ]
    assert len(reads) == 60
    assert set(report["leads"]) == set(expected) and set(report["leads"].values()) == {"lead-a", "lead-b"}


def _header_names(path: Path, section: str) -> list[str]:
    """The names a pattern's header lists under ``# Inputs`` / ``# Outputs``."""
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line[1:])
    names: list[str] = []
    inside = False
    for line in head:
        if re.match(r"^ (Inputs|Outputs|Agents|Usage|When)\b", line):
            inside = line.strip() == section
            continue
        if inside and not line.strip():
            inside = False
        m = re.match(r"^   ([A-Za-z_][A-Za-z0-9_]*(?:, [A-Za-z_][A-Za-z0-9_]*)*):?\s", line + " ")
        if inside and m:
            names += m.group(1).split(", ")
    return names


@pytest.mark.parametrize("name", ["hub-and-spoke", "assembly-line", "hierarchical", "peer-to-peer"])
def test_each_pattern_header_lists_exactly_its_inputs_and_outputs(name: str) -> None:
    path = PATTERNS / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    assert sorted(_header_names(path, "Inputs")) == sorted(data["inputs"])
    assert sorted(_header_names(path, "Outputs")) == sorted(data["outputs"])


def test_an_expanded_example_runs_to_the_same_outputs(tmp_path: Path) -> None:
    src = REPO / "examples" / "hub-and-spoke" / "workflow.yaml"
    expanded = tmp_path / "expanded.yaml"
    code, out, err = run_cli("expand", src, "--output", expanded, cwd=tmp_path)
    assert code == 0, err
    questions = "- Count 'database'.\n- Quote 'cache'.\n- Search for 'latency'."
    code1, original = _run_json(src, "-i", f"questions={questions}", cwd=tmp_path)
    code2, inlined = _run_json(expanded, "-i", f"questions={questions}", cwd=tmp_path)
    assert code1 == code2 == 0
    assert original["outputs"] == inlined["outputs"]
    assert set(original["steps"]) == set(inlined["steps"]) >= {"answer/decompose", "answer/work", "answer/merge"}


def test_patterns_and_examples_validate_clean() -> None:
    code, out, err = run_cli("validate", "patterns/", "examples/")
    assert code == 0, out + err
    assert re.fullmatch(r"ok: 2 path\(s\) valid\s*", out + err), out + err


def test_peer_to_peer_with_a_need_no_peer_can_meet_fails_at_delegate(tmp_path: Path) -> None:
    """What the header says: a need without a peer having its capability fails `delegate`
    (that item), before any work is handed out, naming the capability, who needs it, and
    for which subtask (not Jinja's "No first item, sequence was empty")."""
    notes = REPO / "examples" / "peer-to-peer" / "notes"
    py = sys.executable
    peers = [
        {
            "id": team,
            "capabilities": [f"notes:{team}"],
            "transport": "stdio",
            "command": py,
            "args": [str(AGENTS / "corpus_agent.py"), "--corpus", str(notes / team)],
        }
        for team in ("storage", "network")
    ]
    task = "count 'disk' in storage notes\ncount 'refund' in billing notes"
    wf = _write(
        tmp_path / "p2p.yaml",
        {
            "name": "unmet",
            "agents": peers,
            "steps": [
                {
                    "step_id": "x",
                    "uses": "peer-to-peer",
                    "with": {"peers": ["storage", "network"], "tasks": [{"peer": "storage", "task": task}]},
                }
            ],
        },
    )
    code, out, err = run_cli("run", wf, "--store", "memory://", "--output", "json", "-q", cwd=tmp_path)
    data = parse_json_stdout(out, err)
    assert code == 1 and data["status"] == "failed"
    # -q hides the live view, not why the run failed (docs/cli.md): the failed steps, then the verdict
    unmet = "no peer has capability 'notes:billing' (needed by storage for subtask storage-2)"
    assert re.search(rf"^FAIL  x/delegate — item 0: .*{re.escape(unmet)}", err, re.MULTILINE), err
    assert "sequence was empty" not in err
    assert err.splitlines()[-1] == "run failed: step(s) failed: x/delegate", err  # the nested step, not just x
    s = data["steps"]
    assert s["x/plan"]["result"][0]["needs"][0]["capability"] == "notes:billing"
    assert s["x/discover"]["result"][0]["agents"] == []  # nobody registered notes:billing
    assert s["x/delegate"]["status"] == "failed"
    assert "item 0" in s["x/delegate"]["error"] and unmet in s["x/delegate"]["error"]
    assert s["x/work"]["status"] == "skipped"


def test_hierarchical_of_question_teams_keeps_each_teams_answers(tmp_path: Path) -> None:
    """The example coordinator aggregates any teams, not only the repository review's: two
    leads' hub-and-spoke answers reach the top merge whole, kept apart by team. The worker
    declares no capability, so only hierarchical's default `workers` (every agent but the
    coordinator and the leads) keeps the leads from handing work to each other or the top."""
    corpus = _corpus(tmp_path / "corpus", 5)
    py = sys.executable
    coordinators = [
        {"id": i, "transport": "stdio", "command": py, "args": [str(AGENTS / "coordinator_agent.py")]}
        for i in ("boss", "lead-a", "lead-b")
    ]
    worker = {
        "id": "w",
        "transport": "stdio",
        "command": py,
        "args": [str(AGENTS / "corpus_agent.py"), "--corpus", str(corpus)],
    }
    wf = _write(
        tmp_path / "org.yaml",
        {
            "name": "org",
            "agents": [*coordinators, worker],
            "steps": [
                {
                    "step_id": "org",
                    "uses": "hierarchical",
                    "with": {
                        "task": "- Count 'cache'. Count 'shard'.\n- Count 'queue'. Search for 'disk'.",
                        "coordinator": "boss",
                        "leads": ["lead-a", "lead-b"],
                    },
                }
            ],
            "outputs": {"r": "{{ steps.org.result.result }}"},
        },
    )
    code, data = _run_json(wf, cwd=tmp_path)
    assert code == 0, data
    assert {
        a["agent_id"] for t in (0, 1) for a in data["steps"][f"org/teams[{t}]/assign"]["result"]["assignments"]
    } == {"w"}
    r = data["outputs"]["r"]
    assert r["leads"] == {"team-1": "lead-a", "team-2": "lead-b"} and r["conflicts"] == []
    one, two = r["merged"]["team-1"]["merged"], r["merged"]["team-2"]["merged"]
    assert one["subtask-1"]["total"] == sum(_counts(corpus, "cache").values())
    assert one["subtask-2"]["total"] == sum(_counts(corpus, "shard").values())
    assert two["subtask-1"]["total"] == sum(_counts(corpus, "queue").values())
    assert [d["document"] for d in two["subtask-2"]["documents"]] == sorted(_counts(corpus, "disk"))
