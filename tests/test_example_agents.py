"""The example agents (examples/agents/) and the ready-to-run workflows (workflows/).

The agents are driven for real: in-process through ``mcp.Client(server)``, over stdio as
child processes (the knowledge base must persist across two of them), and over
streamable HTTP (``--http PORT``). The workflows are checked against the agents they
name (every tool exists, literal arguments fit its input schema, templates parse in
Jinja's sandbox and reference only ancestor steps), and run end to end with the
``runner`` CLI once the CLI is installed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `examples` is imported as a package from the project root
    sys.path.insert(0, str(ROOT))

from examples.agents import kb_agent, math_agent, text_agent  # noqa: E402

T = TypeVar("T")
WORKFLOWS = sorted((ROOT / "workflows").glob("*.yaml"))


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function; an assertion failing inside the SDK's task groups is
    re-raised bare so pytest shows its diff instead of nested exception groups."""
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except Exception as exc:
        leaves = _leaves(exc)
        if len(leaves) == 1 and leaves[0] is not exc:
            raise leaves[0] from None
        raise


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; duck-typed for Python 3.10."""
    subs = getattr(exc, "exceptions", None)
    if isinstance(subs, tuple):
        return [leaf for sub in subs for leaf in _leaves(sub)]
    return [exc]


async def _call(client: Client, tool: str, args: dict[str, Any] | None = None) -> Any:
    """Call a tool that must succeed; unwrap the SDK's ``{"result": x}`` like the runner does."""
    r = await client.call_tool(tool, args or {})
    assert not r.is_error, f"{tool} failed: {r.content}"
    sc = r.structured_content
    assert sc is not None, f"{tool} returned no structuredContent"
    return sc["result"] if list(sc) == ["result"] else sc


