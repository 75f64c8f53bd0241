"""Every refusal of ``runner serve`` over HTTP (SPEC §5, §8), on a real server and store.

No or a bad bearer token is a 401 before any tool runs; a Host header that is not the
server's is rejected (DNS rebinding); an agent acts only as itself and only within its
role; rotated and deregistered agents' tokens stop working at once; reports on a step
assigned to another agent or on an unknown step are refused and change nothing; a
duplicate report is acknowledged, not counted twice. The audit log records the mutating
calls with their outcome and holds no token; ``runner audit`` shows the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import parse_json_stdout, run_cli
from tests.serve_support import ADMIN_TOKEN, ServeProc, assigned, http_client, ok, refused

pytestmark = pytest.mark.anyio

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}
TOKENS: list[str] = [ADMIN_TOKEN]  # every secret handed out in this module: none may reach the audit log


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProc, str, Path]]:
    cwd = tmp_path_factory.mktemp("serve-security")
    store = f"sqlite:///{cwd}/runner.db"
    proc = ServeProc(store, cwd)
    try:
        yield proc, store, cwd
    finally:
        proc.stop()
        err = proc.stderr()
        assert "Traceback" not in err, err
        for t in TOKENS:
            assert t not in err, "a token was written to the server's stderr"


def post(url: str, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(url, json=INIT, timeout=10,
                       headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})


async def enrol(url: str, agent_id: str, role: str, caps: list[str] | None = None) -> str:
    async with http_client(url, ADMIN_TOKEN) as op:
        token = str((await ok(op, "register_agent", {"id": agent_id, "name": agent_id, "role": role,
                                                     "capabilities": caps or []}))["token"])
    TOKENS.append(token)
    return token


# -- the HTTP layer ---------------------------------------------------------------------------------


def test_no_token_or_a_bad_token_is_401(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Bearer rat_forged"},
                    {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
        r = post(url, headers)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    assert post(url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


def test_dns_rebinding_a_foreign_host_or_origin_is_rejected(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    evil_host = post(url, {**auth, "Host": "evil.example"})
    assert evil_host.status_code in (400, 403, 421), (evil_host.status_code, evil_host.text)
    evil_origin = post(url, {**auth, "Origin": "http://evil.example"})
    assert evil_origin.status_code in (400, 403), (evil_origin.status_code, evil_origin.text)
    port = url.split(":")[2].split("/")[0]
    assert post(url, {**auth, "Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"}).status_code == 200


async def test_a_client_without_a_token_cannot_connect(server: tuple[ServeProc, str, Path]) -> None:
    # (The SDK reports the 401 as an MCPError inside an ExceptionGroup; the raw 401 is checked above.)
    with pytest.raises(Exception):  # noqa: B017
        async with http_client(server[0].url, None) as c:
            await c.list_tools()


# -- identity and roles -----------------------------------------------------------------------------


async def test_an_agent_acts_only_as_itself(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    mallory = await enrol(url, "mallory", "worker")
    await enrol(url, "victim", "worker")
    async with http_client(url, mallory) as m:
        await m.list_tools()
        attempts = [
            ("heartbeat", {"agent_id": "victim", "status": "offline"}, "agent_id"),
            ("send_message", {"sender_id": "victim", "recipient_id": "mallory", "content": "x"}, "sender_id"),
            ("get_messages", {"agent_id": "victim"}, "agent_id"),
            ("list_assigned_steps", {"agent_id": "victim"}, "agent_id"),
            ("deregister_agent", {"agent_id": "victim"}, "agent_id"),
            ("rotate_agent_token", {"agent_id": "victim"}, "agent_id"),
            ("register_agent", {"id": "victim", "name": "pwned", "role": "coordinator"}, "id"),
            ("request_assistance", {"requesting_agent_id": "victim", "task_description": "x"}, "requesting_agent_id"),
            ("evaluate_contribution", {"evaluating_agent_id": "victim", "contributing_agent_id": "mallory",
                                       "contribution_ref": "r", "evaluation_criteria": {"q": 10}}, "evaluating_agent_id"),
        ]
        for tool, args, argument in attempts:
            text = await refused(m, tool, args, argument)
            assert "victim" in text and "not allowed" in text, text
        # A worker may not promote itself to a coordinator role either (the role decides its permissions).
        self_update = await m.call_tool("register_agent", {"id": "mallory", "name": "mallory", "role": "coordinator"})
        if not self_update.is_error:
            TOKENS.append(self_update.structured_content["token"])
        else:
            assert "role" in self_update.content[0].text
    async with http_client(url, ADMIN_TOKEN) as op:
        victim = (await ok(op, "find_agents", {"role": "worker"}))["agents"]
        v = next(a for a in victim if a["id"] == "victim")
        assert v["status"] == "available" and v["name"] == "victim", "an impersonated call changed the victim"
        assert (await ok(op, "get_messages", {"agent_id": "mallory", "unread_only": True}))["count"] == 0
        me = next(a for a in (await ok(op, "find_agents"))["agents"] if a["id"] == "mallory")
    assert me["role"] == "worker", "a worker re-registered itself as a coordinator (privilege escalation)"


async def test_roles_limit_what_an_agent_may_call(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    worker = await enrol(url, "plain-worker", "worker")
    lead = await enrol(url, "the-lead", "lead")
    steps = [{"step_id": "s", "assigned_agent_id": "plain-worker"}]
    async with http_client(url, worker) as w:
        for tool, args in [
            ("define_workflow", {"name": "w-def", "steps": steps}),
            ("execute_workflow", {"workflow_id": "w-def"}),
            ("cancel_run", {"run_id": "whatever"}),
            ("create_project", {"name": "p", "description": "d"}),
            ("create_goal", {"name": "g", "description": "d"}),
            ("create_collaboration_session", {"title": "t", "description": "d", "participant_model_ids": ["the-lead"],
                                              "coordinator_model_id": "plain-worker"}),
            ("delegate_subtask", {"coordinator_agent_id": "plain-worker", "assigned_agent_id": "the-lead", "subtask_id": "x",
                                  "subtask_description": "y"}),
            ("get_audit_log", {}),
        ]:
            await refused(w, tool, args, "not allowed", tool)
        # What a worker may do works.
        await ok(w, "heartbeat", {"agent_id": "plain-worker", "status": "idle"})
        await ok(w, "find_agents", {})
        await ok(w, "list_workflows", {})
    async with http_client(url, lead) as boss:
        got = await ok(boss, "define_workflow", {"name": "lead-def", "steps": steps})
        assert got["valid"] is True and (await ok(boss, "get_workflow", {"workflow_id": "lead-def"}))["creator_id"] == "the-lead"
        await ok(boss, "create_project", {"name": "p", "description": "d", "lead_agent_id": "the-lead"})
        await refused(boss, "get_audit_log", {}, "not allowed")
        await refused(boss, "define_workflow", {"name": "x", "creator_id": "plain-worker", "steps": steps}, "creator_id")
        bad = await ok(boss, "define_workflow", {"workflow_yaml": "name: lead-stdio\nagents:\n  - {id: sh, transport: stdio, command: sh}\n"
                                                                 "steps:\n  - {step_id: a, assigned_agent_id: sh, tool_to_call: x}\n"})
        assert bad["valid"] is False and bad["errors"][0]["path"] == "$.agents[0].transport"
    async with http_client(url, ADMIN_TOKEN) as op:
        names = {w["workflow_id"] for w in (await ok(op, "list_workflows"))["workflows"]}
    assert "w-def" not in names and "lead-stdio" not in names and "lead-def" in names


async def test_a_rotated_token_stops_working_at_once(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    old = await enrol(url, "rotor", "worker")
    async with http_client(url, old) as c:
        await c.list_tools()
        new = str((await ok(c, "rotate_agent_token", {"agent_id": "rotor"}))["token"])
    TOKENS.append(new)
    assert new != old
    assert post(url, {"Authorization": f"Bearer {old}"}).status_code == 401
    async with http_client(url, new) as c:
        assert (await ok(c, "heartbeat", {"agent_id": "rotor"}))["agent"]["id"] == "rotor"
    async with http_client(url, ADMIN_TOKEN) as op:  # the operator may rotate it too
        newer = str((await ok(op, "rotate_agent_token", {"agent_id": "rotor"}))["token"])
    TOKENS.append(newer)
    assert post(url, {"Authorization": f"Bearer {new}"}).status_code == 401
    assert post(url, {"Authorization": f"Bearer {newer}"}).status_code == 200


async def test_a_deregistered_agents_token_stops_working(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    token = await enrol(url, "leaver", "worker")
    assert post(url, {"Authorization": f"Bearer {token}"}).status_code == 200
    async with http_client(url, token) as c:
        await c.list_tools()
        assert (await ok(c, "deregister_agent", {"agent_id": "leaver"}))["deregistered"] is True
    assert post(url, {"Authorization": f"Bearer {token}"}).status_code == 401
    # Registering the same id again issues a new token; the old one stays dead.
    again = await enrol(url, "leaver", "worker")
    assert post(url, {"Authorization": f"Bearer {token}"}).status_code == 401
    assert post(url, {"Authorization": f"Bearer {again}"}).status_code == 200


# -- reports ----------------------------------------------------------------------------------------


async def test_reports_are_checked_against_the_assignment(server: tuple[ServeProc, str, Path]) -> None:
    url = server[0].url
    owner = await enrol(url, "owner", "worker")
    other = await enrol(url, "other", "worker")
    lead = await enrol(url, "rep-lead", "coordinator")
    async with http_client(url, lead) as boss, http_client(url, owner) as o, http_client(url, other) as x:
        await ok(boss, "define_workflow", {"name": "guarded", "steps": [
            {"step_id": "mine", "assigned_agent_id": "owner"},
            {"step_id": "next", "depends_on": ["mine"], "assigned_agent_id": "owner"}]})
        run_id = (await ok(boss, "execute_workflow", {"workflow_id": "guarded"}))["run_id"]
        await assigned(o, "owner", "mine", run_id)
        await refused(x, "report_step_completion", {"workflow_id": "guarded", "step_id": "mine", "agent_id": "other",
                                                    "result": "stolen"}, "other")
        await refused(x, "report_step_completion", {"workflow_id": "guarded", "step_id": "mine", "agent_id": "owner",
                                                    "result": "stolen"}, "not allowed", "agent_id")
        await refused(o, "report_step_completion", {"workflow_id": "guarded", "step_id": "nope", "agent_id": "owner"}, "nope")
        await refused(o, "report_step_completion", {"workflow_id": "guarded", "step_id": "next", "agent_id": "owner"}, "next")
        await refused(o, "report_step_failure", {"workflow_id": "guarded", "step_id": "mine", "agent_id": "owner",
                                                 "error_message": "  "}, "error_message")
        await refused(o, "report_step_completion", {"workflow_id": "no-such-wf", "step_id": "mine", "agent_id": "owner"},
                      "workflow_id")
        run = await ok(boss, "get_run", {"run_id": run_id})
        assert run["status"] == "running" and run["steps"]["mine"]["status"] == "in_progress", "a refused report changed the run"
        first = await ok(o, "report_step_completion", {"workflow_id": "guarded", "step_id": "mine", "agent_id": "owner",
                                                       "result": {"v": 1}, "run_id": run_id})
        assert first["report"] == "accepted"
        dup = await ok(o, "report_step_completion", {"workflow_id": "guarded", "step_id": "mine", "agent_id": "owner",
                                                     "result": {"v": 1}, "run_id": run_id})
        assert dup["report"] == "duplicate"
        await assigned(o, "owner", "next", run_id)
        await ok(o, "report_step_completion", {"workflow_id": "guarded", "step_id": "next", "agent_id": "owner", "run_id": run_id})
        run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        assert run["status"] == "completed" and run["steps"]["mine"]["result"] == {"v": 1}
        assert run["steps"]["mine"]["attempts"] == 1


# -- audit --------------------------------------------------------------------------------------------


async def test_audit_log_records_mutations_with_outcome_and_no_secrets(server: tuple[ServeProc, str, Path]) -> None:
    proc, store, cwd = server
    url = proc.url
    token = await enrol(url, "audited", "worker")
    async with http_client(url, token) as a:
        await ok(a, "heartbeat", {"agent_id": "audited", "status": "working"})
        await refused(a, "heartbeat", {"agent_id": "victim"}, "not allowed")
        await ok(a, "find_agents", {})
    async with http_client(url, ADMIN_TOKEN) as op:
        log = await ok(op, "get_audit_log", {"agent_id": "audited"})
        everything = await ok(op, "get_audit_log", {"limit": 10_000})
        await refused(op, "get_audit_log", {"limit": 0}, "limit")
    entries = log["entries"]
    assert log["count"] == len(entries) >= 2
    by_action = {(e["action"], e["detail"]["outcome"].split(":")[0]) for e in entries}
    assert ("heartbeat", "ok") in by_action and ("heartbeat", "refused") in by_action, entries
    assert all(e["actor"] == "audited" for e in entries)
    assert not any(e["action"] == "find_agents" for e in entries), "read-only calls flood the audit log"
    for e in entries:
        assert e["ts"] and e["action"] and "outcome" in e["detail"], e
    ops = [e for e in everything["entries"] if e["action"] == "register_agent" and e["actor"] == "operator"]
    assert any(e["target"] == "audited" for e in ops), "register_agent was not audited"
    dump = json.dumps(everything)
    for t in TOKENS:
        assert t not in dump, "a bearer token is in the audit log"
    assert "rat_" not in dump
    # The CLI reads the same log.
    code, out, err = run_cli("audit", "--output", "json", "--agent", "audited", "--store", store, cwd=cwd)
    assert code == 0, err
    cli = parse_json_stdout(out, err)
    assert [(e["action"], e["detail"]["outcome"]) for e in cli] == [(e["action"], e["detail"]["outcome"]) for e in entries]
    code, out, err = run_cli("audit", "--store", store, "--limit", "5", cwd=cwd)
    assert code == 0 and len(out.strip().splitlines()) == 5, out
    for t in TOKENS:
        assert t not in out
