"""Agents that crash, restart and trip their circuit breaker (SPEC §2 selection, §5, §6).

Real processes where a real agent exists: tests/agents/counter_agent.py over stdio, whose
``crash_once`` tool kills its own server mid-call the first time and logs every call it
receives (the calls the agent really saw, crashed one included). The breaker itself is
pure and is driven with plain numbers for time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.agents import AgentPool
from runner.agents.breaker import CircuitBreaker, CircuitState
from runner.agents.connection import AgentConnection
from runner.agents.transports import make_transport
from runner.core.selection import order
from runner.engine import Engine
from runner.errors import ToolFailure
from runner.model import AgentSpec, RetryPolicy, RunStatus, StepSpec, StepStatus, TransportKind, Workflow

ROOT = Path(__file__).resolve().parent.parent
COUNTER = str(ROOT / "tests" / "agents" / "counter_agent.py")
IN_PROCESS = "tests.agents.counter_agent:server"

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def stdio(agent_id: str, **kw: Any) -> AgentSpec:
    return AgentSpec(id=agent_id, transport=TransportKind.STDIO, command="python", args=(COUNTER,), **kw)


def inprocess(agent_id: str, **kw: Any) -> AgentSpec:
    return AgentSpec(id=agent_id, transport=TransportKind.INPROCESS, module=IN_PROCESS, **kw)


def workflow(*steps: StepSpec, agents: tuple[AgentSpec, ...]) -> Workflow:
    return Workflow(name="recovery", steps=steps, agents=agents)


def step(sid: str, tool: str, args: dict[str, Any] | None = None, *deps: str, **kw: Any) -> StepSpec:
    return StepSpec(step_id=sid, tool_to_call=tool, tool_arguments=args or {}, depends_on=deps, **kw)


class Crash:
    """Arguments for ``crash_once`` and the log of the calls the server received."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker = tmp_path / "crashed"
        self.log = tmp_path / "calls.log"
        self.args = {"marker": str(self.marker), "calls_log": str(self.log)}

    def calls(self) -> list[tuple[int, str]]:
        """(pid, idempotency key) of every call the agent saw, in order."""
        if not self.log.exists():
            return []
        return [(int(pid), key) for pid, key in (line.split() for line in self.log.read_text().splitlines())]


@pytest.fixture
def crash(tmp_path: Path) -> Iterator[Crash]:
    yield Crash(tmp_path)


# --- the engine over a stdio agent that crashes mid-call -------------------------------------


async def test_crash_without_retry_is_called_once_and_fails_the_step_clearly(crash: Crash) -> None:
    w = workflow(
        step("who", "whoami"),
        step("boom", "crash_once", crash.args, "who", assigned_agent_id="c", fallback_agents=("backup",)),
        agents=(stdio("c"), inprocess("backup")),
    )
    r = await Engine(w).run({}, run_id="R")
    boom = r.steps["boom"]
    assert boom.status == StepStatus.FAILED and r.status == RunStatus.FAILED
    assert boom.error is not None and boom.error.startswith(
        "agent 'c' exited or lost its connection during the call to tool 'crash_once'; the call may have run"
    )
    assert (boom.attempts, boom.agent_id) == (1, "c")
    # Exactly one delivery: not resent to a restarted 'c', not handed to the fallback agent.
    assert crash.calls() == [(r.steps["who"].result["pid"], "R:boom:1")]


async def test_crash_with_retry_goes_to_a_restarted_server_with_the_next_key(crash: Crash) -> None:
    w = workflow(
        step("who", "whoami"),
        step("boom", "crash_once", crash.args, "who", retry=RetryPolicy(max_attempts=2)),
        agents=(stdio("c"),),
    )
    r = await Engine(w).run({}, run_id="R")
    boom = r.steps["boom"]
    assert boom.status == StepStatus.COMPLETED and boom.attempts == 2
    first_pid = r.steps["who"].result["pid"]
    assert boom.result["key"] == "R:boom:2" and boom.result["pid"] != first_pid
    assert crash.calls() == [(first_pid, "R:boom:1"), (boom.result["pid"], "R:boom:2")]


async def test_a_later_step_after_a_crash_runs_on_a_restarted_server(crash: Crash) -> None:
    w = workflow(
        step("who", "whoami"),
        step("boom", "crash_once", crash.args, "who", continue_on_error=True),
        step("later", "whoami", {}, "boom"),
        agents=(stdio("c"),),
    )
    r = await Engine(w).run({}, run_id="R")
    assert r.steps["boom"].status == StepStatus.FAILED
    later = r.steps["later"]
    assert later.status == StepStatus.COMPLETED and r.status == RunStatus.COMPLETED
    assert later.result["pid"] != r.steps["who"].result["pid"]
    assert later.result["meta"]["runner/idempotency_key"] == "R:later:1"
    assert len(crash.calls()) == 1


