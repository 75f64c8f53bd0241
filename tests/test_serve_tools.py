"""The tools of ``runner serve`` (SPEC §5, §8) answering from real state, in process.

``Client(build_server(orch))`` on a real SQLite file: the operator's view (no tokens in
process). What each tool returns must follow from its inputs and from what the store
holds: workflows validated exactly like ``runner validate`` and not stored when invalid,
messages delivered once, anti-jam checks computed from real heartbeats and messages,
collaboration, assistance and evaluations depending on who has which capability, a
delegated subtask that is a real pull step. Bad arguments are error results naming the
argument, and change nothing. Identity and roles over HTTP are in test_serve_security.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.agents import AgentPool
from runner.server.app import build_server
from runner.service.orchestrator import Orchestrator
from runner.store import open_store
from tests.conftest import parse_json_stdout, run_cli
from tests.serve_support import assigned, ok, refused

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/runner.db"


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[Any]:
    from mcp import Client

    store = open_store(store_url)
    orch = Orchestrator(store, pool=AgentPool(), poll_s=0.1)
    try:
        async with Client(build_server(orch)) as c:
            yield c
    finally:
        store.close()


async def register(c: Any, agent_id: str, role: str = "worker", caps: list[str] | None = None, **extra: Any) -> str:
    got = await ok(c, "register_agent", {"id": agent_id, "name": agent_id.title(), "role": role, "capabilities": caps or [], **extra})
    assert got["agent"]["id"] == agent_id and got["token"].startswith("rat_")
    return str(got["token"])


# -- the tool list --------------------------------------------------------------------------------

SEED_PARAMETERS = {
    "register_agent": {"id", "name", "role", "model_type", "model_version", "capabilities"},
    "deregister_agent": {"agent_id"},
    "find_agents": {"capabilities", "role", "statuses", "model_type", "group", "active_within_seconds"},
    "define_workflow": {"creator_id", "name", "description", "steps", "workflow_yaml"},
    "execute_workflow": {"workflow_id", "triggering_agent_id", "inputs"},
    "report_step_completion": {"workflow_id", "step_id", "agent_id", "result", "run_id"},
    "report_step_failure": {"workflow_id", "step_id", "agent_id", "error_message", "run_id"},
    "delegate_subtask": {"coordinator_agent_id", "assigned_agent_id", "subtask_id", "subtask_description",
                         "contextual_data", "parent_task_id", "deadline"},
    "create_collaboration_session": {"title", "description", "participant_model_ids", "coordinator_model_id"},
    "request_assistance": {"requesting_agent_id", "task_description", "target_agent_id", "required_capabilities", "urgency"},
    "evaluate_contribution": {"evaluating_agent_id", "contributing_agent_id", "contribution_ref",
                              "evaluation_criteria", "comments"},
    "check_agent_responsiveness": {"agent_id", "threshold_seconds"},
    "check_message_recipient_status": {"sender_id", "time_window_seconds", "responsiveness_threshold_seconds"},
    "check_message_frequency": {"agent_id", "time_window_seconds", "frequency_threshold"},
    "create_project": {"name", "description", "lead_agent_id", "initial_status"},
    "create_goal": {"name", "description", "project_id", "initial_status"},
    "heartbeat": {"agent_id", "status", "current_task"},
    "send_message": {"sender_id", "recipient_id", "content", "urgent"},
    "get_messages": {"agent_id", "since", "unread_only"},
    "get_run": {"run_id", "wait_seconds"},
    "cancel_run": {"run_id", "agent_id"},
    "list_assigned_steps": {"agent_id"},
    "rotate_agent_token": {"agent_id"},
    "get_audit_log": {"since", "agent_id", "limit"},
    "get_workflow": {"workflow_id"},
    "list_workflows": set(),
    "decompose_task": {"task", "available_models"},
    "assign_subtasks": {"subtasks", "available_models"},
    "merge_results": {"results"},
    "acquire_file_lock": {"agent_id", "file_path", "exclusive", "ttl_seconds"},
    "renew_file_lock": {"agent_id", "file_path", "ttl_seconds"},
    "release_file_lock": {"agent_id", "file_path", "force"},
    "check_file_lock": {"file_path"},
}


async def test_every_tool_has_the_seed_parameters_and_a_description(client: Any) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    missing = sorted(set(SEED_PARAMETERS) - set(tools))
    assert not missing, f"tools missing: {missing}"
    for name, params in SEED_PARAMETERS.items():
        schema = tools[name].input_schema
        props = set(schema.get("properties", {}))
        assert params <= props, f"{name}: lacks parameter(s) {sorted(params - props)}"
        assert "ctx" not in props and "sampled" not in props, f"{name}: a resolved parameter leaks into the schema"
        desc = tools[name].description or ""
        assert len(desc) >= 30, f"{name}: description too short for an LLM to choose it: {desc!r}"


# -- define_workflow --------------------------------------------------------------------------------

INVALID_YAML = """\
name: broken
steps:
  - step_id: a
    assigned_agent_id: w1
    depends_on: [nowhere]
  - step_id: a
    assigned_agent_id: w1
    bogus_key: 1
  - step_id: c
    assigned_agent_id: ghost
    depends_on: [a]
