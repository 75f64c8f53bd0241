"""The example agents the pattern examples use (coordinator, corpus, pipeline), driven
in-process through ``mcp.Client(server)``: their answers depend on their input, and the
numbers they give are recomputed here from the same files."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `examples` is imported as a package from the project root
    sys.path.insert(0, str(ROOT))

from examples.agents import coordinator_agent, corpus_agent, pipeline_agent  # noqa: E402

T = TypeVar("T")
CORPUS = ROOT / "examples" / "hub-and-spoke" / "corpus"
NOTES = ROOT / "examples" / "peer-to-peer" / "notes"
DOCS = ROOT / "examples" / "assembly-line" / "docs"


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


async def _call(server: Any, tool: str, args: dict[str, Any]) -> Any:
    async with Client(server) as c:
        res = await c.call_tool(tool, args)
        assert not res.is_error, res.content
        data = res.structured_content
        return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


async def _error(server: Any, tool: str, args: dict[str, Any]) -> str:
    async with Client(server) as c:
        res = await c.call_tool(tool, args)
        assert res.is_error
        return " ".join(getattr(x, "text", "") for x in res.content)


def _occurrences(folder: Path, term: str) -> dict[str, int]:
    pat = re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)", re.IGNORECASE)
    out = {}
    for p in sorted(folder.rglob("*.md")):
        n = len(pat.findall(p.read_text()))
        if n:
            out[p.relative_to(folder).as_posix()] = n
    return out


def test_corpus_counts_searches_and_quotes_from_its_files() -> None:
    server = corpus_agent.build_server(CORPUS)
    expected = _occurrences(CORPUS, "latency")
    assert sum(expected.values()) >= 4  # the corpus is made to have several
    got = _run(lambda: _call(server, "count", {"term": "Latency"}))
    assert got["by_document"] == expected and got["total"] == sum(expected.values())
    found = _run(lambda: _call(server, "search", {"term": "cache"}))
    assert [d["document"] for d in found["documents"]] == sorted(_occurrences(CORPUS, "cache"))
    first = found["documents"][0]
    lines = (CORPUS / first["document"]).read_text().splitlines()
    assert all(re.search(r"(?i)\bcache\b", lines[n - 1]) for n in first["lines"])
    quote = _run(lambda: _call(server, "quote", {"term": "retry"}))
    assert "retry" in quote["sentence"].lower() and quote["sentence"] in " ".join(
        (CORPUS / quote["document"]).read_text().split()
    )
    sub = _run(
        lambda: _call(
            server, "perform_subtask", {"subtask_id": "s-1", "description": "How often does 'database' occur?"}
        )
    )
    assert sub["s-1"]["operation"] == "count"
    assert sub["s-1"]["total"] == sum(_occurrences(CORPUS, "database").values())
    msg = _run(lambda: _error(server, "perform_subtask", {"subtask_id": "s", "description": "count latency"}))
    assert "no quoted term" in msg


def test_a_peer_plans_by_capability_works_and_combines() -> None:
    storage = corpus_agent.build_server(NOTES / "storage")
    task = "count 'disk' in storage notes\ncount 'timeout' in network notes"
    plan = _run(
        lambda: _call(storage, "plan", {"task": task, "agent_id": "storage", "capabilities": ["notes:storage"]})
    )
    assert [o["total"] for o in plan["own"]] == [sum(_occurrences(NOTES / "storage", "disk").values())]
    assert plan["needs"] == [
        {
            "subtask_id": "storage-2",
            "capability": "notes:network",
            "description": "count 'timeout' in network notes",
            "from": "storage",
        }
    ]
    network = corpus_agent.build_server(NOTES / "network")
    assigned = [
        {
            "run_id": "r1",
            "workflow_id": "delegated-storage-2",
            "step_id": "storage-2",
            "arguments": {"subtask_description": "count 'timeout' in network notes", "coordinator_agent_id": "storage"},
        }
    ]
    reports = _run(lambda: _call(network, "work", {"agent_id": "network", "assigned": assigned}))
    assert reports[0]["result"]["total"] == sum(_occurrences(NOTES / "network", "timeout").values())
    assert reports[0]["result"]["requested_by"] == "storage" and reports[0]["step_id"] == "storage-2"
    answers = [{"result": reports[0]["result"]}, {"result": {"requested_by": "billing", "total": 99}}]
    final = _run(lambda: _call(storage, "combine", {"agent_id": "storage", "own": plan["own"], "answers": answers}))
    assert final["delegated"] == 1 and [a["answered_by"] for a in final["answers"]] == ["storage", "network"]


def test_coordinator_decomposes_assigns_and_merges() -> None:
    server = coordinator_agent.server
    models = [
        {"id": "lib", "capabilities": ["search", "quote"]},
        {"id": "stats", "capabilities": ["count"]},
    ]
    task = "1. Count how often 'latency' appears.\n2. Search for 'cache'.\n3. Quote 'retry'."
    dec = _run(lambda: _call(server, "decompose_task", {"task": task, "available_models": models}))
    assert [s["required_capabilities"] for s in dec["subtasks"]] == [["count"], ["search"], ["quote"]]
    asg = _run(lambda: _call(server, "assign_subtasks", {"subtasks": dec["subtasks"], "available_models": models}))
    assert [(a["agent_id"], a["description"]) for a in asg["assignments"]] == [
        ("stats", "Count how often 'latency' appears."),
        ("lib", "Search for 'cache'."),
        ("lib", "Quote 'retry'."),
    ]
    merged = _run(lambda: _call(server, "merge_results", {"results": [{"a": 1}, {"b": 2}, {"a": 3}]}))
    assert merged["merged"] == {"a": 1, "b": 2} and merged["conflicts"][0]["path"] == "a"


def test_coordinator_splits_a_repository_review_per_folder_then_per_file() -> None:
    server = coordinator_agent.server
    task = "Review the repository at /r\n/r/a/x.py\n/r/b/y.py\n/r/a/sub/z.py\n/r/top.py"
    dec = _run(lambda: _call(server, "decompose_task", {"task": task}))
    assert [s["id"] for s in dec["subtasks"]] == ["team-root", "team-a", "team-b"]
    divisions = _run(lambda: _call(server, "decompose_task", {"task": task.replace("/r\n", "/r by divisions\n", 1)}))
    assert [(s["id"], s["description"]) for s in divisions["subtasks"]] == [
        ("division-a", "Review the repository at /r/a\n/r/a/sub/z.py\n/r/a/x.py"),
        ("division-b", "Review the repository at /r/b\n/r/b/y.py"),
    ]
    team_a = dec["subtasks"][1]["description"]
    assert team_a == "Review the folder a of /r:\n- a/sub/z.py\n- a/x.py"
    files = _run(lambda: _call(server, "decompose_task", {"task": team_a}))
    assert [(s["id"], s["arguments"]) for s in files["subtasks"]] == [
        ("a/sub/z.py", {"path": "/r/a/sub/z.py"}),
        ("a/x.py", {"path": "/r/a/x.py"}),
    ]
    assert all(s["required_capabilities"] == ["read_files"] for s in files["subtasks"])
    texts = ["def f():\n    pass\n\n# TODO: more\n", "class A:\n    async def g(self): ...\n"]
    counts = _run(lambda: _call(server, "merge_results", {"results": [{"content": t} for t in texts]}))
    assert counts == {
        "files": 2,
        "lines": 6,
        "blank_lines": 1,
        "functions": 2,
        "classes": 1,
        "todos": 1,
        "bytes": sum(len(t) for t in texts),
    }
    teams = [
        {"task": team_a, "coordinator": "lead-a", "result": counts},
        {"task": "Review the folder b of /r:\n- b/y.py", "result": {"files": 1, "lines": 3}},
    ]
    report = _run(lambda: _call(server, "merge_results", {"results": teams}))
    assert report["folders"]["a"]["lines"] == 6 and report["folders"]["b"]["lines"] == 3
    assert report["totals"]["files"] == 3 and report["leads"] == {"a": "lead-a"}


def test_pipeline_stages_chain_and_an_html_only_extractor_refuses_markdown() -> None:
    full = pipeline_agent.build_server()
    md = (DOCS / "incident.md").read_text()
    doc = _run(lambda: _call(full, "extract", {"doc": {"content": md}}))
    assert doc["format"] == "markdown" and doc["title"] == "Checkout outage on 4 March" and "#" not in doc["text"]
    doc = _run(lambda: _call(full, "normalise", {"doc": doc}))
    assert doc["words"] == len(doc["text"].split()) and len(doc["sentences"]) >= 6
    doc = _run(lambda: _call(full, "classify", {"doc": doc}))
    assert doc["label"] == "incident" and {"timeout", "rollback"} <= set(doc["keywords"])
    out = _run(lambda: _call(full, "summarise", {"doc": doc}))
    assert out["label"] == "incident" and out["summary"] and out["summary"].split(". ")[0] in doc["text"]
    strict = pipeline_agent.build_server(("html",))
    msg = _run(lambda: _error(strict, "extract", {"doc": md}))
    assert "reads html, not markdown" in msg
    page = _run(lambda: _call(strict, "extract", {"doc": (DOCS / "release.html").read_text()}))
    assert (
        page["title"] == "Release 2.4 of the mobile app"
        and "analytics" not in page["text"]
        and "&amp;" not in page["text"]
    )
    label = _run(lambda: _call(full, "classify", {"doc": page}))
    assert label["label"] == "release"
