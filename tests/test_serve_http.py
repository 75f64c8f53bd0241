"""``runner serve --transport http``: a whole pull-agent workflow driven by agents with their own tokens.

One real server process for the module, on a real SQLite file that the CLI reads and
writes too (SPEC §5: "backed by the same store as the CLI"): a run started over MCP shows
in ``runner runs show``/``runs list`` with the same results, ``runner steps complete``
completes a pull step of a run the server executes, and a ``runner run --detach`` queued
run is picked up and executed by the server. Both protocol eras (2026-07-28, 2025-11-25).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, parse_json_stdout, run_cli
from tests.serve_support import ADMIN_TOKEN, ServeProc, assigned, eventually, http_client, ok

pytestmark = pytest.mark.anyio

QUICK = REPO / "tests" / "fixtures" / "lifecycle" / "quick.yaml"
LEDGERED = REPO / "tests" / "fixtures" / "lifecycle" / "ledgered.yaml"
FINAL = ("completed", "failed", "cancelled", "timed_out")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Served:
    def __init__(self, proc: ServeProc, store: str, cwd: Path) -> None:
        self.proc = proc
        self.url = proc.url
        self.store = store
        self.cwd = cwd

    def cli_json(self, *args: str) -> Any:
        code, out, err = run_cli(*args, "--store", self.store, "--output", "json", cwd=self.cwd)
        assert code == 0, err
        return parse_json_stdout(out, err)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp("serve-http")
    store = f"sqlite:///{cwd}/runner.db"
    proc = ServeProc(store, cwd)
    try:
        yield Served(proc, store, cwd)
    finally:
        code = proc.stop()
        err = proc.stderr()
        assert "Traceback" not in err, err
        assert code in (0, -15), f"runner serve exited {code} on SIGTERM:\n{err}"


async def enrol(url: str, agent_id: str, role: str, caps: list[str] | None = None) -> str:
    """The operator registers an agent; its token."""
    async with http_client(url, ADMIN_TOKEN) as op:
        got = await ok(op, "register_agent", {"id": agent_id, "name": agent_id, "role": role, "capabilities": caps or []})
    return str(got["token"])


async def waiting_for(client: Any, run_id: str, step_id: str) -> dict[str, Any]:
    """Wait until get_run says ``step_id`` waits for a report (a coordinator cannot list another agent's steps)."""

    async def probe() -> dict[str, Any] | None:
        run = await ok(client, "get_run", {"run_id": run_id})
        return next((w for w in run["waiting_for_reports"] if w["step_id"] == step_id), None)

    return dict(await eventually(f"{step_id} of {run_id} waiting", probe))


REVIEW_YAML = """\
name: {name}
inputs:
  doc: {{type: string}}
steps:
  - step_id: review
    description: Review the document
    assigned_agent_id: {worker}
    tool_arguments: {{doc: "{{{{ inputs.doc }}}}"}}
  - step_id: sign
    depends_on: [review]
    required_capabilities: [sign-{mode}]
    tool_arguments: {{verdict: "{{{{ steps.review.result.verdict }}}}"}}
outputs:
  verdict: "{{{{ steps.review.result.verdict }}}}"
  signature: "{{{{ steps.sign.result }}}}"
"""


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_whole_pull_workflow_over_http(served: Served, mode: str) -> None:
    lead, worker, name = f"lead-{mode}", f"worker-{mode}", f"review-{mode}"
    lead_token = await enrol(served.url, lead, "coordinator")
    worker_token = await enrol(served.url, worker, "reviewer", [f"sign-{mode}"])
    async with http_client(served.url, lead_token, mode) as boss, http_client(served.url, worker_token, mode) as me:
        expected_era = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert boss.protocol_version == expected_era and me.protocol_version == expected_era
        defined = await ok(boss, "define_workflow", {"workflow_yaml": REVIEW_YAML.format(name=name, worker=worker, mode=mode)})
        assert defined["valid"] is True and defined["order"] == [["review"], ["sign"]], defined
        started = await ok(boss, "execute_workflow", {"workflow_id": name, "inputs": {"doc": "draft-7"}})
        run_id = started["run_id"]
        assert started["workflow_id"] == name
        assert [(s["step_id"], s["assignees"]) for s in started["first_steps"]] == [("review", [worker])]
        step = await assigned(me, worker, "review", run_id)
        assert step["arguments"] == {"doc": "draft-7"} and step["workflow_id"] == name
        rep = await ok(me, "report_step_completion", {"workflow_id": name, "step_id": "review", "agent_id": worker,
                                                      "result": {"verdict": "approved", "notes": ["ok"]}})
        assert rep["report"] == "accepted" and rep["run_id"] == run_id
        sign = await assigned(me, worker, "sign", run_id)
        assert sign["arguments"] == {"verdict": "approved"}, "the second step did not see the first one's reported result"
        await ok(me, "report_step_completion", {"workflow_id": name, "step_id": "sign", "agent_id": worker,
                                                "result": "signed-by-" + worker, "run_id": run_id})
        run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        assert run["status"] == "completed", run
        assert run["outputs"] == {"verdict": "approved", "signature": "signed-by-" + worker}
        assert (await ok(me, "list_assigned_steps", {"agent_id": worker}))["count"] == 0
    # The CLI reads the same store and agrees.
    shown = served.cli_json("runs", "show", run_id)
    assert shown["run_id"] == run_id and shown["status"] == "completed"
    assert shown["outputs"] == run["outputs"]
    assert {k: (v["status"], v["agent_id"], v["result"]) for k, v in shown["steps"].items()} == {
        "review": ("completed", worker, {"verdict": "approved", "notes": ["ok"]}),
        "sign": ("completed", worker, "signed-by-" + worker),
    }
    listed = served.cli_json("runs", "list")
    assert any(r["run_id"] == run_id and r["status"] == "completed" for r in listed), listed


async def test_cli_steps_complete_finishes_a_step_of_a_run_the_server_executes(served: Served) -> None:
    lead_token = await enrol(served.url, "lead-cli", "coordinator")
    await enrol(served.url, "worker-cli", "reviewer")
    async with http_client(served.url, lead_token) as boss:
        await ok(boss, "define_workflow", {"name": "by-cli", "steps": [
            {"step_id": "check", "assigned_agent_id": "worker-cli", "tool_arguments": {"n": 3}}]})
        run_id = (await ok(boss, "execute_workflow", {"workflow_id": "by-cli"}))["run_id"]
        await waiting_for(boss, run_id, "check")
        waiting = served.cli_json("steps", "list", "--agent", "worker-cli", "--run", run_id)
        assert [(w["step_id"], w["agent_id"]) for w in waiting] == [("check", "worker-cli")], waiting
        code, out, err = run_cli("steps", "complete", run_id, "check", "--agent", "worker-cli", "--result", '{"by": "cli"}',
                                 "--store", served.store, cwd=served.cwd)
        assert code == 0, err
        run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        assert run["status"] == "completed" and run["steps"]["check"]["result"] == {"by": "cli"}, run
    assert served.cli_json("runs", "show", run_id)["steps"]["check"]["result"] == {"by": "cli"}


async def test_a_detached_run_is_executed_by_the_server(served: Served) -> None:
    code, out, err = run_cli("run", QUICK, "--detach", "-i", "a=40", "--store", served.store, cwd=served.cwd)
    assert code == 0, err
    run_id = out.strip().split()[-1]
    async with http_client(served.url, ADMIN_TOKEN) as op:
        run = await ok(op, "get_run", {"run_id": run_id})
        for _ in range(4):
            if run["status"] in ("completed", "failed", "cancelled", "timed_out"):
                break
            run = await ok(op, "get_run", {"run_id": run_id, "wait_seconds": 10})
    assert run["status"] == "completed", f"{run}\n--- server stderr:\n{served.proc.stderr()}"
    assert run["outputs"]["sum"] == 43
    shown = served.cli_json("runs", "show", run_id)
    assert shown["status"] == "completed" and shown["outputs"] == run["outputs"]


async def test_report_step_failure_fails_the_run_with_the_message(served: Served) -> None:
    lead_token = await enrol(served.url, "lead-fail", "coordinator")
    worker_token = await enrol(served.url, "worker-fail", "reviewer")
    async with http_client(served.url, lead_token) as boss, http_client(served.url, worker_token) as me:
        await ok(boss, "define_workflow", {"workflow_yaml": textwrap.dedent("""\
            name: will-fail
            steps:
              - step_id: try
                assigned_agent_id: worker-fail
              - step_id: after
                depends_on: [try]
                assigned_agent_id: worker-fail
            """)})
        run_id = (await ok(boss, "execute_workflow", {"workflow_id": "will-fail"}))["run_id"]
        await assigned(me, "worker-fail", "try", run_id)
        rep = await ok(me, "report_step_failure", {"workflow_id": "will-fail", "step_id": "try", "agent_id": "worker-fail",
                                                   "error_message": "disk full"})
        assert rep["report"] == "accepted"
        run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
    assert run["status"] == "failed", run
    assert "disk full" in (run["steps"]["try"]["error"] or "")
    assert run["steps"]["after"]["status"] == "skipped"
    shown = served.cli_json("runs", "show", run_id)
    assert shown["status"] == "failed" and "disk full" in json.dumps(shown["steps"]["try"])


async def test_cancel_run_over_http_cancels_a_waiting_run(served: Served) -> None:
    lead_token = await enrol(served.url, "lead-cancel", "coordinator")
    await enrol(served.url, "worker-cancel", "reviewer")
    async with http_client(served.url, lead_token) as boss:
        await ok(boss, "define_workflow", {"name": "to-cancel", "steps": [{"step_id": "wait", "assigned_agent_id": "worker-cancel"}]})
        run_id = (await ok(boss, "execute_workflow", {"workflow_id": "to-cancel"}))["run_id"]
        await waiting_for(boss, run_id, "wait")
        got = await ok(boss, "cancel_run", {"run_id": run_id})
        assert got["run_id"] == run_id
        run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(boss, "get_run", {"run_id": run_id, "wait_seconds": 20})
        assert run["status"] == "cancelled", run
        assert run["waiting_for_reports"] == []
    assert served.cli_json("steps", "list", "--agent", "worker-cancel") == []
    assert served.cli_json("runs", "show", run_id)["status"] == "cancelled"


async def test_a_delegated_subtask_is_done_by_its_assignee_with_its_own_token(served: Served) -> None:
    lead_token = await enrol(served.url, "lead-deleg", "coordinator")
    dev_token = await enrol(served.url, "dev-deleg", "developer")
    async with http_client(served.url, lead_token) as boss, http_client(served.url, dev_token) as dev:
        d = await ok(boss, "delegate_subtask", {"coordinator_agent_id": "lead-deleg", "assigned_agent_id": "dev-deleg",
                                                "subtask_id": "fix_bug", "subtask_description": "fix #12",
                                                "deadline": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()})
        step = await assigned(dev, "dev-deleg", "fix_bug", d["run_id"])
        assert step["arguments"]["subtask_description"] == "fix #12" and step["deadline"]
        assert any("fix_bug" in m["content"] for m in (await ok(dev, "get_messages", {"agent_id": "dev-deleg",
                                                                                        "unread_only": True}))["messages"])
        await ok(dev, "report_step_completion", {"workflow_id": d["workflow_id"], "step_id": "fix_bug",
                                                 "agent_id": "dev-deleg", "result": {"commit": "abc"}, "run_id": d["run_id"]})
        run = await ok(boss, "get_run", {"run_id": d["run_id"], "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(boss, "get_run", {"run_id": d["run_id"], "wait_seconds": 20})
        assert run["status"] == "completed" and run["outputs"] == {"result": {"commit": "abc"}}, run


async def test_each_run_gets_its_own_templated_agent(served: Served, tmp_path: Path) -> None:
    """ledgered.yaml starts its agent with LEDGER_PATH={{ inputs.ledger }}: each run must write its own ledger,
    also when one long-lived server executes both, one after the other."""
    store = served.store
    ledgers: dict[str, Path] = {}
    async with http_client(served.url, ADMIN_TOKEN) as op:
        for i in range(2):
            ledger = tmp_path / f"own-{i}.jsonl"
            code, out, err = run_cli("run", LEDGERED, "--detach", "-i", f"ledger={ledger}", "-i", "sleep=0",
                                     "--store", store, cwd=tmp_path)
            assert code == 0, err
            run_id = out.strip().split()[-1]
            ledgers[run_id] = ledger
            run = await ok(op, "get_run", {"run_id": run_id})
            for _ in range(8):
                if run["status"] in FINAL:
                    break
                run = await ok(op, "get_run", {"run_id": run_id, "wait_seconds": 10})
            assert run["status"] == "completed", run
    for run_id, ledger in ledgers.items():
        assert ledger.exists(), f"run {run_id} wrote nothing to its own ledger {ledger.name}"
        owners = {json.loads(x)["idempotency_key"].split(":")[0] for x in ledger.read_text().splitlines() if x.strip()}
        assert owners == {run_id}, f"{ledger.name} holds calls of runs {owners}"
