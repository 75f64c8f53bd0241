"""One live MCP session per agent, reused for every step it runs (SPEC §2, §6, §8).

``AgentConnection.start()`` opens the session and lists the tools once; ``call()`` is a
thin wrapper over ``Client.call_tool``: it checks the tool name against that list before
anything goes on the wire, carries the step's ``_meta`` (idempotency key) and progress
callback, converts the result, and turns timeouts and lost transports into
``ToolFailure``.

A call is sent at most once (SPEC §6: one delivery per idempotency key). If the session
is lost while a call is in flight (a stdio server that exits mid-call), the call may have
run, so it is not sent again: it fails as retryable, kind ``lost_in_flight``, and the
step's ``retry`` decides whether a new attempt (with a new key) follows. The session is
marked lost, so the next call reconnects first; only a call that was never sent (the
session was already known dead, or the server refused the request) goes to a new session.
Restarts are bounded: ``MAX_RESTARTS`` per connection (so per run), with a growing least
delay between consecutive starts (``RESTART_DELAYS``). Once that budget is spent the agent
is marked down and its later calls fail at once with the reason (kind ``unreachable``:
nothing was sent, so the engine may try another agent with the same attempt).

Each call's outcome feeds the agent's ``CircuitBreaker`` (SPEC §5): an answer, even an
``isError`` one, is a success; timeouts, lost sessions, failed restarts and protocol
errors are failures. Selection skips an agent whose circuit is open
(``AgentPool.open_circuits``); a call that still arrives then fails unsent (``circuit_open``).

anyio cancel scopes must be entered and exited in the same task, so each session lives in
an *owner task* that enters ``mcp.Client`` and then waits to be told to stop. Calls come
from any task and go straight to the client: no extra task, lock or thread per call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, REQUEST_TIMEOUT, Implementation, RequestParamsMeta
from pydantic import ValidationError

from runner.agents.breaker import CircuitBreaker, CircuitState
from runner.agents.results import CallResult, ProgressFn, ToolInfo, is_result_wrapper, to_call_result
from runner.agents.transports import AgentTransport, describe, make_transport
from runner.errors import AgentError, ToolFailure
from runner.model import AgentSpec, TransportKind

logger = logging.getLogger("runner.agents")

_CLIENT_INFO = Implementation(name="runner", version="0.1.0")
_LIST_PAGE_CAP = 100  # a server whose tools/list never stops paginating cannot hang start()
_STOP_GRACE = 8.0  # stdio shutdown is bounded by the SDK (stdin close, 2 s, SIGTERM, 2 s, SIGKILL)


# How each ToolFailure kind counts for the circuit breaker: the agent answered (a success),
# or the call never reached it (no verdict); every other kind is the agent failing, except
# the later calls lost to one session loss (``same_loss``): that loss counts once.
_ANSWERED = frozenset({"rejected"})
_NO_VERDICT = frozenset({"unknown_tool", "closed", "circuit_open"})


class _StartFailed(Exception):
    """Opening a session failed; ``reason`` says why, without naming the agent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Session:
    """One entered ``mcp.Client`` and the owner task that keeps it open."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.tools: dict[str, ToolInfo] = {}
        self.unwrap: frozenset[str] = frozenset()
        self.lost: str | None = None  # why the transport is gone; None while usable
        self.losses = 0  # calls that failed because this session was lost under them
        self.task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._scope: anyio.CancelScope | None = None

    def require_client(self) -> Client:
        """The entered client; a session without one has lost its transport.

        Callers revive a session whose client is gone before calling, so this raises only
        if the owner task ended in between, as a lost connection (the caller's reconnect path).
        """
        client = self.client
        if client is None:
            raise ConnectionError(self.lost or "the session ended")
        return client

    async def open(self, transport: AgentTransport, timeout: float | None, name: str) -> None:
        """Start the owner task and wait until the session is up and its tools are listed."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        ready.add_done_callback(_retrieve)  # a caller cancelled mid-connect no longer awaits it
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        self.task = asyncio.create_task(self._own(transport, ready, deadline), name=f"mcp-session:{name}")
        try:
            await asyncio.shield(ready)
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def _own(self, transport: AgentTransport, ready: asyncio.Future[None], deadline: float) -> None:
        def on_eof() -> None:
            if self.lost is None and not self._stop.is_set():
                self.lost = transport.reason(ConnectionError("end of stream"), starting=False)

        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                async with transport.target() as target:
                    if transport.kind is not TransportKind.INPROCESS:
                        target = _watch_eof(target, on_eof)
                    async with Client(target, cache=None, client_info=_CLIENT_INFO) as client:
                        self.tools = await _list_tools(client)
                        self.unwrap = frozenset(n for n, t in self.tools.items() if is_result_wrapper(t.output_schema))
                        self.client = client
                        scope.deadline = math.inf
                        ready.set_result(None)
                        await self._stop.wait()
            if scope.cancelled_caught and not ready.done():
                ready.set_exception(TimeoutError())
        except BaseException as exc:  # the owner reports everything; nothing escapes unseen
            fatal = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit))
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(describe(exc)))
            elif not self._stop.is_set():
                self.lost = self.lost or transport.reason(exc, starting=False)
                logger.debug("session task ended: %r", exc)
            if fatal:
                raise
        finally:
            if not ready.done():
                ready.set_exception(ConnectionError("the session closed before it was ready"))
            if self.lost is None and not self._stop.is_set():
                self.lost = "the session ended"
            self.client = None

    async def stop(self) -> None:
        """Close the session (bounded: cancel the owner if the transport will not let go)."""
        self._stop.set()
        task = self.task
        if task is None or task.done():
            return
        if self.client is None and self._scope is not None:
            self._scope.cancel()  # still connecting: nothing to wind down gracefully
        done, _ = await asyncio.wait({task}, timeout=_STOP_GRACE)
        if not done and self._scope is not None:
            self._scope.cancel()
            await asyncio.wait({task}, timeout=2.0)


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class _EofWatch:
    """A transport's read stream that reports its end (the SDK's ``ReadStream`` protocol).

    A stdio server that dies between calls closes its stdout; the SDK's dispatcher then
    stops, but nothing tells the session's owner. Watching the stream the dispatcher reads
    marks the session lost at that moment, so the next call knows, before sending, that it
    needs a new session, instead of finding out from a request that went nowhere (which
    could not be told apart from a crash mid-call, and would not be sent again).
    """

    def __init__(self, inner: Any, on_eof: Callable[[], None]) -> None:
        self._inner = inner
        self._on_eof = on_eof

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message, when the inner stream keeps one."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_eof()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _EofWatch:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _EofWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _watch_eof(transport: Any, on_eof: Callable[[], None]) -> AsyncIterator[tuple[Any, Any]]:
    """Enter an SDK transport (read and write streams) with its read side watched for EOF."""
    async with transport as (read_stream, write_stream):
        yield _EofWatch(read_stream, on_eof), write_stream