async def test_agent_down_after_its_restart_budget_hands_unsent_calls_to_the_fallback(crash: Crash) -> None:
    # The crash marker doubles as the agent's "refuse to start" flag: once it has crashed,
    # every restart dies before the handshake, so the budget runs out.
    c = stdio("c", env={"COUNTER_DIE_AT_START_IF": str(crash.marker)})
    w = workflow(
        step("boom", "crash_once", crash.args, continue_on_error=True, assigned_agent_id="c"),
        step("later", "whoami", {}, "boom", assigned_agent_id="c", fallback_agents=("backup",)),
        step("after", "whoami", {}, "later", assigned_agent_id="c", fallback_agents=("backup",)),
        agents=(c, inprocess("backup")),
    )
    t0 = time.perf_counter()
    r = await Engine(w).run({}, run_id="R")
    elapsed = time.perf_counter() - t0
    assert r.status == RunStatus.COMPLETED
    later, after = r.steps["later"], r.steps["after"]
    # Never sent to 'c' (it could not be restarted), so the same attempt went to the fallback.
    assert (later.agent_id, later.attempts) == ("backup", 1)
    assert later.result["meta"]["runner/idempotency_key"] == "R:later:1"
    assert after.agent_id == "backup"  # 'c' is down for the rest of the run: no more restarts
    assert len(crash.calls()) == 1
    assert elapsed < 20.0  # three failed starts with 0.5 s + 2 s of backoff between them, not forever


# --- the circuit breaker, pure ---------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_only() -> None:
    b = CircuitBreaker(threshold=3, cooldown=30)
    for t in (1.0, 2.0):
        b.failure(t)
    b.success()  # an answer resets the count: failures must be consecutive
    for t in (3.0, 4.0):
        b.failure(t)
    assert b.state(4.0) is CircuitState.CLOSED and b.allows(4.0) and b.acquire(4.0)
    b.failure(5.0)
    assert b.state(5.0) is CircuitState.OPEN
    assert not b.allows(34.9) and not b.acquire(34.9)
    assert str(b.state(10.0)) == "open"


def test_breaker_half_open_lets_one_trial_call_through_and_its_success_closes() -> None:
    b = CircuitBreaker(threshold=1, cooldown=10)
    b.failure(100.0)
    assert b.state(109.9) is CircuitState.OPEN
    assert b.state(110.0) is CircuitState.HALF_OPEN and b.allows(110.0)
    assert b.acquire(110.0)  # the trial call
    assert not b.allows(110.5) and not b.acquire(110.5)  # only one at a time
    b.success()
    assert b.state(110.6) is CircuitState.CLOSED and b.failures == 0
    assert b.acquire(110.6) and b.acquire(110.6)


def test_breaker_failed_trial_reopens_for_a_full_cooldown() -> None:
    b = CircuitBreaker(threshold=2, cooldown=10)
    b.failure(0.0)
    b.failure(1.0)
    assert b.acquire(11.0)
    b.failure(12.0)
    assert b.state(12.0) is CircuitState.OPEN and b.state(21.9) is CircuitState.OPEN
    assert b.state(22.0) is CircuitState.HALF_OPEN


def test_breaker_trial_without_verdict_is_released_and_stragglers_do_not_extend_the_cooldown() -> None:
    b = CircuitBreaker(threshold=1, cooldown=10)
    b.failure(0.0)
    b.failure(5.0)  # a call that was in flight when it opened: the cool-down still ends at 10
    assert b.state(10.0) is CircuitState.HALF_OPEN
    assert b.acquire(10.0)
    b.release()  # the trial call was cancelled: no verdict, another may try
    assert b.acquire(10.1)


def test_breaker_defaults_follow_the_spec() -> None:
    b = CircuitBreaker()
    assert (b.threshold, b.cooldown) == (5, 30.0)
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)


def test_selection_skips_open_circuits() -> None:
    assert order(["a", "b", "c"], 2, {"b": 3}, (), {"a"}) == ["b", "c"]
    assert order(["a", "b", "c"], 2, {}, {"b"}, {"c"}) == ["a"]
    assert order(["a", "b"], 2, {"a": 1}) == ["b", "a"]  # existing callers: unchanged


# --- the breaker wired into a real connection and into selection ------------------------------