async def _error(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail with an error result; return its message."""
    r = await client.call_tool(tool, args)
    assert r.is_error, f"{tool} unexpectedly succeeded: {r.structured_content}"
    return " ".join(getattr(c, "text", "") for c in r.content)


# --- text agent --------------------------------------------------------------------------


def test_text_agent_tools_are_typed_and_structured() -> None:
    async def go() -> None:
        async with Client(text_agent.server) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) >= {"word_count", "keywords", "summarize", "sentiment", "split_sentences", "upper", "join"}
        for t in tools.values():
            assert t.output_schema is not None, t.name
            assert t.description, t.name
        assert tools["keywords"].input_schema["properties"]["top"]["default"] == 5
        assert set(tools["word_count"].output_schema["properties"]) == {"words", "lines", "chars"}

    _run(go)


def test_text_agent_results() -> None:
    text = (
        "The runner schedules steps. Steps call agents, and agents answer!\n"
        "\n"
        "Retries help. A failed step is retried by the runner with backoff?  Yes."
    )

    async def go() -> None:
        async with Client(text_agent.server) as c:
            assert await _call(c, "word_count", {"text": text}) == {"words": 23, "lines": 3, "chars": len(text)}
            assert await _call(c, "word_count", {"text": ""}) == {"words": 0, "lines": 0, "chars": 0}
            # "steps" folds into "step" (3) because "step" occurs too; "agents" has no singular
            # in the text and stays. "runner" and "agents" tie (2): first seen comes first.
            assert await _call(c, "keywords", {"text": text, "top": 3}) == ["step", "runner", "agents"]
            assert await _call(c, "keywords", {"text": "the and of to a"}) == []
            assert await _call(c, "split_sentences", {"text": text}) == [
                "The runner schedules steps.",
                "Steps call agents, and agents answer!",
                "Retries help.",
                "A failed step is retried by the runner with backoff?",
                "Yes.",
            ]
            # Scores (summed keyword frequency / sqrt(terms)): sentence 4 = 8/sqrt(5) = 3.58,
            # sentence 1 = 6/sqrt(3) = 3.46, sentence 2 = 7/sqrt(5) = 3.13. Top two, in text order.
            summary = await _call(c, "summarize", {"text": text, "max_sentences": 2})
            assert summary == "The runner schedules steps. A failed step is retried by the runner with backoff?"
            assert await _call(c, "summarize", {"text": text, "max_sentences": 1}) == (
                "A failed step is retried by the runner with backoff?"
            )
            assert await _call(c, "summarize", {"text": "Only one.", "max_sentences": 3}) == "Only one."
            assert await _call(c, "upper", {"text": "abc"}) == "ABC"
            assert await _call(c, "join", {"parts": ["a", "b"]}) == "a\nb"
            assert await _call(c, "join", {"parts": ["a", "b"], "sep": ", "}) == "a, b"
            # A str result is also plain text content, unquoted.
            r = await c.call_tool("upper", {"text": "hi"})
            assert r.content[0].text == "HI"

    _run(go)


def test_text_agent_sentiment() -> None:
    async def go() -> None:
        async with Client(text_agent.server) as c:
            good = await _call(c, "sentiment", {"text": "A great, reliable and fast tool. I love it."})
            assert good == {"score": 1.0, "label": "positive", "positive": 4, "negative": 0}
            bad = await _call(c, "sentiment", {"text": "Slow, buggy, and it crashed. Good docs though."})
            assert bad["label"] == "negative" and (bad["positive"], bad["negative"]) == (1, 3)
            assert bad["score"] == -0.5
            negated = await _call(c, "sentiment", {"text": "This is not good."})
            assert (negated["label"], negated["negative"]) == ("negative", 1)
            neutral = await _call(c, "sentiment", {"text": "The file has ten lines."})
            assert neutral == {"score": 0.0, "label": "neutral", "positive": 0, "negative": 0}

    _run(go)


# --- math agent --------------------------------------------------------------------------


def test_math_agent() -> None:
    async def go() -> None:
        async with Client(math_agent.server) as c:
            total = await _call(c, "add", {"a": 2, "b": 3})
            assert total == 5 and isinstance(total, int)
            assert await _call(c, "add", {"a": 2.5, "b": 1}) == 3.5
            assert await _call(c, "multiply", {"a": 6, "b": 7}) == 42
            assert await _call(c, "divide", {"a": 1, "b": 4}) == 0.25
            assert "b: division by zero" in await _error(c, "divide", {"a": 1, "b": 0})
            assert await _call(c, "sum_list", {"numbers": [1, 2, 3.5]}) == 6.5
            assert await _call(c, "sum_list", {"numbers": []}) == 0
            stats = await _call(c, "stats", {"numbers": [3, 5, 8, 13]})
            assert stats == {"count": 4, "sum": 29, "mean": 7.25, "min": 3, "max": 13}
            assert "numbers: need at least one number" in await _error(c, "stats", {"numbers": []})
            assert "seconds" in await _error(c, "sleep", {"seconds": -1})
            started = time.perf_counter()
            assert await _call(c, "sleep", {"seconds": 0.05}) == 0.05
            assert time.perf_counter() - started >= 0.045
            # flaky: two planned failures for this key, then success on attempt 3.
            for attempt in (1, 2):
                assert f"planned failure {attempt} of 2" in await _error(c, "flaky", {"key": "t", "fail_times": 2})
            assert await _call(c, "flaky", {"key": "t", "fail_times": 2}) == {"key": "t", "attempt": 3}
            assert await _call(c, "flaky", {"key": "other", "fail_times": 0}) == {"key": "other", "attempt": 1}

    _run(go)


# --- knowledge-base agent ----------------------------------------------------------------


@pytest.fixture
def kb_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nested" / "dir" / "kb.json"  # directories are created on first write
    monkeypatch.setenv("KB_PATH", str(path))
    return path


def test_kb_add_search_get_list_count_delete(kb_file: Path) -> None:
    async def go() -> None:
        async with Client(kb_agent.server) as c:
            assert await _call(c, "count") == 0
            assert await _call(c, "search", {"query": "anything"}) == []
            first = await _call(
                c,
                "add_note",
                {"title": "Retrying failed steps", "body": "A step is retried with backoff.", "tags": ["retry"]},
            )
            assert first == {"id": "n1", "title": "Retrying failed steps", "created": True}
            second = await _call(
                c,
                "add_note",
                {"title": "Fan-out", "body": "A for_each step retries each item.", "tags": ["for_each", "steps"]},
            )
            assert second["id"] == "n2"
            await _call(c, "add_note", {"title": "Stores", "body": "SQLite or PostgreSQL."})
            assert await _call(c, "count") == 3

            # Title 3, tag 2, body 1 per query word; plurals fold ("steps", "retries"), other
            # inflections do not ("retried"). n1: step 3 (title) + 1 (body), retry 2 (tag) = 6.
            # n2: step 2 (tag "steps") + 1 (body), retry 1 (body "retries") = 4. n3: nothing.
            hits = await _call(c, "search", {"query": "retry step"})
            assert [h["id"] for h in hits] == ["n1", "n2"]
            assert [h["score"] for h in hits] == [6, 4]
            assert hits[0]["snippet"] == "A step is retried with backoff."
            assert [h["id"] for h in await _call(c, "search", {"query": "retry step", "limit": 1})] == ["n1"]
            assert [h["id"] for h in await _call(c, "search", {"query": "for_each"})] == ["n2"]
            assert await _call(c, "search", {"query": "the of and"}) == []
            assert "limit: must be at least 1" in await _error(c, "search", {"query": "x", "limit": 0})

            note = await _call(c, "get_note", {"id": "n2"})
            assert note == {
                "id": "n2",
                "title": "Fan-out",
                "body": "A for_each step retries each item.",
                "tags": ["for_each", "steps"],
            }
            message = await _error(c, "get_note", {"id": "nope"})
            assert "no note with id 'nope'" in message and "n1, n2, n3" in message

            assert [n["id"] for n in await _call(c, "list_notes")] == ["n1", "n2", "n3"]
            assert await _call(c, "list_notes", {"tag": "STEPS"}) == [
                {"id": "n2", "title": "Fan-out", "tags": ["for_each", "steps"]}
            ]

            # Same title (case and spacing aside) updates in place: same id, no new note.
            again = await _call(c, "add_note", {"title": "  fan-OUT ", "body": "Updated.", "tags": ["x", "X", " "]})
            assert again == {"id": "n2", "title": "fan-OUT", "created": False}
            assert (await _call(c, "get_note", {"id": "n2"}))["tags"] == ["x"]
            assert await _call(c, "count") == 3

            assert await _call(c, "delete_note", {"id": "n1"}) == {"id": "n1", "deleted": True}
            assert "no note with id 'n1'" in await _error(c, "delete_note", {"id": "n1"})
            new = await _call(c, "add_note", {"title": "Later", "body": "b"})
            assert new["id"] == "n4"  # ids are never reused
            assert "title: must not be empty" in await _error(c, "add_note", {"title": "  ", "body": "b"})

    _run(go)
    data = json.loads(kb_file.read_text(encoding="utf-8"))
    assert [n["id"] for n in data["notes"]] == ["n2", "n3", "n4"]
    leftovers = [p.name for p in kb_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # every write went through a temp file that replaced the original


def test_kb_reports_a_corrupt_file(kb_file: Path) -> None:
    kb_file.parent.mkdir(parents=True)
    kb_file.write_text("{not json", encoding="utf-8")

    async def go() -> None:
        async with Client(kb_agent.server) as c:
            assert "is not valid JSON" in await _error(c, "count", {})
            assert "is not valid JSON" in await _error(c, "add_note", {"title": "t", "body": "b"})

    _run(go)
    assert kb_file.read_text(encoding="utf-8") == "{not json"  # a failed write changes nothing


def _stdio(script: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=[f"examples/agents/{script}"], cwd=str(ROOT), env=env or {}
    )


def test_kb_persists_across_two_stdio_processes(tmp_path: Path) -> None:
    env = {"KB_PATH": str(tmp_path / "kb.json")}

    async def first() -> None:
        async with Client(_stdio("kb_agent.py", env)) as c:
            assert (await _call(c, "add_note", {"title": "Alpha", "body": "first note", "tags": ["a"]}))["id"] == "n1"
            assert (await _call(c, "add_note", {"title": "Beta", "body": "second note"}))["id"] == "n2"

    async def second() -> None:
        async with Client(_stdio("kb_agent.py", env)) as c:
            assert await _call(c, "count") == 2
            assert (await _call(c, "get_note", {"id": "n1"}))["body"] == "first note"
            assert [h["title"] for h in await _call(c, "search", {"query": "second"})] == ["Beta"]
            # Over the wire, a missing note is an error result carrying the tool's message.
            assert "no note with id 'n7'" in await _error(c, "get_note", {"id": "n7"})

    _run(first)
    _run(second)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def text_agent_http() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "examples/agents/text_agent.py", "--http", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"text agent did not listen on {port}: {err}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_text_agent_over_streamable_http(text_agent_http: str) -> None:
    async def go() -> None:
        async with Client(text_agent_http) as c:
            assert await _call(c, "word_count", {"text": "one two\nthree"}) == {"words": 3, "lines": 2, "chars": 13}

    _run(go)


# --- workflows ---------------------------------------------------------------------------

_WORKFLOW_KEYS = {"name", "description", "inputs", "agents", "concurrency", "timeout", "steps", "finally", "outputs"}
_AGENT_KEYS = {
    "id", "name", "role", "capabilities", "transport", "command", "args", "env", "cwd",
    "url", "headers", "module", "max_concurrency", "required",
}  # fmt: skip
_STEP_KEYS = {
    "step_id", "description", "assigned_role", "assigned_agent_id", "required_capabilities",
    "depends_on", "tool_to_call", "tool_arguments", "if", "retry", "timeout",
    "continue_on_error", "for_each", "max_parallel", "fallback_agents",
}  # fmt: skip
_RETRY_KEYS = {"max_attempts", "delay", "backoff", "max_delay", "jitter"}
_STEP_REF = re.compile(r"\bsteps\.([A-Za-z0-9_-]+)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _ancestors(steps: dict[str, dict[str, Any]], step_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(steps[step_id].get("depends_on", []))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(steps[dep].get("depends_on", []))
    return seen


def _agent_for(step: dict[str, Any], agents: list[dict[str, Any]]) -> dict[str, Any]:
    if "assigned_agent_id" in step:
        return next(a for a in agents if a["id"] == step["assigned_agent_id"])
    role, caps = step.get("assigned_role"), set(step.get("required_capabilities", []))
    matches = [a for a in agents if (role is None or a.get("role") == role) and caps <= set(a.get("capabilities", []))]
    assert len(matches) == 1, f"step {step['step_id']}: expected one matching agent, got {matches}"
    return matches[0]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_fits_the_spec_and_its_agents(path: Path) -> None:
    """Field names, agent paths, tools and argument names, template syntax, step references."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=../schemas/workflow.schema.json\n")
    wf = yaml.safe_load(text)
    assert set(wf) <= _WORKFLOW_KEYS and re.fullmatch(r"[a-z0-9][a-z0-9-_]*", wf["name"])
    assert wf["name"] == path.stem
    agents: list[dict[str, Any]] = wf["agents"]
    servers = {}
    for agent in agents:
        assert set(agent) <= _AGENT_KEYS, agent
        assert agent["transport"] == "stdio" and agent["command"] == "python"
        script = (path.parent / agent["cwd"]).resolve() / agent["args"][0]
        assert script.is_file() and script.parent == ROOT / "examples" / "agents"
        servers[agent["id"]] = importlib.import_module(f"examples.agents.{script.stem}").server

    async def list_tools() -> dict[str, dict[str, Any]]:
        out = {}
        for agent_id, server in servers.items():
            async with Client(server) as c:
                out[agent_id] = {t.name: t.input_schema for t in (await c.list_tools()).tools}
        return out

    tools = _run(list_tools)
    steps = {s["step_id"]: s for s in wf["steps"] + wf.get("finally", [])}
    assert len(steps) == len(wf["steps"]) + len(wf.get("finally", []))
    sandbox = SandboxedEnvironment()
    for step in steps.values():
        assert set(step) <= _STEP_KEYS, step
        assert set(step.get("retry", {})) <= _RETRY_KEYS
        schema = tools[_agent_for(step, agents)["id"]][step["tool_to_call"]]
        args = step.get("tool_arguments", {})
        assert set(args) <= set(schema["properties"]), step["step_id"]
        assert set(schema.get("required", [])) <= set(args), step["step_id"]
        in_finally = step in wf.get("finally", [])
        allowed = set(steps) if in_finally else _ancestors(steps, step["step_id"])
        for template in _strings([step.get(k) for k in ("tool_arguments", "if", "for_each")]):
            sandbox.parse(template)
            assert set(_STEP_REF.findall(template)) <= allowed, (step["step_id"], template)
    for template in _strings([wf.get("outputs"), [a.get("env") for a in agents]]):
        sandbox.parse(template)
        assert set(_STEP_REF.findall(template)) <= set(steps)