"""


async def test_invalid_workflow_is_not_stored_and_errors_match_runner_validate(client: Any, tmp_path: Path) -> None:
    await register(client, "w1")
    before = await ok(client, "list_workflows")
    got = await ok(client, "define_workflow", {"workflow_yaml": INVALID_YAML})
    assert got["valid"] is False and got.get("stored") is False
    errors = got["errors"]
    assert len(errors) >= 3, errors
    for e in errors:
        assert {"message", "path", "line", "col"} <= set(e), e
        assert e["path"].startswith("$"), e
    paths = {e["path"] for e in errors}
    assert any("depends_on" in p for p in paths), paths
    assert any("bogus_key" in p or p.startswith("$.steps[1]") for p in paths), paths
    assert any("assigned_agent_id" in p and "[2]" in p for p in paths), paths
    # Nothing stored: the list is unchanged and the name is unknown.
    assert await ok(client, "list_workflows") == before
    await refused(client, "get_workflow", {"workflow_id": "broken"}, "workflow_id")
    # "validated exactly as `runner validate`": the same problems, with the same paths.
    f = tmp_path / "broken.yaml"
    f.write_text(INVALID_YAML, encoding="utf-8")
    reg = tmp_path / "agents.yaml"
    reg.write_text("agents:\n  - {id: w1, role: worker, transport: pull}\n", encoding="utf-8")
    code, out, err = run_cli("validate", f, "--format", "json", "--agents", reg)
    assert code == 2, err
    cli = parse_json_stdout(out, err)
    assert sorted((e["path"], e["message"]) for e in cli) == sorted((e["path"], e["message"]) for e in errors)
    assert sorted((e["line"], e["col"]) for e in cli) == sorted((e["line"], e["col"]) for e in errors)


async def test_define_from_steps_returns_planned_order_and_stores_a_version(client: Any) -> None:
    await register(client, "w1", caps=["review"])
    steps = [
        {"step_id": "fetch", "description": "get it", "assigned_agent_id": "w1", "status": "pending"},
        {"step_id": "left", "depends_on": ["fetch"], "assigned_role": "worker"},
        {"step_id": "right", "depends_on": ["fetch"], "required_capabilities": ["review"]},
        {"step_id": "join", "depends_on": ["left", "right"], "assigned_agent_id": "w1"},
    ]
    got = await ok(client, "define_workflow", {"name": "diamond", "description": "a diamond", "steps": steps})
    assert got["valid"] is True and got["errors"] == [] and got["workflow_id"] == "diamond"
    assert got["order"] == [["fetch"], ["left", "right"], ["join"]] or [sorted(x) for x in got["order"]] == [
        ["fetch"], ["left", "right"], ["join"]]
    first = got["version"]
    wf = await ok(client, "get_workflow", {"workflow_id": "diamond"})
    assert [s["step_id"] for s in wf["steps"]] == ["fetch", "left", "right", "join"]
    assert wf["steps"][3]["depends_on"] == ["left", "right"]
    assert wf["description"] == "a diamond" and wf["creator_id"] == "operator"
    # A new definition is a new version; get_workflow gives the latest.
    steps2 = [*steps[:1], {"step_id": "only", "depends_on": ["fetch"], "assigned_agent_id": "w1"}]
    again = await ok(client, "define_workflow", {"name": "diamond", "steps": steps2})
    assert again["version"] == first + 1
    assert [s["step_id"] for s in (await ok(client, "get_workflow", {"workflow_id": "diamond"}))["steps"]] == ["fetch", "only"]


async def test_redefining_an_earlier_version_makes_it_the_current_one(client: Any) -> None:
    """Define A, then B, then A again: the workflow is A now (get_workflow and what runs)."""
    await register(client, "w1")
    a = [{"step_id": "alpha", "assigned_agent_id": "w1"}]
    b = [{"step_id": "beta", "assigned_agent_id": "w1"}]
    await ok(client, "define_workflow", {"name": "flip", "steps": a})
    await ok(client, "define_workflow", {"name": "flip", "steps": b})
    third = await ok(client, "define_workflow", {"name": "flip", "steps": a})
    current = await ok(client, "get_workflow", {"workflow_id": "flip"})
    assert [s["step_id"] for s in current["steps"]] == ["alpha"], (
        f"define_workflow answered version {third['version']} but the current workflow is still "
        f"v{current['version']} with steps {[s['step_id'] for s in current['steps']]}"
    )


@pytest.mark.parametrize(
    "agent,needle",
    [
        ("{id: local, transport: stdio, command: sh, args: ['-c', 'touch /tmp/pwned']}", "stdio"),
        ("{id: local, transport: inprocess, module: 'os:system'}", "inprocess"),
    ],
)
async def test_workflow_over_mcp_cannot_declare_stdio_or_inprocess_agents(client: Any, agent: str, needle: str) -> None:
    text = f"name: sneaky\nagents:\n  - {agent}\nsteps:\n  - step_id: a\n    assigned_agent_id: local\n    tool_to_call: x\n"
    got = await ok(client, "define_workflow", {"workflow_yaml": text})
    assert got["valid"] is False and got["errors"], got
    assert any(e["path"] == "$.agents[0].transport" and needle in e["message"] for e in got["errors"]), got["errors"]
    await refused(client, "get_workflow", {"workflow_id": "sneaky"}, "sneaky")


async def test_workflow_over_mcp_cannot_read_secrets(client: Any) -> None:
    await register(client, "w1")
    steps = [{"step_id": "a", "assigned_agent_id": "w1", "tool_arguments": {"k": "{{ secrets.API_KEY }}"}}]
    got = await ok(client, "define_workflow", {"name": "leaky", "steps": steps})
    assert got["valid"] is False and any("secrets" in e["message"] for e in got["errors"]), got
    await refused(client, "get_workflow", {"workflow_id": "leaky"})


async def test_operator_workflows_are_protected_unless_agent_modifiable(client: Any, store_url: str, tmp_path: Path) -> None:
    """A workflow the operator ran from a file is not overwritten over MCP, unless it says agent_modifiable: true."""
    await register(client, "w1")
    for name, flag in (("locked", ""), ("open", "agent_modifiable: true\n")):
        f = tmp_path / f"{name}.yaml"
        f.write_text(f"name: {name}\n{flag}agents:\n  - {{id: w1, transport: pull}}\nsteps:\n  - step_id: s\n"
                     "    assigned_agent_id: w1\n", encoding="utf-8")
        code, out, err = run_cli("run", f, "--detach", "--store", store_url, cwd=tmp_path)
        assert code == 0, err
    steps = [{"step_id": "hijack", "assigned_agent_id": "w1"}]
    await refused(client, "define_workflow", {"name": "locked", "steps": steps}, "locked", "agent_modifiable")
    kept = await ok(client, "get_workflow", {"workflow_id": "locked"})
    assert [s["step_id"] for s in kept["steps"]] == ["s"] and kept["origin"] != "mcp"
    got = await ok(client, "define_workflow", {"name": "open", "steps": steps})
    assert got["valid"] is True, got
    assert [s["step_id"] for s in (await ok(client, "get_workflow", {"workflow_id": "open"}))["steps"]] == ["hijack"]


@pytest.mark.parametrize(
    "args,argument",
    [
        ({"name": "x"}, "steps"),
        ({"name": "bad name!", "steps": [{"step_id": "a"}]}, "name"),
        ({"name": "x", "steps": []}, "steps"),
        ({"name": "x", "steps": ["not an object"]}, "steps"),
        ({"workflow_yaml": "   "}, "workflow_yaml"),
        ({"name": "x", "steps": [{"step_id": "a"}], "workflow_yaml": "name: x\nsteps: []\n"}, "workflow_yaml"),
    ],
)
async def test_define_workflow_bad_arguments_name_the_argument(client: Any, args: dict[str, Any], argument: str) -> None:
    before = await ok(client, "list_workflows")
    await refused(client, "define_workflow", args, argument)
    assert await ok(client, "list_workflows") == before


# -- agents ------------------------------------------------------------------------------------------


async def test_find_agents_applies_every_filter(client: Any) -> None:
    await register(client, "a1", "worker", ["py", "review"], model_type="claude", group="red")
    await register(client, "a2", "worker", ["py"], model_type="gpt", group="blue")
    await register(client, "a3", "coordinator", ["plan"], model_type="claude", group="red")
    await ok(client, "heartbeat", {"agent_id": "a2", "status": "working", "current_task": "t-9"})

    async def ids(**f: Any) -> list[str]:
        got = await ok(client, "find_agents", f)
        assert got["count"] == len(got["agents"])
        return sorted(a["id"] for a in got["agents"])

    assert await ids() == ["a1", "a2", "a3"]
    assert await ids(capabilities=["py"]) == ["a1", "a2"]
    assert await ids(capabilities=["py", "review"]) == ["a1"]
    assert await ids(role="coordinator") == ["a3"]
    assert await ids(statuses=["working"]) == ["a2"]
    assert await ids(statuses=["available", "idle"]) == ["a1", "a3"]
    assert await ids(model_type="claude") == ["a1", "a3"]
    assert await ids(group="red", capabilities=["py"]) == ["a1"]
    assert await ids(active_within_seconds=60) == ["a1", "a2", "a3"]
    await anyio.sleep(0.6)
    await ok(client, "heartbeat", {"agent_id": "a3"})
    assert await ids(active_within_seconds=0.5) == ["a3"]
    one = (await ok(client, "find_agents", {"role": "worker", "statuses": ["working"]}))["agents"][0]
    assert one["current_task"] == "t-9" and one["circuit"] in ("closed", "open", "half_open")
    assert isinstance(one["seconds_since_heartbeat"], float)
    assert "token" not in json.dumps(one).lower() or "token" not in one
    await refused(client, "find_agents", {"statuses": ["sleeping"]}, "statuses")
    await refused(client, "find_agents", {"active_within_seconds": -1}, "active_within_seconds")


async def test_register_and_heartbeat_bad_arguments_change_nothing(client: Any) -> None:
    await refused(client, "register_agent", {"id": "has space", "name": "x", "role": "worker"}, "id")
    await refused(client, "register_agent", {"id": "ok1", "name": "", "role": "worker"}, "name")
    await refused(client, "register_agent", {"id": "ok1", "name": "n", "role": "worker", "capabilities": [""]}, "capabilities")
    assert (await ok(client, "find_agents"))["count"] == 0
    await register(client, "hb")
    await refused(client, "heartbeat", {"agent_id": "hb", "status": "asleep"}, "status")
    await refused(client, "heartbeat", {"agent_id": "nobody"}, "agent_id")
    agent = (await ok(client, "find_agents"))["agents"][0]
    assert agent["status"] == "available"
    got = await ok(client, "deregister_agent", {"agent_id": "hb"})
    assert got["deregistered"] is True
    assert (await ok(client, "deregister_agent", {"agent_id": "hb"}))["deregistered"] is False
    assert (await ok(client, "find_agents"))["count"] == 0


# -- messages and anti-jam ------------------------------------------------------------------------------


async def test_messages_are_delivered_once_in_order(client: Any) -> None:
    await register(client, "alice")
    await register(client, "bob")
    sent = [await ok(client, "send_message", {"sender_id": "alice", "recipient_id": "bob", "content": f"m{i}",
                                              "urgent": i == 1}) for i in range(3)]
    assert len({s["message"]["id"] for s in sent}) == 3
    got = await ok(client, "get_messages", {"agent_id": "bob", "unread_only": True})
    assert [m["content"] for m in got["messages"]] == ["m0", "m1", "m2"]
    assert [m["urgent"] for m in got["messages"]] == [False, True, False]
    assert all(m["sender_id"] == "alice" for m in got["messages"])
    again = await ok(client, "get_messages", {"agent_id": "bob", "unread_only": True})
    assert again["count"] == 0, "a message read once is delivered again"
    assert (await ok(client, "get_messages", {"agent_id": "alice", "unread_only": True}))["count"] == 0
    await refused(client, "send_message", {"sender_id": "alice", "recipient_id": "ghost", "content": "x"}, "recipient_id")
    await refused(client, "send_message", {"sender_id": "alice", "recipient_id": "bob", "content": ""}, "content")
    await refused(client, "get_messages", {"agent_id": "bob", "since": "yesterday-ish"}, "since")
    assert (await ok(client, "get_messages", {"agent_id": "bob", "unread_only": True}))["count"] == 0


async def test_message_frequency_flags_a_burst_over_a_sliding_window(client: Any) -> None:
    await register(client, "spam")
    await register(client, "quiet")
    await register(client, "sink")
    for i in range(6):
        await ok(client, "send_message", {"sender_id": "spam", "recipient_id": "sink", "content": f"x{i}"})
    await ok(client, "send_message", {"sender_id": "quiet", "recipient_id": "sink", "content": "hello"})
    burst = await ok(client, "check_message_frequency", {"agent_id": "spam", "time_window_seconds": 60, "frequency_threshold": 5})
    assert burst["message_count"] == 6 and burst["flooding"] is True and burst["warning"]
    assert burst["per_recipient"] == {"sink": 6}
    calm = await ok(client, "check_message_frequency", {"agent_id": "quiet", "time_window_seconds": 60, "frequency_threshold": 5})
    assert calm["message_count"] == 1 and calm["flooding"] is False
    high = await ok(client, "check_message_frequency", {"agent_id": "spam", "time_window_seconds": 60, "frequency_threshold": 6})
    assert high["flooding"] is False
    await anyio.sleep(0.7)
    slid = await ok(client, "check_message_frequency", {"agent_id": "spam", "time_window_seconds": 0.5, "frequency_threshold": 5})
    assert slid["message_count"] == 0 and slid["flooding"] is False, "the window does not slide"
    await refused(client, "check_message_frequency", {"agent_id": "spam", "frequency_threshold": 0}, "frequency_threshold")
    await refused(client, "check_message_frequency", {"agent_id": "spam", "time_window_seconds": -5}, "time_window_seconds")


async def test_responsiveness_follows_heartbeats_and_status(client: Any) -> None:
    await register(client, "pulse")
    fresh = await ok(client, "check_agent_responsiveness", {"agent_id": "pulse", "threshold_seconds": 0.5})
    assert fresh["responsive"] is True
    await anyio.sleep(0.7)
    stale = await ok(client, "check_agent_responsiveness", {"agent_id": "pulse", "threshold_seconds": 0.5})
    assert stale["responsive"] is False and stale["seconds_since_heartbeat"] > 0.5 and "heartbeat" in stale["reason"]
    await ok(client, "heartbeat", {"agent_id": "pulse"})
    assert (await ok(client, "check_agent_responsiveness", {"agent_id": "pulse", "threshold_seconds": 0.5}))["responsive"] is True
    await ok(client, "heartbeat", {"agent_id": "pulse", "status": "offline"})
    off = await ok(client, "check_agent_responsiveness", {"agent_id": "pulse", "threshold_seconds": 60})
    assert off["responsive"] is False and "offline" in off["reason"]
    await refused(client, "check_agent_responsiveness", {"agent_id": "ghost"}, "agent_id")
    await refused(client, "check_agent_responsiveness", {"agent_id": "pulse", "threshold_seconds": 0}, "threshold_seconds")


async def test_recipient_status_counts_unread_messages_and_heartbeats(client: Any) -> None:
    await register(client, "boss")
    await register(client, "reader")
    await register(client, "sleeper")
    for r in ("reader", "sleeper", "sleeper"):
        await ok(client, "send_message", {"sender_id": "boss", "recipient_id": r, "content": "ping"})
    await ok(client, "get_messages", {"agent_id": "reader", "unread_only": True})
    await anyio.sleep(0.7)
    await ok(client, "heartbeat", {"agent_id": "reader"})
    got = await ok(client, "check_message_recipient_status",
                   {"sender_id": "boss", "time_window_seconds": 60, "responsiveness_threshold_seconds": 0.5})
    by = {r["recipient_id"]: r for r in got["recipients"]}
    assert set(by) == {"reader", "sleeper"}
    assert by["reader"]["messages_sent"] == 1 and by["reader"]["unread"] == 0 and by["reader"]["responsive"] is True
    assert by["sleeper"]["messages_sent"] == 2 and by["sleeper"]["unread"] == 2 and by["sleeper"]["responsive"] is False
    assert got["unresponsive"] == ["sleeper"]
    wide = await ok(client, "check_message_recipient_status",
                    {"sender_id": "boss", "time_window_seconds": 60, "responsiveness_threshold_seconds": 60})
    assert wide["unresponsive"] == []
    none = await ok(client, "check_message_recipient_status", {"sender_id": "reader", "time_window_seconds": 60})
    assert none["recipients"] == []


# -- collaboration ---------------------------------------------------------------------------------------


async def test_collaboration_session_tells_each_participant(client: Any) -> None:
    await register(client, "lead", "coordinator")
    await register(client, "p1")
    await register(client, "p2")
    await register(client, "outsider")
    s = await ok(client, "create_collaboration_session", {"title": "Refactor", "description": "split the engine",
                                                          "participant_model_ids": ["p1", "p2"], "coordinator_model_id": "lead"})
    assert s["session_id"] and s["participant_model_ids"] == ["p1", "p2"] and s["coordinator_model_id"] == "lead"
    for p in ("p1", "p2"):
        msgs = (await ok(client, "get_messages", {"agent_id": p, "unread_only": True}))["messages"]
        assert len(msgs) == 1 and s["session_id"] in msgs[0]["content"] and msgs[0]["sender_id"] == "lead"
    assert (await ok(client, "get_messages", {"agent_id": "outsider", "unread_only": True}))["count"] == 0
    await refused(client, "create_collaboration_session", {"title": "x", "description": "y", "participant_model_ids": ["ghost"],
                                                            "coordinator_model_id": "lead"}, "participant_model_ids")
    await refused(client, "create_collaboration_session", {"title": "x", "description": "y", "participant_model_ids": [],
                                                            "coordinator_model_id": "lead"}, "participant_model_ids")


async def test_request_assistance_reaches_capable_responsive_agents(client: Any) -> None:
    await register(client, "asker")
    await register(client, "sql1", caps=["sql"])
    await register(client, "sql2", caps=["sql", "pg"])
    await register(client, "web", caps=["html"])
    await ok(client, "heartbeat", {"agent_id": "sql2", "status": "offline"})
    got = await ok(client, "request_assistance", {"requesting_agent_id": "asker", "task_description": "slow query",
                                                  "required_capabilities": ["sql"], "urgency": "high"})
    assert got["recipients"] == ["sql1"] and got["status"] == "sent"
    msgs = (await ok(client, "get_messages", {"agent_id": "sql1", "unread_only": True}))["messages"]
    assert len(msgs) == 1 and msgs[0]["urgent"] is True and "slow query" in msgs[0]["content"]
    for other in ("sql2", "web"):
        assert (await ok(client, "get_messages", {"agent_id": other, "unread_only": True}))["count"] == 0
    nobody = await ok(client, "request_assistance", {"requesting_agent_id": "asker", "task_description": "fortran",
                                                     "required_capabilities": ["fortran"]})
    assert nobody["recipients"] == [] and nobody["status"] == "no_candidates"
    direct = await ok(client, "request_assistance", {"requesting_agent_id": "asker", "task_description": "css",
                                                     "target_agent_id": "web", "required_capabilities": ["css"]})
    assert direct["recipients"] == ["web"] and "css" in direct.get("warning", "")
    await refused(client, "request_assistance", {"requesting_agent_id": "asker", "task_description": "x", "urgency": "meh"}, "urgency")
    await refused(client, "request_assistance", {"requesting_agent_id": "asker", "task_description": "x",
                                                 "target_agent_id": "asker"}, "target_agent_id")


async def test_evaluate_contribution_scores_from_the_criteria(client: Any) -> None:
    await register(client, "judge")
    await register(client, "judge2")
    await register(client, "maker")
    one = await ok(client, "evaluate_contribution", {"evaluating_agent_id": "judge", "contributing_agent_id": "maker",
                                                     "contribution_ref": "pr-1",
                                                     "evaluation_criteria": {"correctness": 9, "style": 6, "note": "tidy"},
                                                     "comments": "good"})
    assert one["overall_score"] == 7.5 and one["contributor_average_score"] == 7.5 and one["contributor_evaluations"] == 1
    two = await ok(client, "evaluate_contribution", {"evaluating_agent_id": "judge2", "contributing_agent_id": "maker",
                                                     "contribution_ref": "pr-2", "evaluation_criteria": {"correctness": 3}})
    assert two["overall_score"] == 3.0 and two["contributor_average_score"] == 5.25 and two["contributor_evaluations"] == 2
    await refused(client, "evaluate_contribution", {"evaluating_agent_id": "maker", "contributing_agent_id": "maker",
                                                    "contribution_ref": "self"}, "contributing_agent_id")
    await refused(client, "evaluate_contribution", {"evaluating_agent_id": "judge", "contributing_agent_id": "maker",
                                                    "contribution_ref": "x", "evaluation_criteria": {"c": [1]}}, "evaluation_criteria")


async def test_projects_and_goals(client: Any) -> None:
    await register(client, "lead", "coordinator")
    p = await ok(client, "create_project", {"name": "Apollo", "description": "moon", "lead_agent_id": "lead"})
    assert p["id"] and p["name"] == "Apollo"
    g = await ok(client, "create_goal", {"name": "land", "description": "softly", "project_id": p["id"]})
    assert g["id"] and g.get("project_id") == p["id"]
    await refused(client, "create_goal", {"name": "x", "description": "y", "project_id": "nope"}, "project_id")
    await refused(client, "create_project", {"name": "x", "description": "y", "lead_agent_id": "ghost"}, "lead_agent_id")


# -- runs in process ------------------------------------------------------------------------------------


async def test_delegated_subtask_is_a_real_pull_step(client: Any) -> None:
    await register(client, "lead", "coordinator")
    await register(client, "dev")
    d = await ok(client, "delegate_subtask", {"coordinator_agent_id": "lead", "assigned_agent_id": "dev",
                                              "subtask_id": "write_tests", "subtask_description": "cover the parser",
                                              "contextual_data": {"files": ["parser.py"]}, "parent_task_id": "T-1"})
    assert d["assigned_agent_id"] == "dev" and d["run_id"] and d["workflow_id"]
    step = await assigned(client, "dev", "write_tests", d["run_id"])
    assert step["arguments"]["subtask_description"] == "cover the parser"
    assert step["arguments"]["contextual_data"] == {"files": ["parser.py"]}
    msgs = (await ok(client, "get_messages", {"agent_id": "dev", "unread_only": True}))["messages"]
    assert any("write_tests" in m["content"] and m["sender_id"] == "lead" for m in msgs), msgs
    rep = await ok(client, "report_step_completion", {"workflow_id": d["workflow_id"], "step_id": "write_tests",
                                                      "agent_id": "dev", "result": {"tests": 12}, "run_id": d["run_id"]})
    assert rep["report"] == "accepted"
    run = await ok(client, "get_run", {"run_id": d["run_id"], "wait_seconds": 20})
    if run["status"] != "completed":
        run = await ok(client, "get_run", {"run_id": d["run_id"], "wait_seconds": 20})
    assert run["status"] == "completed", run
    assert run["steps"]["write_tests"]["result"] == {"tests": 12}
    assert (await ok(client, "list_assigned_steps", {"agent_id": "dev"}))["count"] == 0
    await refused(client, "delegate_subtask", {"coordinator_agent_id": "lead", "assigned_agent_id": "ghost",
                                               "subtask_id": "x", "subtask_description": "y"}, "assigned_agent_id")
    await refused(client, "delegate_subtask", {"coordinator_agent_id": "lead", "assigned_agent_id": "dev",
                                               "subtask_id": "x", "subtask_description": "y", "deadline": "soonish"}, "deadline")


async def test_a_subtask_id_with_a_hyphen_can_be_delegated(client: Any) -> None:
    """decompose_task names subtasks subtask-1, subtask-2...: each must be delegable as is."""
    await register(client, "lead", "coordinator")
    await register(client, "dev")
    d = await ok(client, "delegate_subtask", {"coordinator_agent_id": "lead", "assigned_agent_id": "dev",
                                              "subtask_id": "subtask-1", "subtask_description": "count the files"})
    await assigned(client, "dev", "subtask-1", d["run_id"])
    await ok(client, "report_step_completion", {"workflow_id": d["workflow_id"], "step_id": "subtask-1",
                                                "agent_id": "dev", "result": {"files": 3}, "run_id": d["run_id"]})
    run = await ok(client, "get_run", {"run_id": d["run_id"], "wait_seconds": 20})
    if run["status"] != "completed":
        run = await ok(client, "get_run", {"run_id": d["run_id"], "wait_seconds": 20})
    assert run["status"] == "completed" and run["outputs"] == {"result": {"files": 3}}, run


async def test_get_run_long_poll_is_bounded_and_returns_on_change(client: Any) -> None:
    await register(client, "w")
    await ok(client, "define_workflow", {"name": "one", "steps": [{"step_id": "s", "assigned_agent_id": "w"}]})
    run_id = (await ok(client, "execute_workflow", {"workflow_id": "one"}))["run_id"]
    await assigned(client, "w", "s", run_id)
    await refused(client, "get_run", {"run_id": run_id, "wait_seconds": 61}, "wait_seconds")
    await refused(client, "get_run", {"run_id": run_id, "wait_seconds": -1}, "wait_seconds")
    await refused(client, "get_run", {"run_id": "no-such-run"}, "no-such-run")
    unchanged = await ok(client, "get_run", {"run_id": run_id, "wait_seconds": 0.3})
    assert unchanged["status"] == "running" and unchanged["changed"] is False
    assert unchanged["waiting_for_reports"] == [{"step_id": "s", "index": None, "agent_id": "w", "deadline": None}]
    seen: dict[str, Any] = {}

    async def wait() -> None:
        seen.update(await ok(client, "get_run", {"run_id": run_id, "wait_seconds": 30}))

    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.3)
        await ok(client, "report_step_completion", {"workflow_id": "one", "step_id": "s", "agent_id": "w", "result": 5})
    assert seen["status"] == "completed" and seen["changed"] is True and seen["outputs"] is not None
    assert anyio.current_time() - t0 < 25, "the long poll did not return when the status changed"
    done = await ok(client, "get_run", {"run_id": run_id, "wait_seconds": 5})
    assert done["status"] == "completed"


async def test_report_needs_run_id_when_a_workflow_has_several_active_runs(client: Any) -> None:
    await register(client, "w")
    await ok(client, "define_workflow", {"name": "twice", "steps": [{"step_id": "s", "assigned_agent_id": "w"}]})
    r1 = (await ok(client, "execute_workflow", {"workflow_id": "twice"}))["run_id"]
    r2 = (await ok(client, "execute_workflow", {"workflow_id": "twice"}))["run_id"]
    assert r1 != r2
    await assigned(client, "w", "s", r1)
    await assigned(client, "w", "s", r2)
    await refused(client, "report_step_completion", {"workflow_id": "twice", "step_id": "s", "agent_id": "w"}, "run_id")
    await refused(client, "report_step_completion", {"workflow_id": "other", "step_id": "s", "agent_id": "w", "run_id": r1},
                  "run_id")
    got = await ok(client, "report_step_completion", {"workflow_id": "twice", "step_id": "s", "agent_id": "w",
                                                       "result": "second", "run_id": r2})
    assert got["run_id"] == r2 and got["report"] == "accepted"
    run2 = await ok(client, "get_run", {"run_id": r2, "wait_seconds": 20})
    assert run2["status"] == "completed" and run2["steps"]["s"]["result"] == "second"
    run1 = await ok(client, "get_run", {"run_id": r1})
    assert run1["status"] == "running" and run1["steps"]["s"]["status"] == "in_progress", "the report reached the other run"
    # One active run left: run_id may be left out again.
    await ok(client, "report_step_completion", {"workflow_id": "twice", "step_id": "s", "agent_id": "w", "result": "first"})
    assert (await ok(client, "get_run", {"run_id": r1, "wait_seconds": 20}))["steps"]["s"]["result"] == "first"


async def test_execute_workflow_bad_inputs_name_the_argument_and_start_nothing(client: Any, store_url: str) -> None:
    await register(client, "w")
    await ok(client, "define_workflow", {"workflow_yaml": "name: typed\ninputs:\n  n: {type: integer, minimum: 1}\n"
                                                         "steps:\n  - {step_id: s, assigned_agent_id: w}\n"})
    await refused(client, "execute_workflow", {"workflow_id": "typed", "inputs": {"n": 0}}, "inputs")
    await refused(client, "execute_workflow", {"workflow_id": "typed", "inputs": {"n": "x"}}, "inputs")
    await refused(client, "execute_workflow", {"workflow_id": "ghost"}, "workflow_id")
    code, out, err = run_cli("runs", "list", "--output", "json", "--store", store_url)
    assert code == 0 and parse_json_stdout(out, err) == [], "a refused execute_workflow stored a run"