async def test_connection_breaker_counts_failures_not_tool_errors_and_refuses_while_open() -> None:
    now = [1000.0]
    spec = stdio("flaky")
    conn = AgentConnection(spec, make_transport(spec), breaker=CircuitBreaker(2, 10.0), clock=lambda: now[0])
    await conn.start()
    try:
        for _ in range(3):  # isError is the agent answering: it never opens the circuit
            assert (await conn.call("fail", {"message": "no"})).is_error
        for _ in range(2):
            with pytest.raises(ToolFailure, match="timed out"):
                await conn.call("slow", {"seconds": 2, "steps": 1}, timeout=0.1)
        assert conn.circuit is CircuitState.OPEN and conn.circuit_open
        before = await _count_bypassing_breaker(conn)
        with pytest.raises(ToolFailure) as err:
            await conn.call("count", {})
        assert err.value.extra == {"kind": "circuit_open"}
        assert str(err.value).startswith("agent 'flaky' was not called: its circuit is open after 2 consecutive")
        assert await _count_bypassing_breaker(conn) == before + 1  # the refused call never reached it
        now[0] += 10.0
        assert conn.circuit is CircuitState.HALF_OPEN and not conn.circuit_open
        with pytest.raises(ToolFailure, match="timed out"):  # the trial call fails: open again
            await conn.call("slow", {"seconds": 2, "steps": 1}, timeout=0.1)
        assert conn.circuit is CircuitState.OPEN
        now[0] += 10.0
        assert (await conn.call("echo", {"text": "back"})).result == "back"  # the trial succeeds
        assert conn.circuit is CircuitState.CLOSED and conn.breaker.failures == 0
    finally:
        await conn.close()


async def test_calls_in_flight_when_the_agent_dies_all_fail_once_and_count_as_one_failure() -> None:
    spec = stdio("busy")
    conn = AgentConnection(spec, make_transport(spec), breaker=CircuitBreaker(threshold=2))
    await conn.start()
    try:
        slow = [asyncio.ensure_future(conn.call("slow", {"seconds": 5, "steps": 1})) for _ in range(5)]
        await asyncio.sleep(0.3)  # the five are on the server
        with pytest.raises(ToolFailure, match="during the call to tool 'die'"):
            await conn.call("die", {})
        failures = await asyncio.gather(*slow, return_exceptions=True)
        assert all(isinstance(f, ToolFailure) and f.extra["kind"] == "lost_in_flight" for f in failures)
        assert conn.breaker.failures == 1 and conn.circuit is CircuitState.CLOSED  # one crash, one failure
        assert (await conn.call("count", {})).result == 1  # a new process, and none of the six was resent
    finally:
        await conn.close()


async def _count_bypassing_breaker(conn: AgentConnection) -> int:
    """The agent's call counter, read around the breaker (a test's view of the server)."""
    result: int = (await conn._call("count", {}, None, None, None)).result
    return result


async def test_engine_selection_skips_an_agent_whose_circuit_is_open() -> None:
    a, b = inprocess("a", role="worker"), inprocess("b", role="worker")
    steps = tuple(step(f"s{i}", "whoami", {}, assigned_role="worker") for i in range(4))
    async with AgentPool() as pool:
        assert await pool.open([a, b], base_dir=str(ROOT)) == {"a": None, "b": None}
        tripped = pool.get("a").breaker
        for _ in range(tripped.threshold):
            tripped.failure(time.monotonic())
        assert pool.open_circuits() == {"a"} and pool.circuits() == {"a": "open", "b": "closed"}
        r = await Engine(workflow(*steps, agents=(a, b)), pool=pool).run({})
        assert r.status == RunStatus.COMPLETED
        assert {s.agent_id for s in r.steps.values()} == {"b"}

        only_a = step("x", "whoami", {}, assigned_agent_id="a")
        r = await Engine(workflow(only_a, agents=(a, b)), pool=pool).run({})
        assert r.steps["x"].status == StepStatus.FAILED
        assert r.steps["x"].error == "step 'x': no available agent offers tool 'whoami' (circuit open: a)"


async def test_the_circuit_opening_is_recorded_in_the_run_events() -> None:
    a, b = inprocess("a", role="worker"), inprocess("b", role="worker")
    slow = tuple(
        step(f"t{i}", "slow", {"seconds": 5, "steps": 1}, assigned_agent_id="a", timeout=0.05, continue_on_error=True)
        for i in range(2)
    )
    after = step("later", "whoami", {}, *(s.step_id for s in slow), assigned_role="worker")
    events: list[Any] = []
    async with AgentPool() as pool:
        assert await pool.open([a, b], base_dir=str(ROOT)) == {"a": None, "b": None}
        pool.get("a").breaker.threshold = 2  # two timeouts in a row open it
        r = await Engine(workflow(*slow, after, agents=(a, b)), pool=pool, sinks=[events.append]).run({})
    opened = [e for e in events if e.type == "agent_circuit_opened"]
    assert len(opened) == 1 and opened[0].agent_id == "a"
    assert opened[0].data["circuit"] == "open" and opened[0].data["failures"] == 2
    assert r.steps["later"].agent_id == "b"  # selection skipped the open circuit