# --- workflows, run end to end by the runner CLI -----------------------------------------


def _cli_available() -> bool:
    """Whether ``runner.cli.main`` imports: these tests wait for the CLI, not for its parts."""
    try:
        importlib.import_module("runner.cli.main")
    except ImportError:
        return False
    return True


needs_cli = pytest.mark.skipif(not _cli_available(), reason="the runner CLI (runner.cli.main) is not importable yet")
_RUNNER = [sys.executable, "-c", "import sys; from runner.cli.main import main; sys.exit(main())"]


def _runner_run(path: str, tmp_path: Path, *inputs: str) -> dict[str, Any]:
    cmd = [*_RUNNER, "run", path, "--output", "json", "--store", f"sqlite:///{tmp_path / 'runner.db'}"]
    for item in inputs:
        cmd += ["-i", item]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["status"] == "completed"
    return result


@needs_cli
def test_runner_validates_every_workflow() -> None:
    proc = subprocess.run(
        [*_RUNNER, "validate", *(str(p.relative_to(ROOT)) for p in WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_cli
def test_run_hello_workflow(tmp_path: Path) -> None:
    out = _runner_run("workflows/hello.yaml", tmp_path)["outputs"]
    assert out["words"] == 95
    assert out["keywords"] == ["step", "workflow", "agent", "depend", "yaml"]
    assert out["summary"].startswith("Each step of the workflow is a tool call on an agent")
    assert out["report"].splitlines() == [
        "Words: 95 in 1 lines",
        "Keywords: step, workflow, agent, depend, yaml",
        f"Summary: {out['summary']}",
    ]


@needs_cli
def test_run_knowledge_base_workflow(tmp_path: Path) -> None:
    kb = tmp_path / "kb.json"
    result = _runner_run("workflows/knowledge-base.yaml", tmp_path, f"kb_path={kb}")
    out = result["outputs"]
    assert out["ids"] == ["n1", "n2"] and out["notes_in_kb"] == 2
    assert out["hits"] == ["Retrying failed steps", "Fanning out with for_each"]
    assert out["best"] == "Retrying failed steps"
    assert out["digest"] == (
        "A for_each step runs its tool once per item of a list, at most max_parallel items at a time."
        " The step's result is the list of per-item results in item order, and a failed item fails"
        " the step after its own retries."
    )
    fetched = result["steps"]["fetch"]["result"]
    assert [n["id"] for n in fetched] == ["n1", "n2"] and fetched[1]["tags"] == ["for_each", "steps"]
    assert len(json.loads(kb.read_text(encoding="utf-8"))["notes"]) == 2


@needs_cli
def test_run_retry_and_fallback_workflow(tmp_path: Path) -> None:
    result = _runner_run("workflows/retry-and-fallback.yaml", tmp_path)
    steps, out = result["steps"], result["outputs"]
    assert steps["warmup"]["attempts"] == 3 and steps["warmup"]["status"] == "completed"
    assert steps["scaled"]["status"] == "failed" and "division by zero" in steps["scaled"]["error"]
    assert steps["unscaled"]["status"] == "completed"
    assert out == {
        "total": 29,
        "fallback_used": True,
        "division_error": steps["scaled"]["error"],
        "warmup_attempts": 3,
        "mean": 7.25,
    }
    assert steps["notify"]["result"] == "retry-and-fallback finished: completed"

    ok = _runner_run("workflows/retry-and-fallback.yaml", tmp_path, "divisor=2")
    assert ok["steps"]["unscaled"]["status"] == "skipped"
    assert ok["outputs"]["total"] == 14.5 and ok["outputs"]["fallback_used"] is False