async def _list_tools(client: Client) -> dict[str, ToolInfo]:
    """Every tool the agent offers, following pagination (once per session)."""
    tools: dict[str, ToolInfo] = {}
    cursor: str | None = None
    for _ in range(_LIST_PAGE_CAP):
        page = await client.list_tools(cursor=cursor)
        for t in page.tools:
            tools[t.name] = ToolInfo(t.name, t.description, t.input_schema, t.output_schema)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _progress_adapter(fn: ProgressFn) -> ProgressFnT:
    """Accept sync or async progress callbacks; a failing callback must not fail the call."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        try:
            r = fn(progress, total, message)
            if r is not None and inspect.isawaitable(r):
                await r
        except Exception:
            logger.exception("progress callback failed")

    return on_progress


class AgentConnection:
    """One agent's live MCP session: connect once, call many times, reconnect if lost."""

    MAX_RESTARTS = 3
    """Restarts (reconnects) one connection may make: a few per run, then the agent is down."""
    RESTART_DELAYS: tuple[float, ...] = (0.1, 0.5, 2.0)
    """Least time from one start to the next restart (the last value repeats): an agent that
    dies at once is not respawned in a tight loop, one that ran a while restarts at once."""

    def __init__(
        self,
        spec: AgentSpec,
        transport: AgentTransport,
        *,
        connect_timeout: float | None = 30.0,
        max_restarts: int | None = None,
        restart_delays: Sequence[float] | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.connect_timeout = spec.timeout if spec.timeout is not None else connect_timeout
        self.max_restarts = self.MAX_RESTARTS if max_restarts is None else max_restarts
        self.restart_delays = tuple(self.RESTART_DELAYS if restart_delays is None else restart_delays)
        self.tools: dict[str, ToolInfo] = {}
        self._session: _Session | None = None
        self._down: str | None = None  # set when the restart budget is spent: later calls fail at once
        self._closed = False
        self._started = False
        self._revive_lock = asyncio.Lock()
        self._last_start = 0.0  # time.monotonic() of the last start or restart attempt
        self.restarts = 0  # restart attempts made (the budget), successful or not
        self.reconnects = 0  # restarts that gave a working session
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._clock = clock  # the breaker's time (restart delays use the real clock)

    def __repr__(self) -> str:
        state = "down" if self._down else "alive" if self.alive else "idle"
        return f"<AgentConnection {self.spec.id!r} {self.transport.kind} {state}>"

    @property
    def agent_id(self) -> str:
        return self.spec.id

    @property
    def alive(self) -> bool:
        """True while the session is open and its transport was not seen to fail."""
        s = self._session
        return s is not None and s.client is not None and s.lost is None and not self._closed

    @property
    def protocol_version(self) -> str | None:
        s = self._session
        return s.client.protocol_version if s is not None and s.client is not None else None

    async def start(self, timeout: float | None = None) -> None:
        """Connect and list the tools; AgentError naming the agent and the reason otherwise."""
        if self._closed:
            raise AgentError(f"agent '{self.spec.id}' connection is closed", agent_id=self.spec.id)
        if self._session is not None:
            return
        self._started = True
        self._last_start = time.monotonic()
        try:
            self._session = await self._open(self.connect_timeout if timeout is None else timeout)
        except _StartFailed as exc:
            verb = "could not be reached" if self.transport.kind is TransportKind.HTTP else "could not start"
            raise AgentError(f"agent '{self.spec.id}' {verb}: {exc.reason}", agent_id=self.spec.id) from exc.__cause__
        self.tools = self._session.tools

    async def _open(self, timeout: float | None) -> _Session:
        """A new, ready session; ``_StartFailed`` carrying the reason (no agent name) if not."""
        session = _Session()
        try:
            await session.open(self.transport, timeout, self.spec.id)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not isinstance(exc, MCPError):
                reason = f"no MCP handshake within {timeout:g}s"
                noise = getattr(self.transport, "stdout_noise", None)
                if noise:  # alive but talking something else on stdout
                    reason += f"; it wrote non-MCP text on stdout ({noise[0]!r})"
            else:
                reason = self.transport.reason(exc, starting=True)
            raise _StartFailed(reason) from exc
        return session

    def unknown_tool_message(self, tool: str) -> str:
        offered = ", ".join(sorted(self.tools)) or "(no tools)"
        return f"agent '{self.spec.id}' has no tool '{tool}'; it offers: {offered}"

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
        on_progress: ProgressFn | None = None,
    ) -> CallResult:
        """``tools/call`` on this agent's session; the request is sent at most once.

        An ``isError`` result is returned (``is_error=True``); an unknown tool, a timeout or
        an agent that cannot be reached raise ``ToolFailure`` (``extra["kind"]`` says which).
        A session already known to be lost is replaced before sending; a session lost while
        the call is in flight is not: the call fails (``lost_in_flight``, retryable) and the
        next call reconnects. Each call's outcome feeds the agent's circuit breaker; while
        the circuit is open the call fails at once (``circuit_open``) without being sent.
        """
        breaker = self.breaker
        if not breaker.acquire(self._clock()):
            raise self._circuit_refusal()
        verdict: bool | None = None  # True: the agent answered; False: it failed; None: no say
        try:
            result = await self._call(tool, arguments, timeout, meta, on_progress)
            verdict = True
            return result
        except ToolFailure as exc:
            kind = exc.extra.get("kind")
            verdict = None if kind in _NO_VERDICT or exc.extra.get("same_loss") else kind in _ANSWERED
            raise
        finally:
            if verdict is None:
                breaker.release()
            elif verdict:
                breaker.success()
            else:
                was = breaker.opened_at
                breaker.failure(self._clock())
                if breaker.opened_at is not None and breaker.opened_at != was:
                    logger.warning(
                        "agent '%s': circuit open after %d consecutive failures; skipped for %gs",
                        self.spec.id,
                        breaker.failures,
                        breaker.cooldown,
                    )

    async def _call(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        timeout: float | None,
        meta: dict[str, Any] | None,
        on_progress: ProgressFn | None,
    ) -> CallResult:
        """The call itself (see ``call``), without the circuit breaker's bookkeeping."""
        session = self._session
        if session is None or session.lost is not None or session.client is None:
            session = await self._revive(session)  # nothing was sent yet: a new session may take it
        if tool not in session.tools:
            raise self._unknown_tool(tool)
        cb = _progress_adapter(on_progress) if on_progress is not None else None
        # ``_meta`` is an open mapping on the wire; the SDK types it as a TypedDict
        wire_meta = cast("RequestParamsMeta | None", meta)
        try:
            raw = await session.require_client().call_tool(tool, arguments, timeout, cb, meta=wire_meta)
        except Exception as exc:
            if not self.transport.session_lost(exc):
                raise self._failure(tool, exc, timeout) from exc
            session.lost = session.lost or self.transport.reason(exc, starting=False)
            if not self.transport.refused(exc):
                raise self._lost_in_flight(tool, session) from exc
            # The server turned the request away unrun (an HTTP session it no longer knows):
            # the one case where a sent request may go to a new session.
            session = await self._revive(session)
            if tool not in session.tools:
                raise self._unknown_tool(tool) from exc
            try:
                raw = await session.require_client().call_tool(tool, arguments, timeout, cb, meta=wire_meta)
            except Exception as exc2:
                if not self.transport.session_lost(exc2):
                    raise self._failure(tool, exc2, timeout) from exc2
                session.lost = session.lost or self.transport.reason(exc2, starting=False)
                raise self._lost_in_flight(tool, session) from exc2
        return to_call_result(raw, unwrap=tool in session.unwrap)

    def _lost_in_flight(self, tool: str, session: _Session) -> ToolFailure:
        """The call was sent and the session went before its answer: it may have run.

        Retryable, so the step's ``retry`` decides (a new attempt has a new idempotency
        key); kind ``lost_in_flight``, so the engine does not hand this attempt to another
        agent as it does for an agent that was unreachable before anything was sent.
        ``same_loss`` marks the second and later calls lost to one session loss: one crash
        with twenty calls in flight is one failure for the circuit breaker, not twenty.
        """
        sid = self.spec.id
        session.losses += 1
        extra: dict[str, Any] = {"kind": "lost_in_flight"}
        if session.losses > 1:
            extra["same_loss"] = True
        return ToolFailure(
            f"agent '{sid}' exited or lost its connection during the call to tool '{tool}'; "
            f"the call may have run, so it is not sent again ({session.lost})",
            agent_id=sid,
            extra=extra,
        )

    def _failure(self, tool: str, exc: BaseException, timeout: float | None) -> ToolFailure:
        """A failed call whose session survived: timeout, JSON-RPC error, malformed result."""
        sid = self.spec.id
        if isinstance(exc, MCPError):
            if exc.code == REQUEST_TIMEOUT:
                after = f" after {timeout:g}s" if timeout is not None else ""
                msg = f"tool '{tool}' on agent '{sid}' timed out{after}"
                return ToolFailure(msg, agent_id=sid, extra={"kind": "timeout"})
            if exc.code in (INVALID_PARAMS, METHOD_NOT_FOUND):  # the agent answered: the call is wrong
                msg = f"tool '{tool}' on agent '{sid}' failed: {exc.message}"
                return ToolFailure(msg, retryable=False, agent_id=sid, extra={"kind": "rejected"})
            msg = f"tool '{tool}' on agent '{sid}' failed: {exc.message}"
            return ToolFailure(msg, agent_id=sid, extra={"kind": "error"})
        if isinstance(exc, ValidationError):
            msg = f"tool '{tool}' on agent '{sid}' returned a malformed result: {exc}"
            return ToolFailure(msg, agent_id=sid, extra={"kind": "malformed"})
        msg = f"tool '{tool}' on agent '{sid}' failed: {describe(exc)}"
        return ToolFailure(msg, agent_id=sid, extra={"kind": "error"})

    def _unknown_tool(self, tool: str) -> ToolFailure:
        return ToolFailure(
            self.unknown_tool_message(tool), retryable=False, agent_id=self.spec.id, extra={"kind": "unknown_tool"}
        )

    def _closed_failure(self) -> ToolFailure:
        sid = self.spec.id
        return ToolFailure(
            f"agent '{sid}' connection is closed", retryable=False, agent_id=sid, extra={"kind": "closed"}
        )

    def _circuit_refusal(self) -> ToolFailure:
        """Not sent: the circuit is open (selection skips such agents; this is the race)."""
        sid, b = self.spec.id, self.breaker
        return ToolFailure(
            f"agent '{sid}' was not called: its circuit is open after {b.failures} consecutive failures "
            f"(it gets one trial call {b.cooldown:g}s after it opened)",
            agent_id=sid,
            extra={"kind": "circuit_open"},
        )

    @property
    def circuit(self) -> CircuitState:
        """The circuit breaker's state now: closed, open or half_open."""
        return self.breaker.state(self._clock())

    @property
    def circuit_open(self) -> bool:
        """True while selection should skip this agent (open, or half open with its trial call out)."""
        b = self.breaker
        return b.opened_at is not None and not b.allows(self._clock())

    async def _revive(self, dead: _Session | None) -> _Session:
        """Replace a lost session with a new one; concurrent callers share the attempt.

        Restarts are bounded: at most ``max_restarts`` per connection (so per run), each at
        least ``restart_delays[k]`` after the previous start. The agent is marked down only
        when the budget is spent, by failed restarts or by an agent that keeps dying.
        """
        sid = self.spec.id
        if self._closed:
            raise self._closed_failure()
        if not self._started:
            raise RuntimeError(f"agent '{sid}': call() before start()")
        async with self._revive_lock:
            current = self._session
            if current is not None and current is not dead and current.lost is None and current.client is not None:
                return current  # another caller already reconnected
            if self._down is not None:
                raise self._unreachable()
            reason = (dead.lost if dead is not None else None) or "not connected"
            self._session = None
            if dead is not None:
                await dead.stop()
            failed: _StartFailed | None = None
            while self.restarts < self.max_restarts:
                delays = self.restart_delays
                delay = delays[min(self.restarts, len(delays) - 1)] if delays else 0.0
                wait = self._last_start + delay - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._closed:
                    raise self._closed_failure()
                self.restarts += 1
                self._last_start = time.monotonic()
                logger.warning(
                    "agent '%s' lost its session (%s); restarting it (%d of %d)",
                    sid,
                    reason,
                    self.restarts,
                    self.max_restarts,
                )
                try:
                    session = await self._open(self.connect_timeout)
                except _StartFailed as exc:
                    failed = exc
                    continue
                self.reconnects += 1
                if self._closed:  # closed while we were reconnecting
                    await session.stop()
                    raise self._closed_failure()
                self._session = session
                self.tools = session.tools
                return session
            budget = f"restarted {self.restarts} of {self.max_restarts} times"
            if failed is not None:
                self._down = f"{reason}; {budget}, and reconnecting failed: {failed.reason}"
                raise self._unreachable() from failed
            self._down = f"{reason}; {budget} already, the most one run allows"
            raise self._unreachable()

    def _unreachable(self) -> ToolFailure:
        """The agent is down: nothing was sent, so another agent may take the same attempt."""
        sid = self.spec.id
        return ToolFailure(f"agent '{sid}' is unreachable: {self._down}", agent_id=sid, extra={"kind": "unreachable"})

    async def close(self) -> None:
        """End the session (stdio: about 90 ms while the child exits) and release its log."""
        self._closed = True
        session, self._session = self._session, None
        try:
            if session is not None:
                await session.stop()
        finally:
            self.transport.close()


def connect_agent(
    spec: AgentSpec,
    *,
    base_dir: str | None = None,
    connect_timeout: float | None = 30.0,
    stderr_path: str | None = None,
) -> AgentConnection:
    """An unstarted ``AgentConnection`` for ``spec``; ``await conn.start()`` connects it.

    ``base_dir`` resolves a stdio agent's relative ``cwd`` and is put on ``sys.path`` for an
    in-process agent's import. ``stderr_path`` keeps a stdio agent's stderr in that file
    (appended) instead of an anonymous temporary file. Pull agents have no connection:
    ValueError.
    """
    return AgentConnection(
        spec, make_transport(spec, base_dir=base_dir, stderr_path=stderr_path), connect_timeout=connect_timeout
    )
