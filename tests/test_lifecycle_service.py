"""The run lifecycle through the service API, on a real SQLite file: races found by an audit.

- a cancel request answered in one session never cancels a later ``retry``;
- a report accepted just before a pull step's deadline is never lost to its timeout;
- a run whose executing process died is cancelled at once, not "requested" for ever;
- NaN/Infinity are not JSON: ``--result NaN`` is refused.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

from runner.model import AgentSpec, RunStatus, StepSpec, TransportKind, Workflow
from runner.model.records import RunRecord
from runner.service import RunService
from runner.store import open_store
from runner.store.leases import _pid_namespace
from runner.testing import FakeAgent, FakePool
from tests.conftest import run_cli


def _wf(*steps: StepSpec, agents: tuple[AgentSpec, ...] = ()) -> Workflow:
    return Workflow(name="lc", steps=steps, agents=agents, source_text="name: lc\n")


def test_a_cancel_answered_in_one_session_does_not_cancel_the_retry(tmp_path: Path) -> None:
    gate = asyncio.Event()
    calls: list[str] = []

    async def wait(x: str = "") -> str:
        calls.append(x)
        if len(calls) == 1:
            await gate.wait()  # the first session's call hangs until cancelled
        return "done"

    agent = FakeAgent("a", {"wait": wait})
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    service = RunService(store, pool=FakePool([agent]))
    wf = _wf(StepSpec(step_id="s", tool_to_call="wait", assigned_agent_id="a"), agents=(agent.spec,))

    async def first() -> str:
        run_id, lease = service.start(wf, {})
        prepared = service.prepare(run_id, lease=lease, inputs={}, workflow=wf)
        task = asyncio.ensure_future(service.execute(prepared))
        for _ in range(200):  # bounded: until the call is in flight
            if calls:
                break
            await asyncio.sleep(0.01)
        assert service.cancel(run_id) == "requested"
        res = await asyncio.wait_for(task, 10)
        assert res.status == RunStatus.CANCELLED
        return run_id

    run_id = asyncio.run(first())
    prepared = service.prepare(run_id, new_attempt=True, workflow=wf)
    res = asyncio.run(service.execute(prepared))
    assert res.status == RunStatus.COMPLETED, res.error
    assert store.get_run(run_id).status == "completed"
    store.close()


def test_a_report_accepted_just_before_the_deadline_completes_the_step(tmp_path: Path) -> None:
    human = AgentSpec(id="human", transport=TransportKind.PULL)
    wf = _wf(StepSpec(step_id="ask", assigned_agent_id="human", timeout=1.0), agents=(human,))
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    service = RunService(store)

    async def main() -> RunStatus:
        run_id, lease = service.start(wf, {})
        prepared = service.prepare(run_id, lease=lease, inputs={}, workflow=wf)
        task = asyncio.ensure_future(service.execute(prepared))
        for _ in range(200):
            if service.assigned_steps(run_id=run_id):
                break
            await asyncio.sleep(0.01)
        [asg] = service.assigned_steps(run_id=run_id)
        assert asg.deadline is not None
        # Report ~60 ms before the deadline: after the engine's last regular poll.
        from datetime import datetime

        due = datetime.strptime(asg.deadline, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=None)
        now = datetime.utcnow()
        await asyncio.sleep(max(0.0, (due - now).total_seconds() - 0.06))
        assert service.report(run_id, "ask", "human", result={"ok": True}) == "accepted"
        res = await asyncio.wait_for(task, 10)
        return res.status

    assert asyncio.run(main()) == RunStatus.COMPLETED
    store.close()


def test_cancelling_a_run_whose_runner_died_ends_it_at_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    store.create_run(RunRecord(run_id="r1", workflow_name="w", workflow_hash="h", status="pending"))
    from runner.model.events import Event

    store.append(Event(type="run_started", run_id="r1", data={"workflow": "w", "inputs": {}}))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    dead = f"{socket.gethostname()}:{gone.pid}:deadbeef:{_pid_namespace()}"
    assert store.claim_run("r1", dead, 30).lease is not None
    assert store.get_run("r1").status == "running"
    assert RunService(store).cancel("r1") == "cancelled"
    assert store.get_run("r1").status == "cancelled"
    store.close()


def test_nan_is_not_a_json_result(tmp_path: Path) -> None:
    for bad in ("NaN", "Infinity", '{"x": -Infinity}'):
        rc, _out, err = run_cli(
            "steps", "complete", "r", "s", "--agent", "a", "--result", bad, "--store", f"sqlite:///{tmp_path}/r.db"
        )
        assert rc == 2 and "not valid JSON" in err, (bad, err)


def test_reassigning_the_same_attempt_keeps_a_report_made_meanwhile(tmp_path: Path) -> None:
    """A resumed run re-assigns the step it was waiting on; a report made while no runner ran stays."""
    from runner.model.events import Event

    for url in ("memory://", f"sqlite:///{tmp_path}/r.db"):
        store = open_store(url)
        store.create_run(RunRecord(run_id="r1", workflow_name="w", workflow_hash="h", status="pending"))
        lease = store.claim_run("r1", "me:1:x:y", 30).lease
        assigned = Event(
            type="step_assigned",
            run_id="r1",
            step_id="p",
            attempt=1,
            agent_id="h",
            data={"index": 0, "deadline": None, "arguments": {}},
        )
        store.append_many(
            [
                Event(type="run_started", run_id="r1", data={"workflow": "w", "inputs": {}}),
                Event(type="step_started", run_id="r1", step_id="p", attempt=1, agent_id="h"),
                assigned,
            ],
            lease,
        )
        assert store.report_step("r1", "p", "h", index=0, result="B") == "accepted"
        store.append_many([assigned], lease)  # the resumed session assigns attempt 1 again
        asg = store.get_assignment("r1", "p", 0)
        assert asg is not None and asg.status == "completed" and asg.report == {"result": "B"}, (url, asg)
        assert store.list_assignments(run_id="r1") == []
        store.close()
