"""The agent transport layer against real MCP servers (SPEC §2 "Before the first step", §6, §8).

Agents: tests/agents/counter_agent.py over stdio, streamable HTTP and in-process, and the
third-party server-everything (Node, legacy 2025-11-25 protocol) over stdio and HTTP
(``everything_js`` from conftest: a missing peer fails with an install hint, never skips).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.agents import AgentConnection, AgentPool, CallResult, connect_agent
from runner.agents.results import result_value, to_call_result
from runner.agents.transports import make_transport
from runner.errors import AgentError, ToolFailure
from runner.model import AgentSpec, TransportKind

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "tests" / "agents"
COUNTER = str(AGENTS / "counter_agent.py")

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def stdio_spec(agent_id: str = "counter", **kw: Any) -> AgentSpec:
    kw.setdefault("command", "python")
    kw.setdefault("args", (COUNTER,))
    return AgentSpec(id=agent_id, transport=TransportKind.STDIO, **kw)


@pytest.fixture(scope="module")
async def counter() -> AsyncIterator[AgentConnection]:
    """One stdio session shared by the tests that leave it healthy (a spawn costs ~0.5-1 s).

    Started as ``python counter_agent.py`` in cwd ``agents`` relative to ``tests/``, with an
    extra environment variable, so the spec conventions are exercised too.
    """
    spec = stdio_spec(args=("counter_agent.py",), cwd="agents", env={"RUNNER_TEST_VALUE": 42})
    conn = connect_agent(spec, base_dir=str(ROOT / "tests"))
    await conn.start()
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def fresh_counter() -> AsyncIterator[AgentConnection]:
    """A stdio session of its own, for tests that kill the agent."""
    conn = connect_agent(stdio_spec())
    await conn.start()
    try:
        yield conn
    finally:
        await conn.close()


# --- results: SPEC §2 steps.<id>.result ------------------------------------------------


def test_result_value_rules() -> None:
    assert result_value({"result": 2}, "2", unwrap=True) == 2
    assert result_value({"result": 2}, "2", unwrap=False) == {"result": 2}  # no wrapper schema: kept
    assert result_value({"a": 1}, "ignored", unwrap=True) == {"a": 1}
    assert result_value(None, '{"files": ["a"]}', unwrap=False) == {"files": ["a"]}
    assert result_value(None, "42", unwrap=False) == 42
    assert result_value(None, "Echo: hi", unwrap=False) == "Echo: hi"
    assert result_value(None, "", unwrap=False) == ""


# --- in-process ---------------------------------------------------------------------------


async def test_inprocess_call_unwraps_int_result_and_reads_meta() -> None:
    spec = AgentSpec(id="local", transport=TransportKind.INPROCESS, module="tests.agents.counter_agent:server")
    conn = connect_agent(spec, base_dir=str(ROOT))
    await conn.start()
    try:
        r = await conn.call("add", {"a": 2, "b": 3})
        assert r == CallResult(False, 5, "5", [{"type": "text", "text": "5"}], {"result": 5})
        assert type(r.result) is int
        assert (await conn.call("echo", {"text": "hi"})).result == "hi"
        who = await conn.call("whoami", {}, meta={"runner/idempotency_key": "run1:step:1"})
        assert who.result["meta"]["runner/idempotency_key"] == "run1:step:1"
    finally:
        await conn.close()


async def test_inprocess_factory_and_base_dir_on_sys_path() -> None:
    spec = AgentSpec(id="f", transport=TransportKind.INPROCESS, module="counter_agent:factory")
    conn = connect_agent(spec, base_dir=str(AGENTS))
    await conn.start()
    try:
        assert (await conn.call("add", {"a": 1, "b": 1})).result == 2
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.agents.counter_agent:nothing", "has no attribute 'nothing'"),
        ("tests.agents.no_such_module:server", "cannot import module 'tests.agents.no_such_module'"),
        ("tests.agents.counter_agent", "must be 'package.module:attribute'"),
        ("tests.agents.counter_agent:_calls", "is not an MCPServer or Server (it is int)"),
    ],
)
async def test_inprocess_bad_module_is_agent_error(module: str, message: str) -> None:
    conn = connect_agent(AgentSpec(id="bad", transport=TransportKind.INPROCESS, module=module), base_dir=str(ROOT))
    with pytest.raises(AgentError) as err:
        await conn.start()
    await conn.close()
    assert str(err.value).startswith("agent 'bad' could not start: ")
    assert message in str(err.value)
    assert err.value.agent_id == "bad" and err.value.exit_code == 3


# --- stdio --------------------------------------------------------------------------------


async def test_stdio_lists_tools_once_and_reuses_one_session(counter: AgentConnection) -> None:
    assert {"echo", "add", "slow", "fail", "die", "count", "whoami"} <= set(counter.tools)
    assert counter.tools["add"].input_schema is not None
    assert counter.tools["add"].wraps_result
    pid = (await counter.call("whoami", {})).result["pid"]
    first = (await counter.call("count", {})).result
    counts = [(await counter.call("count", {})).result for _ in range(30)]
    assert counts == list(range(first + 1, first + 31))  # one process served them all, in order
    assert (await counter.call("whoami", {})).result["pid"] == pid
    assert (await counter.call("listings", {})).result == 1  # tools/list once, even for 30+ first calls


async def test_stdio_parallel_calls_share_the_session(counter: AgentConnection) -> None:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(counter.call("slow", {"seconds": 0.2, "steps": 1}) for _ in range(20)))
    assert [r.result for r in results] == ["slept 0.2s"] * 20
    assert time.perf_counter() - t0 < 2.0  # concurrent, not 20 x 0.2 s


async def test_stdio_is_error_result_carries_the_tools_message(counter: AgentConnection) -> None:
    r = await counter.call("fail", {"message": "disk full on /data"})
    assert r.is_error
    assert "disk full on /data" in r.text
    assert (await counter.call("echo", {"text": "still here"})).result == "still here"


async def test_stdio_unknown_tool_is_caught_before_the_call(counter: AgentConnection) -> None:
    before = (await counter.call("count", {})).result
    with pytest.raises(ToolFailure) as err:
        await counter.call("git_log", {"x": 1})
    assert not err.value.retryable
    assert err.value.agent_id == "counter"
    msg = str(err.value)
    assert msg.startswith("agent 'counter' has no tool 'git_log'; it offers: ")
    assert "add, count, crash_once, die, echo" in msg
    assert (await counter.call("count", {})).result == before + 1  # nothing reached the server


async def test_stdio_timeout_fails_the_call_and_keeps_the_session(counter: AgentConnection) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ToolFailure) as err:
        await counter.call("slow", {"seconds": 5, "steps": 5}, timeout=0.4)
    assert time.perf_counter() - t0 < 2.0
    assert str(err.value) == "tool 'slow' on agent 'counter' timed out after 0.4s"
    assert err.value.retryable
    assert (await counter.call("add", {"a": 20, "b": 22})).result == 42
    assert counter.alive and counter.reconnects == 0


async def test_stdio_progress_notifications_reach_sync_and_async_callbacks(counter: AgentConnection) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    r = await counter.call("slow", {"seconds": 0.15, "steps": 3}, on_progress=lambda p, t, m: seen.append((p, t, m)))
    assert r.result == "slept 0.15s"
    assert seen == [(1, 3, "slice 1 of 3"), (2, 3, "slice 2 of 3"), (3, 3, "slice 3 of 3")]

    seen_async: list[float] = []

    async def on_progress(p: float, t: float | None, m: str | None) -> None:
        seen_async.append(p)

    await counter.call("slow", {"seconds": 0.1, "steps": 2}, on_progress=on_progress)
    assert seen_async == [1, 2]


async def test_stdio_idempotency_key_arrives_in_request_meta(counter: AgentConnection) -> None:
    r = await counter.call("whoami", {}, meta={"runner/idempotency_key": "run-7:build:2"})
    assert r.result["meta"]["runner/idempotency_key"] == "run-7:build:2"


async def test_stdio_env_python_convention_and_relative_cwd(counter: AgentConnection) -> None:
    assert (await counter.call("env", {"name": "RUNNER_TEST_VALUE"})).result == "42"
    assert (await counter.call("env", {"name": "PATH"})).result  # the SDK's default env is kept
    assert (await counter.call("env", {"name": "RUNNER_NOT_SET_ANYWHERE"})).result is None


async def test_stdio_call_that_kills_the_agent_is_not_sent_again(fresh_counter: AgentConnection) -> None:
    counter = fresh_counter
    old_pid = (await counter.call("whoami", {})).result["pid"]
    with pytest.raises(ToolFailure) as err:
        await counter.call("die", {})  # the process exits mid-call: the call may have run
    assert str(err.value).startswith(
        "agent 'counter' exited or lost its connection during the call to tool 'die'; "
        "the call may have run, so it is not sent again (the process exited or closed its stdout"
    )
    assert err.value.retryable and err.value.extra == {"kind": "lost_in_flight"}
    assert counter.reconnects == 0 and not counter.alive  # not resent: no new process for it
    r = await counter.call("count", {})  # the next call restarts the agent first
    assert r.result == 1
    assert (await counter.call("whoami", {})).result["pid"] != old_pid
    assert counter.reconnects == 1 and counter.alive
    assert (await counter.call("listings", {})).result == 1  # the new session listed tools once


async def test_stdio_crash_mid_call_reaches_the_agent_exactly_once(tmp_path: Path) -> None:
    marker, log = tmp_path / "crashed", tmp_path / "calls.log"
    conn = connect_agent(stdio_spec("crashy"))
    await conn.start()
    try:
        args = {"marker": str(marker), "calls_log": str(log)}
        with pytest.raises(ToolFailure, match="during the call to tool 'crash_once'; the call may have run"):
            await conn.call("crash_once", args, meta={"runner/idempotency_key": "R:s:1"})
        [first] = log.read_text().splitlines()  # the server saw it once, and died
        assert first.endswith(" R:s:1")
        r = await conn.call("crash_once", args, meta={"runner/idempotency_key": "R:s:2"})
        assert r.result["key"] == "R:s:2" and str(r.result["pid"]) != first.split()[0]
        assert log.read_text().splitlines() == [first, f"{r.result['pid']} R:s:2"]
        assert conn.reconnects == 1
    finally:
        await conn.close()


async def test_stdio_agent_that_dies_while_idle_is_restarted_before_the_next_call(
    fresh_counter: AgentConnection,
) -> None:
    counter = fresh_counter
    pid = (await counter.call("whoami", {})).result["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while counter.alive:  # its stdout closes: the session knows before anything is sent
        assert time.monotonic() < deadline, "the session did not notice the process died"
        await asyncio.sleep(0.02)
    r = await counter.call("whoami", {}, meta={"runner/idempotency_key": "R:idle:1"})
    assert r.result["pid"] != pid and r.result["meta"]["runner/idempotency_key"] == "R:idle:1"
    assert counter.reconnects == 1


async def test_stdio_restarts_that_fail_mark_the_agent_down_after_the_budget(tmp_path: Path) -> None:
    flag = tmp_path / "refuse-to-start"
    conn = connect_agent(stdio_spec("fragile", env={"COUNTER_DIE_AT_START_IF": str(flag)}))
    await conn.start()
    try:
        flag.touch()  # every start of this agent from now on dies before the handshake
        with pytest.raises(ToolFailure, match="during the call to tool 'die'"):
            await conn.call("die", {})
        t0 = time.perf_counter()
        with pytest.raises(ToolFailure) as err:
            await conn.call("count", {})  # never sent: three restarts, all failing
        elapsed = time.perf_counter() - t0
        assert err.value.extra == {"kind": "unreachable"}
        msg = str(err.value)
        assert msg.startswith("agent 'fragile' is unreachable: the process exited or closed its stdout")
        assert "; restarted 3 of 3 times, and reconnecting failed: the process exited before completing" in msg
        assert "refusing to start" in msg  # the agent's stderr
        assert (conn.restarts, conn.reconnects, conn.alive) == (3, 0, False)
        assert 2.5 <= elapsed < 10.0  # backoff 0.5 s + 2 s between the three starts; bounded
        t0 = time.perf_counter()
        with pytest.raises(ToolFailure, match="unreachable"):
            await conn.call("count", {})
        assert time.perf_counter() - t0 < 0.1  # down: no more restarts, fails at once
    finally:
        await conn.close()


async def test_stdio_agent_that_keeps_crashing_is_restarted_a_bounded_number_of_times() -> None:
    spec = stdio_spec("crashloop")
    conn = AgentConnection(spec, make_transport(spec), max_restarts=2, restart_delays=(0.0, 0.3))
    await conn.start()
    try:
        pids = {(await conn.call("whoami", {})).result["pid"]}
        t0 = time.perf_counter()
        for _ in range(3):  # the first process, then two restarts, each killed by the call
            with pytest.raises(ToolFailure, match="lost its connection during the call to tool 'die'"):
                await conn.call("die", {})
            if conn.reconnects < 2:
                pids.add((await conn.call("whoami", {})).result["pid"])
        assert len(pids) == 3 and conn.reconnects == 2
        assert time.perf_counter() - t0 >= 0.3  # the second restart waited for its delay
        with pytest.raises(ToolFailure) as err:
            await conn.call("count", {})
        assert err.value.extra == {"kind": "unreachable"}
        assert "; restarted 2 of 2 times already, the most one run allows" in str(err.value)
        assert conn.restarts == 2
    finally:
        await conn.close()


async def test_stdio_command_not_found_is_agent_error() -> None:
    conn = connect_agent(stdio_spec("ghost", command="no-such-agent-binary-xyz", args=()))
    with pytest.raises(AgentError) as err:
        await conn.start()
    await conn.close()
    assert str(err.value) == "agent 'ghost' could not start: command 'no-such-agent-binary-xyz' not found"


async def test_stdio_missing_cwd_is_agent_error() -> None:
    conn = connect_agent(stdio_spec("lost", cwd="/no/such/dir/xyz"))
    with pytest.raises(AgentError, match="working directory '/no/such/dir/xyz' does not exist"):
        await conn.start()
    await conn.close()


async def test_stdio_command_that_exits_at_once_shows_stderr_tail() -> None:
    code = "import sys\nfor i in range(30): print(f'noise {i}', file=sys.stderr)\nprint('config.yaml: bad key', file=sys.stderr)\nsys.exit(1)"
    conn = connect_agent(stdio_spec("broken", args=("-c", code)))
    with pytest.raises(AgentError) as err:
        await conn.start()
    await conn.close()
    msg = str(err.value)
    assert msg.startswith("agent 'broken' could not start: the process exited before completing the MCP handshake")
    assert msg.rstrip().endswith("config.yaml: bad key")
    assert "noise 29" in msg and "noise 5" not in msg  # the last lines only


async def test_stdio_handshake_timeout_is_agent_error() -> None:
    conn = connect_agent(stdio_spec("mute", args=("-c", "import sys; sys.stdin.read()"), timeout=0.3))
    t0 = time.perf_counter()
    with pytest.raises(AgentError, match=r"agent 'mute' could not start: no MCP handshake within 0.3s"):
        await conn.start()
    await conn.close()
    assert time.perf_counter() - t0 < 2.0


async def test_stdio_stderr_goes_to_the_log_file(tmp_path: Path) -> None:
    code = "import sys; print('started but not MCP', file=sys.stderr); sys.exit(2)"
    async with AgentPool(log_dir=str(tmp_path)) as pool:
        errors = await pool.open([stdio_spec("noisy", args=("-c", code))])
    assert isinstance(errors["noisy"], AgentError)
    assert (tmp_path / "noisy.stderr.log").read_text() == "started but not MCP\n"


# --- third-party server over stdio (legacy protocol) ------------------------------------------


async def test_server_everything_over_stdio(everything_js: Path) -> None:
    conn = connect_agent(AgentSpec(id="everything", command="node", args=(str(everything_js), "stdio")))
    await conn.start()
    try:
        assert conn.protocol_version == "2025-11-25"
        assert {"echo", "get-sum"} <= set(conn.tools)
        echo = await conn.call("echo", {"message": "hi"})
        assert (echo.is_error, echo.result, echo.text) == (False, "Echo: hi", "Echo: hi")
        total = await conn.call("get-sum", {"a": 2, "b": 3})
        assert total.text == "The sum of 2 and 3 is 5."
        with pytest.raises(ToolFailure, match="has no tool 'get_sum'"):
            await conn.call("get_sum", {"a": 2, "b": 3})
    finally:
        await conn.close()


# --- streamable HTTP ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_http_agent(port: int) -> subprocess.Popen[bytes]:
    """counter_agent --http on 127.0.0.1:port, waited for (bounded) until the port answers."""
    proc = subprocess.Popen(
        [sys.executable, COUNTER, "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("counter_agent --http did not start") from None
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(5)


@pytest.fixture(scope="module")
def http_agent() -> Iterator[str]:
    port = _free_port()
    proc = _start_http_agent(port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        _stop(proc)


async def test_http_calls_with_headers(http_agent: str) -> None:
    spec = AgentSpec(id="remote", transport=TransportKind.HTTP, url=http_agent, headers={"X-Runner-Test": "tok-1"})
    conn = connect_agent(spec)
    await conn.start()
    try:
        assert (await conn.call("add", {"a": 40, "b": 2})).result == 42
        assert (await conn.call("header", {"name": "x-runner-test"})).result == "tok-1"
        who = await conn.call("whoami", {}, meta={"runner/idempotency_key": "r:s:1"})
        assert who.result["meta"]["runner/idempotency_key"] == "r:s:1"
        assert (await conn.call("fail", {"message": "nope"})).is_error
        with pytest.raises(ToolFailure, match="timed out after 0.3s"):
            await conn.call("slow", {"seconds": 3}, timeout=0.3)
        assert (await conn.call("echo", {"text": "after"})).result == "after"
    finally:
        await conn.close()


async def test_http_call_lost_mid_response_is_not_resent_but_an_unsent_one_fails_over() -> None:
    port = _free_port()
    proc = _start_http_agent(port)
    conn = connect_agent(AgentSpec(id="web", transport=TransportKind.HTTP, url=f"http://127.0.0.1:{port}/mcp"))
    try:
        await conn.start()
        in_flight = asyncio.ensure_future(conn.call("slow", {"seconds": 5, "steps": 1}))
        await asyncio.sleep(0.5)  # the request is on the server
        _stop(proc)
        with pytest.raises(ToolFailure) as err:
            await in_flight
        assert err.value.extra == {"kind": "lost_in_flight"}
        assert "during the call to tool 'slow'; the call may have run" in str(err.value)
        with pytest.raises(ToolFailure) as err:  # cannot connect: never sent, so `unreachable`
            await conn.call("echo", {"text": "x"})
        assert err.value.extra == {"kind": "unreachable"}
        assert f"cannot connect to http://127.0.0.1:{port}/mcp" in str(err.value)
    finally:
        _stop(proc)
        await conn.close()


async def test_http_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}/mcp"
    conn = connect_agent(AgentSpec(id="far", transport=TransportKind.HTTP, url=url))
    with pytest.raises(AgentError) as err:
        await conn.start()
    await conn.close()
    assert str(err.value).startswith(f"agent 'far' could not be reached: cannot connect to {url}: ")


async def test_legacy_http_session_lost_on_restart_gets_one_reconnect(everything_js: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    cmd = ["node", str(everything_js), "streamableHttp"]
    env = {**os.environ, "PORT": str(port)}

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proc
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError("server-everything did not start") from None
                time.sleep(0.05)

    proc = start()
    conn = connect_agent(AgentSpec(id="ev", transport=TransportKind.HTTP, url=url))
    try:
        await conn.start()
        assert conn.protocol_version == "2025-11-25"  # a session the server keeps (Mcp-Session-Id)
        assert (await conn.call("echo", {"message": "a"})).text == "Echo: a"
        _stop(proc)
        proc = start()  # the new process does not know our session
        assert (await conn.call("echo", {"message": "b"})).text == "Echo: b"
        assert conn.reconnects == 1
        _stop(proc)  # now gone for good: the call could not connect, so nothing was sent,
        with pytest.raises(ToolFailure) as err:  # and reconnecting fails and says where it tried
            await conn.call("echo", {"message": "c"})
        assert err.value.extra == {"kind": "unreachable"}
        assert str(err.value).startswith("agent 'ev' is unreachable: ")
        assert f"reconnecting failed: cannot connect to {url}: " in str(err.value)
        t0 = time.perf_counter()
        with pytest.raises(ToolFailure, match="unreachable"):
            await conn.call("echo", {"message": "d"})  # no second reconnect
        assert time.perf_counter() - t0 < 0.1
    finally:
        _stop(proc)
        await conn.close()


# --- pool ---------------------------------------------------------------------------------


async def test_pool_opens_in_parallel_and_reports_each_failure(http_agent: str) -> None:
    specs = [
        AgentSpec(id="a", transport=TransportKind.HTTP, url=http_agent),
        AgentSpec(id="b", transport=TransportKind.INPROCESS, module="tests.agents.counter_agent:server"),
        stdio_spec("broken", command="no-such-agent-binary-xyz", args=()),
        AgentSpec(id="puller", transport=TransportKind.PULL),
    ]
    pool = AgentPool()
    errors = await pool.open(specs, base_dir=str(ROOT))
    try:
        assert set(errors) == {"a", "b", "broken"}
        assert errors["a"] is None and errors["b"] is None
        assert isinstance(errors["broken"], AgentError)
        assert "command 'no-such-agent-binary-xyz' not found" in str(errors["broken"])
        assert set(pool.connected()) == {"a", "b"}
        assert (await pool.get("a").call("add", {"a": 1, "b": 2})).result == 3
        assert (await pool.get("b").call("echo", {"text": "x"})).result == "x"
        with pytest.raises(KeyError, match="'broken' is not connected"):
            pool.get("broken")
        again = await pool.open(specs[:1])  # already connected: kept, not reconnected
        assert again == {"a": None} and pool.get("a").reconnects == 0
    finally:
        t0 = time.perf_counter()
        await pool.close()
    assert time.perf_counter() - t0 < 3.0
    assert pool.connected() == {}


async def test_closed_connection_refuses_calls() -> None:
    spec = AgentSpec(id="local", transport=TransportKind.INPROCESS, module="tests.agents.counter_agent:server")
    conn = connect_agent(spec, base_dir=str(ROOT))
    await conn.start()
    await conn.close()
    assert not conn.alive
    with pytest.raises(ToolFailure, match="connection is closed"):
        await conn.call("echo", {"text": "x"})


# --- structure --------------------------------------------------------------------------------


def test_importing_runner_agents_does_not_import_mcp() -> None:
    code = "import sys, runner.agents, runner.agents.results; assert 'mcp' not in sys.modules, 'mcp imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_to_call_result_joins_text_blocks() -> None:
    import mcp_types as t

    raw = t.CallToolResult(
        content=[t.TextContent(type="text", text="a"), t.TextContent(type="text", text="b")], is_error=False
    )
    r = to_call_result(raw, unwrap=False)
    assert (r.text, r.result, r.structured) == ("a\nb", "a\nb", None)
    assert r.content == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]


def test_to_call_result_replaces_lone_surrogates_wherever_they_are() -> None:
    import mcp_types as t

    structured = {
        "a": ["x", {"k\ud800": "v\udfff", "n": 7}],
        "b": 1.5,
        "c": None,
        "d": True,
        "e": "é",
        "f": "\ud83d\ude00",
    }
    raw = t.CallToolResult(content=[t.TextContent(type="text", text="t\ud800")], structured_content=structured)
    r = to_call_result(raw, unwrap=False)
    assert r.result == {"a": ["x", {"k\ufffd": "v\ufffd", "n": 7}], "b": 1.5, "c": None, "d": True, "e": "é", "f": "😀"}
    assert list(r.result) == ["a", "b", "c", "d", "e", "f"]  # the copy keeps the order
    assert r.text == "t\ufffd"
    assert r.content == [{"type": "text", "text": "t\ufffd"}]
    r.result["a"][1]["k\ufffd"].encode("utf-8")  # writable anywhere now

    annotated = t.TextContent(type="text", text="\ud800", annotations=t.Annotations(priority=0.5))
    r = to_call_result(t.CallToolResult(content=[annotated]), unwrap=False)
    assert r.content == [{"type": "text", "text": "\ufffd", "annotations": {"priority": 0.5}}]
    assert (r.text, r.result) == ("\ufffd", "\ufffd")


def test_to_call_result_does_not_copy_clean_values() -> None:
    import mcp_types as t

    raw = t.CallToolResult(
        content=[t.TextContent(type="text", text="{}")],
        structured_content={"a": ["x", {"k": "é", "n": 2**64}], "b": [1.5, None, True]},
    )
    r = to_call_result(raw, unwrap=False)
    assert r.result is raw.structured_content
    assert r.content == [{"type": "text", "text": "{}"}]


def test_to_call_result_refuses_an_unprintable_integer_anywhere() -> None:
    import mcp_types as t

    for structured in ({"a": [1, {"b": 2**20000}]}, {"result": 2**20000}):
        raw = t.CallToolResult(content=[t.TextContent(type="text", text="x")], structured_content=structured)
        r = to_call_result(raw, unwrap=True)
        assert r.is_error and "more than 4,300 digits" in r.text
        assert (r.result, r.content) == (None, [])
