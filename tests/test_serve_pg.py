"""Two ``runner serve`` processes on one PostgreSQL store execute each queued run exactly once (SPEC §5, §6).

Runs are queued with ``runner run --detach`` while both servers poll the store; each run
calls the ledger agent (tests/agents/ledger_agent.py), which appends one line per tool
call to a file of that run's own, so the calls are counted outside the store: a run
executed twice would show a key twice. A run started over MCP on one server is visible,
with its pull step, through the other. The two servers and their database are shared by the
module's tests (each test uses workflows and agents of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.serve_support import ADMIN_TOKEN, ServeProc, assigned, http_client, ok
from tests.store_fixtures import _database, pg_url_for

pytestmark = pytest.mark.anyio

LEDGERED = REPO / "tests" / "fixtures" / "lifecycle" / "ledgered.yaml"
FINAL = ("completed", "failed", "cancelled", "timed_out")
RUNS = 6


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_pg(pg_template: str) -> Iterator[str]:
    """One fresh PostgreSQL database for the module (tests/store_fixtures.py), dropped afterwards."""
    with _database(pg_template) as name:
        yield pg_url_for(name)


@pytest.fixture(scope="module")
def two_servers(module_pg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProc, ServeProc]]:
    cwd = tmp_path_factory.mktemp("serve-pg")
    a = ServeProc(module_pg, cwd)
    try:
        b = ServeProc(module_pg, cwd)
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        for p in (a, b):
            p.stop()
            assert "Traceback" not in p.stderr(), p.stderr()


async def test_queued_runs_are_executed_once_by_two_servers(two_servers: tuple[ServeProc, ServeProc], module_pg: str,
                                                           tmp_path: Path) -> None:
    a, b = two_servers
    pg_url = module_pg
    ledgers: dict[str, Path] = {}
    for i in range(RUNS):
        ledger = tmp_path / f"ledger-{i}.jsonl"
        code, out, err = run_cli("run", LEDGERED, "--detach", "-i", f"ledger={ledger}", "-i", "sleep=0.3",
                                 "--store", pg_url, cwd=tmp_path)
        assert code == 0, err
        ledgers[out.strip().split()[-1]] = ledger
    assert len(ledgers) == RUNS
    runs = {}
    async with http_client(a.url, ADMIN_TOKEN) as op:
        for run_id in ledgers:
            run = await ok(op, "get_run", {"run_id": run_id})
            for _ in range(8):
                if run["status"] in FINAL:
                    break
                run = await ok(op, "get_run", {"run_id": run_id, "wait_seconds": 10})
            runs[run_id] = run
    bad = {r: v["status"] for r, v in runs.items() if v["status"] != "completed"}
    assert not bad, f"{bad}\n--- server A:\n{a.stderr()}\n--- server B:\n{b.stderr()}"
    # Every tool call of every run, wherever the agent wrote it (see the next test for why "wherever").
    calls: dict[str, list[str]] = {}
    for ledger in tmp_path.glob("ledger-*.jsonl"):
        for line in ledger.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                calls.setdefault(e["idempotency_key"].split(":")[0], []).append(e["key"])
    assert set(calls) == set(ledgers), calls
    for run_id in ledgers:
        assert runs[run_id]["outputs"] == {"total": 14}, runs[run_id]
        assert sorted(calls[run_id]) == ["after", "long"], (
            f"run {run_id} made calls {calls[run_id]}: executed more than once\n"
            + "\n".join(f"{e.type} {e.step_id}" for e in _events(pg_url, run_id)))
        started = [e.step_id for e in _events(pg_url, run_id) if e.type == "step_started"]
        assert sorted(started) == ["after", "long"], started
    assert a.alive() and b.alive()


def _events(url: str, run_id: str) -> list:  # type: ignore[type-arg]
    from runner.store import open_store

    store = open_store(url)
    try:
        return list(store.get_events(run_id))
    finally:
        store.close()


async def test_a_run_started_on_one_server_is_reported_through_the_other(two_servers: tuple[ServeProc, ServeProc]) -> None:
    a, b = two_servers
    async with http_client(a.url, ADMIN_TOKEN) as op_a:
        token = (await ok(op_a, "register_agent", {"id": "roamer", "name": "R", "role": "worker"}))["token"]
        await ok(op_a, "define_workflow", {"name": "cross", "steps": [{"step_id": "s", "assigned_agent_id": "roamer"}]})
        run_id = (await ok(op_a, "execute_workflow", {"workflow_id": "cross"}))["run_id"]
        async with http_client(b.url, token) as agent_on_b:
            await assigned(agent_on_b, "roamer", "s", run_id)
            rep = await ok(agent_on_b, "report_step_completion", {"workflow_id": "cross", "step_id": "s",
                                                                  "agent_id": "roamer", "result": {"via": "b"}})
            assert rep["report"] == "accepted"
        run = await ok(op_a, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(op_a, "get_run", {"run_id": run_id, "wait_seconds": 20})
    assert run["status"] == "completed" and run["steps"]["s"]["result"] == {"via": "b"}, run
