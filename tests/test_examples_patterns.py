"""The pattern examples (examples/<scenario>/workflow.yaml), each run end to end through the
``runner`` CLI in a subprocess with its real agents (Python MCP servers from
examples/agents/, the third-party filesystem server), offline.

Every number checked here is recomputed by the test from the files the agents read (the
corpus, the notes, the documents, this repository), so only real work passes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    NPM_MODULES,
    REPO,
    assert_no_traceback,
    parse_json_stdout,
    require_node,
    require_peer,
    run_cli,
)

EXAMPLES = REPO / "examples"
FS_JS = NPM_MODULES / "server-filesystem" / "dist" / "index.js"


def _run(example: str, *extra: str, events: Path | None = None, timeout: float = 120.0) -> dict[str, Any]:
    args: list[str | Path] = [
        "run",
        EXAMPLES / example / "workflow.yaml",
        "--store",
        "memory://",
        "--output",
        "json",
        "-q",
    ]
    if events is not None:
        args += ["--events", events]
    code, out, err = run_cli(*args, *extra, timeout=timeout)
    assert_no_traceback(err)
    assert code == 0, f"exit {code}\n{out}\n{err}"
    result: dict[str, Any] = parse_json_stdout(out, err)
    return result


def _occurrences(folder: Path, term: str) -> dict[str, int]:
    pat = re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)", re.IGNORECASE)
    found = {p.relative_to(folder).as_posix(): len(pat.findall(p.read_text())) for p in sorted(folder.rglob("*.md"))}
    return {k: v for k, v in found.items() if v}


def test_hub_and_spoke_answers_questions_from_the_corpus() -> None:
    corpus = EXAMPLES / "hub-and-spoke" / "corpus"
    out = _run("hub-and-spoke")
    answers = out["outputs"]["answers"]
    by_agent = {a["subtask_id"]: a["agent_id"] for a in out["outputs"]["assignments"]}
    assert by_agent == {
        "subtask-1": "statistician",
        "subtask-2": "librarian",
        "subtask-3": "librarian",
        "subtask-4": "statistician",
    }
    latency = _occurrences(corpus, "latency")
    assert answers["subtask-1"]["total"] == sum(latency.values()) and answers["subtask-1"]["by_document"] == latency
    assert [d["document"] for d in answers["subtask-2"]["documents"]] == sorted(_occurrences(corpus, "cache"))
    quote = answers["subtask-3"]
    assert "retry" in quote["sentence"].lower()
    assert quote["sentence"] in " ".join((corpus / quote["document"]).read_text().split())
    assert answers["subtask-4"]["total"] == sum(_occurrences(corpus, "database").values())


@pytest.mark.parametrize(
    ("document", "label", "extractor"),
    [("docs/incident.md", "incident", "pipeline"), ("docs/release.html", "release", "html-extractor")],
)
def test_assembly_line_folds_a_document_through_its_stages(
    document: str, label: str, extractor: str, tmp_path: Path
) -> None:
    require_node()
    require_peer(FS_JS, "@modelcontextprotocol/server-filesystem")
    events = tmp_path / "events.jsonl"
    out = _run("assembly-line", "-i", f"document={document}", events=events)
    summary = out["outputs"]["summary"]
    source = (EXAMPLES / "assembly-line" / document).read_text()
    title = re.search(r"^# (.+)$|<title>(.+?)</title>", source, re.MULTILINE)
    assert title is not None and summary["title"] == (title.group(1) or title.group(2))
    assert summary["label"] == label
    flat = " ".join(re.sub(r"<[^>]+>", " ", source).replace("&amp;", "&").split())
    for sentence in re.split(r"(?<=[.!?])\s+", summary["summary"]):
        assert sentence in flat
    # the extract stage (item 1) ran on the HTML-only extractor, or on its alternate after it failed
    assert out["outputs"]["agents"] == ["files", extractor, "pipeline", "pipeline", "pipeline"]
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    refused = [e for e in lines if "reads html, not markdown" in str(e.get("error"))]
    assert bool(refused) == (extractor == "pipeline")
    assert all(e["agent_id"] == "html-extractor" for e in refused)


def _fs_review_counts(root: Path) -> dict[str, dict[str, int]]:
    """What the review must find: every *.py file outside hidden folders, __pycache__ and
    *.egg-info (the filesystem server's search with the example's exclusions), counted."""
    folders: dict[str, dict[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and d != "__pycache__" and not d.endswith(".egg-info")
        ]
        for f in filenames:
            if not f.endswith(".py") or f.startswith("."):
                continue
            path = Path(dirpath) / f
            rel = path.relative_to(root)
            folder = rel.parts[0] if len(rel.parts) > 1 else "."
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            c = folders.setdefault(
                folder, dict.fromkeys(("files", "lines", "blank_lines", "functions", "classes", "todos", "bytes"), 0)
            )
            c["files"] += 1
            c["lines"] += len(lines)
            c["blank_lines"] += sum(1 for x in lines if not x.strip())
            c["functions"] += len(re.findall(r"^\s*(?:async\s+)?def\s", text, re.MULTILINE))
            c["classes"] += len(re.findall(r"^\s*class\s", text, re.MULTILINE))
            c["todos"] += len(re.findall(r"\b(?:TODO|FIXME|XXX)\b", text))
            c["bytes"] += len(text.encode())
    return folders


def _ts(e: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


def _time_split(lines: list[dict[str, Any]]) -> tuple[float, float, float, int]:
    """(run wall seconds, seconds with at least one agent call in flight, summed seconds of
    all agent calls, agent calls): the wall time with no call in flight is the runner's own
    (preflight and agent start-up, scheduling, templating, journaling)."""
    begun = ("step_started", "item_started")
    ended = ("step_completed", "step_failed", "item_completed", "item_failed")
    open_calls: dict[tuple[Any, ...], list[float]] = {}
    spans = []
    for e in lines:
        key = (e.get("step_id"), e.get("index"), e.get("attempt"))
        if e["type"] in begun and e.get("agent_id"):
            open_calls.setdefault(key, []).append(_ts(e))
        elif e["type"] in ended and e.get("agent_id") and open_calls.get(key):
            spans.append((open_calls[key].pop(0), _ts(e)))
    spans.sort()
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            busy += b - max(a, end)
            end = b
    run = [_ts(e) for e in lines if e["type"] in ("run_started", "run_completed", "run_failed")]
    return max(run) - min(run), busy, sum(b - a for a, b in spans), len(spans)


def test_hierarchical_reviews_this_repository_with_a_team_per_folder(tmp_path: Path) -> None:
    require_node()
    require_peer(FS_JS, "@modelcontextprotocol/server-filesystem")
    expected = _fs_review_counts(REPO)
    events = tmp_path / "events.jsonl"
    out = _run("hierarchical", events=events, timeout=300)
    report = out["outputs"]["report"]
    assert report["folders"] == expected
    files = sum(c["files"] for c in expected.values())
    assert files >= 50 and report["totals"]["files"] == files
    assert report["totals"]["lines"] == sum(c["lines"] for c in expected.values())
    assert set(report["leads"].values()) == {"lead-a", "lead-b"}  # both leads led teams
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    reads = [e for e in lines if e["type"] == "item_completed" and e.get("agent_id") == "files"]
    assert len(reads) == files  # one worker call per file
    wall, busy, summed, calls = _time_split(lines)
    pre = out["preflight_ms"] / 1000
    print(
        f"\nhierarchical review: {files} files, {len(expected)} teams, {calls} agent calls; run {wall:.2f}s "
        f"(preflight {pre:.2f}s); agent calls: in flight {busy:.2f}s, summed {summed:.2f}s; "
        f"no call in flight after preflight {wall - pre - busy:.2f}s ({(wall - pre - busy) / wall:.0%} of the run)"
    )


def test_peer_to_peer_peers_delegate_by_capability_through_runner_serve(tmp_path: Path) -> None:
    notes = EXAMPLES / "peer-to-peer" / "notes"
    events = tmp_path / "events.jsonl"
    out = _run("peer-to-peer", events=events)
    answers = {a["agent_id"]: a for a in out["outputs"]["answers"]}
    assert set(answers) == {"storage", "network", "billing"}

    def total(shard: str, term: str) -> int:
        return sum(_occurrences(notes / shard, term).values())

    storage = answers["storage"]["answers"]
    assert [(a["answered_by"], a["operation"], a["term"]) for a in storage] == [
        ("storage", "count", "disk"),
        ("network", "count", "timeout"),
        ("billing", "quote", "rollback"),
    ]
    assert storage[0]["total"] == total("storage", "disk") and storage[1]["total"] == total("network", "timeout")
    assert "rollback" in storage[2]["sentence"].lower() and storage[2]["document"] in {"invoices.md", "refunds.md"}
    network = answers["network"]["answers"]
    assert network[0]["total"] == total("network", "timeout")
    assert [d["document"] for d in network[1]["documents"]] == sorted(_occurrences(notes / "storage", "checksum"))
    billing = answers["billing"]["answers"]
    assert billing[0]["total"] == total("billing", "refund") and billing[1]["answered_by"] == "network"
    assert sum(a["delegated"] for a in answers.values()) == 4
    assert {(d["coordinator_agent_id"], d["assigned_agent_id"]) for d in out["outputs"]["delegated"]} == {
        ("storage", "network"),
        ("storage", "billing"),
        ("network", "storage"),
        ("billing", "network"),
    }
    # each peer reported its progress on the work delegated to it, one notification per answer
    progress = [json.loads(x) for x in events.read_text().splitlines() if '"step_progress"' in x]
    assert sorted(p["message"] for p in progress) == sorted(
        f"{d['assigned_agent_id']}: {d['subtask_id']} answered" for d in out["outputs"]["delegated"]
    )


def test_runner_serve_itself_can_coordinate_a_hub_and_spoke() -> None:
    """The pattern asks only for the task tools: `runner serve`'s own (decompose by the
    text's structure, assign by capability) coordinate the corpus specialists."""
    code, out, err = run_cli(
        "run", REPO / "tests/fixtures/patterns/serve-coordinates.yaml", "--store", "memory://", "--output", "json", "-q"
    )
    assert code == 0, out + err
    outputs = parse_json_stdout(out, err)["outputs"]
    assert {a["subtask_id"]: a["agent_id"] for a in outputs["assignments"]} == {
        "subtask-1": "statistician",
        "subtask-2": "librarian",
    }
    corpus = EXAMPLES / "hub-and-spoke" / "corpus"
    assert outputs["answers"]["subtask-1"]["total"] == sum(_occurrences(corpus, "latency").values())
    assert "cache" in outputs["answers"]["subtask-2"]["sentence"].lower()


def test_a_deeper_tree_nests_hierarchical_once_more() -> None:
    """Four levels (coordinator -> heads of division -> team leads -> file readers): each
    division's report counts its sub-folders, the top one adds the divisions up."""
    require_node()
    require_peer(FS_JS, "@modelcontextprotocol/server-filesystem")
    code, out, err = run_cli(
        "run",
        REPO / "tests/fixtures/patterns/deep-review.yaml",
        "--store",
        "memory://",
        "--output",
        "json",
        "-q",
        timeout=300,
    )
    assert code == 0, out + err
    result = parse_json_stdout(out, err)
    by_division = {k: v for k, v in _fs_review_counts(REPO).items() if k != "."}  # root files head no division
    assert result["outputs"]["report"]["folders"] == by_division
    for report in result["outputs"]["divisions"]:
        division = next(k for k, v in by_division.items() if v == report["totals"])
        assert report["folders"] == _fs_review_counts(REPO / division)
