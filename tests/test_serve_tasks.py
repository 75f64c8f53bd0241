"""The task tools and the file-lock tools of ``runner serve`` (SPEC §5), over MCP.

decompose_task asks an agent with the ``task_decomposition`` capability (here the
example text agent over stdio), else the client's model through MCP sampling (both
protocol eras), else the text's structure — and says which. assign_subtasks follows
capabilities and load; merge_results is deterministic. File locks are leases over globs
with exact overlap and fencing tokens; force release is the operator's.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from runner.model import AgentSpec, TransportKind
from runner.server.app import build_server
from runner.service.orchestrator import Orchestrator
from runner.service.policy import Principal
from runner.store import open_store
from tests.serve_support import ok, refused

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
TEXT_AGENT = ROOT / "examples" / "agents" / "text_agent.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def orch(tmp_path: Path) -> AsyncIterator[Orchestrator]:
    store = open_store(f"sqlite:///{tmp_path}/runner.db")
    try:
        yield Orchestrator(store, claim_queued=False)
    finally:
        store.close()


def sampler(answer: str, seen: list[str]) -> Any:
    async def sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        seen.append(params.messages[0].content.text)  # type: ignore[union-attr]
        return types.CreateMessageResult(
            role="assistant", model="fake", content=types.TextContent(type="text", text=answer), stop_reason="endTurn"
        )

    return sampling


TASK = "Ship the parser:\n1. write the grammar [capabilities: python]\n2. then test it (needs: qa)\n3. document it"


async def test_decompose_by_structure_when_no_agent_and_no_sampling(orch: Orchestrator) -> None:
    async with Client(build_server(orch)) as c:
        got = await ok(c, "decompose_task", {"task": TASK})
        assert got["method"] == "structure" and got["count"] == 3
        assert [s["description"] for s in got["subtasks"]] == ["write the grammar", "then test it", "document it"]
        assert got["subtasks"][0]["required_capabilities"] == ["python"]
        assert got["subtasks"][1]["depends_on"] == ["subtask-1"]
        assert any("sampling" in n for n in got["notes"]) and any("task_decomposition" in n for n in got["notes"])
        other = await ok(c, "decompose_task", {"task": "Read the spec. Write the code. Ship it."})
        assert [s["description"] for s in other["subtasks"]] != [s["description"] for s in got["subtasks"]]
        await refused(c, "decompose_task", {"task": "  "}, "task")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_decompose_by_the_clients_model_through_sampling(orch: Orchestrator, mode: str) -> None:
    seen: list[str] = []
    answer = '[{"description": "design the API", "required_capabilities": ["design"]}, {"description": "build it", "depends_on": [1], "priority": "high"}]'
    async with Client(build_server(orch), mode=mode, sampling_callback=sampler(answer, seen)) as c:  # type: ignore[arg-type]
        got = await ok(c, "decompose_task", {"task": "Make an API for the billing service."})
    assert got["method"] == "sampling" and len(seen) == 1 and "billing service" in seen[0]
    assert got["subtasks"][0] == {"id": "subtask-1", "description": "design the API", "required_capabilities": ["design"],
                                  "depends_on": [], "priority": "medium"}
    assert got["subtasks"][1]["depends_on"] == ["subtask-1"] and got["subtasks"][1]["priority"] == "high"


async def test_a_useless_sampling_answer_falls_back_to_structure_and_says_so(orch: Orchestrator) -> None:
    async with Client(build_server(orch), sampling_callback=sampler("I cannot help with that", [])) as c:
        got = await ok(c, "decompose_task", {"task": TASK})
    # Free text is still split by its structure: one sentence here, so one subtask from the model.
    assert got["method"] in ("sampling", "structure") and got["count"] >= 1


async def test_decompose_by_an_agent_with_the_capability(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/runner.db")
    decomposer = AgentSpec(
        id="splitter", transport=TransportKind.STDIO, command=sys.executable, args=(str(TEXT_AGENT),),
        capabilities=("task_decomposition",),
    )
    orch = Orchestrator(store, operator_agents=[decomposer], claim_queued=False)
    seen: list[str] = []
    try:
        async with Client(build_server(orch), sampling_callback=sampler("[]", seen)) as c:
            got = await ok(c, "decompose_task", {
                "task": "Parse the billing logs. Summarize the python errors.",
                "available_models": [{"id": "w", "capabilities": ["python", "billing"]}],
            })
    finally:
        store.close()
    assert got["method"] == "agent:splitter" and seen == []  # the agent answered: no sampling
    assert [s["description"] for s in got["subtasks"]] == ["Parse the billing logs.", "Summarize the python errors."]
    assert got["subtasks"][0]["required_capabilities"] == ["billing"]
    assert got["subtasks"][1]["required_capabilities"] == ["python"] and got["subtasks"][1]["depends_on"] == ["part-1"]


async def test_assign_follows_capabilities_and_load(orch: Orchestrator) -> None:
    async with Client(build_server(orch)) as c:
        for aid, caps in (("py1", ["python"]), ("py2", ["python"]), ("qa", ["qa"]), ("down", ["python"])):
            await ok(c, "register_agent", {"id": aid, "name": aid, "role": "worker", "capabilities": caps})
        await ok(c, "heartbeat", {"agent_id": "down", "status": "offline"})
        subtasks = [
            {"id": "a", "description": "x", "required_capabilities": ["python"]},
            {"id": "b", "description": "y", "required_capabilities": ["python"]},
            {"id": "c", "description": "z", "required_capabilities": ["qa"]},
            {"id": "d", "description": "w", "required_capabilities": ["rust"]},
        ]
        got = await ok(c, "assign_subtasks", {"subtasks": subtasks})
        chosen = {a["subtask_id"]: a["agent_id"] for a in got["assignments"]}
        assert chosen == {"a": "py1", "b": "py2", "c": "qa"}  # balanced; the offline agent is skipped
        assert [u["subtask_id"] for u in got["unassigned"]] == ["d"] and "rust" in got["unassigned"][0]["reason"]
        # py1 now has a pull step in flight (a delegated subtask): the next python work goes to py2 first
        await ok(c, "delegate_subtask", {"coordinator_agent_id": "operator", "assigned_agent_id": "py1",
                                         "subtask_id": "busy", "subtask_description": "keep py1 busy"})
        orch.executor.start()
        for _ in range(50):
            if orch.store.list_assignments(agent_id="py1"):
                break
            import anyio

            await anyio.sleep(0.1)
        again = await ok(c, "assign_subtasks", {"subtasks": subtasks[:1]})
        assert again["assignments"][0]["agent_id"] == "py2" and again["load_before"] == {"py1": 1}
        await refused(c, "assign_subtasks", {"subtasks": [{"description": "no id"}]}, "subtasks")
        await orch.executor.aclose()


async def test_merge_results_is_deterministic_and_reports_conflicts(orch: Orchestrator) -> None:
    async with Client(build_server(orch)) as c:
        got = await ok(c, "merge_results", {"results": [{"a": 1, "b": {"c": [1]}}, {"subtask_id": "s2", "result": {"a": 2, "b": {"d": 3}}}]})
        assert got["strategy"] == "dict" and got["merged"] == {"a": 1, "b": {"c": [1], "d": 3}}
        assert got["conflicts"][0]["path"] == "a" and got["conflicts"][0]["values"] == [1, 2]
        texts = await ok(c, "merge_results", {"results": ["one", "two", "one"]})
        assert texts["strategy"] == "text" and texts["merged"].count("one") == 1
        assert (await ok(c, "merge_results", {"results": [[1, 2], [2, 3]]}))["merged"] == [1, 2, 3]


async def test_file_locks_over_globs_with_fencing_tokens(orch: Orchestrator) -> None:
    async with Client(build_server(orch)) as c:
        first = await ok(c, "acquire_file_lock", {"agent_id": "a1", "file_path": "src/**/*.py", "ttl_seconds": 60})
        assert first["granted"] and first["fencing_token"] >= 1
        clash = await ok(c, "acquire_file_lock", {"agent_id": "a2", "file_path": "src/pkg/mod.py"})
        assert not clash["granted"] and clash["conflicts"][0]["agent_id"] == "a1"
        assert clash["conflicts"][0]["example"] == "src/pkg/mod.py"
        free = await ok(c, "acquire_file_lock", {"agent_id": "a2", "file_path": "src/**/*.txt"})
        assert free["granted"]  # *.py and *.txt share no path
        held = await ok(c, "check_file_lock", {"file_path": "src/x.py"})
        assert held["locked"] and [x["agent_id"] for x in held["locks"]] == ["a1"]
        renewed = await ok(c, "renew_file_lock", {"agent_id": "a1", "file_path": "src/**/*.py", "ttl_seconds": 120})
        assert renewed["fencing_token"] == first["fencing_token"] and renewed["expires_at"] > first["expires_at"]
        await refused(c, "renew_file_lock", {"agent_id": "a2", "file_path": "src/**/*.py"}, "file_path")
        assert (await ok(c, "release_file_lock", {"agent_id": "a1", "file_path": "src/**/*.py"}))["released"]
        again = await ok(c, "acquire_file_lock", {"agent_id": "a2", "file_path": "src/**/*.py"})
        assert again["granted"] and again["fencing_token"] > first["fencing_token"]  # never reused
        await refused(c, "acquire_file_lock", {"agent_id": "a1", "file_path": "../etc/passwd"}, "file_path")
        await refused(c, "acquire_file_lock", {"agent_id": "a1", "file_path": "x", "ttl_seconds": -1}, "ttl_seconds")
        forced = await ok(c, "release_file_lock", {"agent_id": "operator", "file_path": "src/**/*.py", "force": True})
        assert forced["released"]


async def test_force_release_is_the_operators(orch: Orchestrator) -> None:
    orch.agents.register("w1", "W1", "worker")
    orch.locks.acquire("w2", "docs/*.md")
    as_w1 = build_server(orch, principal=Principal(agent_id="w1", role="worker"))
    async with Client(as_w1) as c:
        await refused(c, "release_file_lock", {"agent_id": "w1", "file_path": "docs/*.md", "force": True}, "force=true")
        await refused(c, "release_file_lock", {"agent_id": "w2", "file_path": "docs/*.md"}, "agent_id")
        mine = await ok(c, "acquire_file_lock", {"agent_id": "w1", "file_path": "src/*.py"})
        assert mine["granted"]
    assert orch.locks.check("docs/a.md")["locked"]  # nothing was released
    audit = orch.store.list_audit(actor="w1")
    assert [e["detail"]["outcome"].split(":")[0] for e in audit[:3]] == ["ok", "refused", "refused"]
