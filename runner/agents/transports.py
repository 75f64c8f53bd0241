"""How to reach one agent: stdio, streamable HTTP or in-process (the plug point).

A transport is a small object with one job, like an httpx transport: ``target()`` is an
async context manager that yields what ``mcp.Client`` accepts (a stdio transport, an HTTP
transport bound to a configured ``httpx2`` client, or a server object), and ``reason()``
turns whatever went wrong into one readable sentence. ``AgentConnection`` owns sessions,
retries and results; transports only know how to open the pipe and explain failures.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import importlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TextIO

import httpx2
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer, Server
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST

from runner.errors import AgentError
from runner.model import AgentSpec, TransportKind

_STDERR_TAIL_LINES = 20
_STDERR_TAIL_BYTES = 8192
# Per-call limits come from the step's timeout (read_timeout_seconds), never from httpx.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=None)
# The JSON-RPC error code the runner answers itself with for a POST that could not connect
# (implementation-defined server-error range; no server sends it: it never got the request).
_NOT_SENT = -32098


# The stdio transport whose child produced the stdout line being parsed. Tasks inherit
# context variables when created, so the SDK's reader task (started inside ``target()``)
# sees the transport that opened it, and a log record can be attributed to one agent.
_CURRENT_STDIO: contextvars.ContextVar[StdioTransport | None] = contextvars.ContextVar(
    "runner_current_stdio", default=None
)


class _StdoutNoiseFilter(logging.Filter):
    """Turn the SDK's "Failed to parse JSONRPC message" tracebacks into a note on the agent.

    An agent that prints a banner or logs to stdout corrupts the protocol stream; the SDK
    logs a full pydantic traceback per bad line, which would reach the user's terminal
    through logging's last-resort handler. The runner keeps the offending line instead and
    names it when the agent fails.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to parse JSONRPC message"):
            return True
        transport = _CURRENT_STDIO.get()
        if transport is not None:
            exc = record.exc_info[1] if record.exc_info else None
            transport.note_stdout_noise(exc)
        return False


logging.getLogger("mcp.client.stdio").addFilter(_StdoutNoiseFilter())


def _noise_text(exc: BaseException | None) -> str:
    """The stdout line a pydantic parse error was about (its ``input``), else the error."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            value = first.get("input")
            if value is not None:
                return str(value)[:160]
        except Exception:  # noqa: BLE001 - best effort: fall back to the message
            pass
    return str(exc or "unparseable output")[:160]


def _find_command(command: str) -> str:
    """A bare command name as PATH finds it, else from the runner's own environment.

    ``.venv/bin/runner run`` without an activated venv must still find MCP servers
    installed into that venv (``mcp-server-git``), as ``python`` means its interpreter.
    """
    if os.sep in command or shutil.which(command) is not None:
        return command
    beside = os.path.join(os.path.dirname(sys.executable), command)
    return beside if os.access(beside, os.X_OK) and os.path.isfile(beside) else command


class AgentTransport(Protocol):
    """What ``AgentConnection`` needs from a transport."""

    kind: TransportKind

    def target(self) -> Any:
        """An async context manager yielding the ``server`` argument for ``mcp.Client``."""
        ...

    def reason(self, exc: BaseException, *, starting: bool) -> str:
        """One sentence saying why connecting or calling failed (no agent name)."""
        ...

    def session_lost(self, exc: BaseException) -> bool:
        """Whether a failed call means the session is gone and a new one may succeed."""
        ...

    def refused(self, exc: BaseException) -> bool:
        """Whether a call that failed with ``exc`` is known not to have run on the agent.

        Only such a call may be sent again on a new session: any other lost call may have
        done its work before the session went (a crash mid-call), and resending it would
        run it twice under one idempotency key.
        """
        ...

    def close(self) -> None:
        """Release what the transport holds between sessions (log files)."""
        ...


def leaf_exception(exc: BaseException) -> BaseException:
    """The first real error inside nested exception groups (anyio task groups nest them).

    Cancellations are skipped when something more telling sits beside them.
    """
    while True:
        inner = getattr(exc, "exceptions", None)
        if not inner:
            return exc
        real = [e for e in inner if not _is_cancellation(e)]
        exc = (real or list(inner))[0]


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "Cancelled"


def describe(exc: BaseException) -> str:
    """A short, readable description of an exception (its message, or its type)."""
    exc = leaf_exception(exc)
    if isinstance(exc, MCPError):
        return exc.message or f"MCP error {exc.code}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text if text else type(exc).__name__


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the session's transport is gone (process died, socket closed)."""
    exc = leaf_exception(exc)
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return isinstance(exc, (httpx2.TransportError, ConnectionError, BrokenPipeError, EOFError))


class _StderrLog:
    """Where a stdio agent's stderr goes: a file the child appends to, read back on failure.

    A file rather than a pipe keeps the call path free of work (the kernel writes it; we read
    only when something went wrong) and never lets the child's chatter reach our stdout.
    Opened in append mode, so several child processes (reconnects) share it safely; reads
    use ``pread`` and never move the shared offset.
    """

    def __init__(self, path: str | None) -> None:
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.file: TextIO = open(path, "a+", encoding="utf-8", errors="replace")
        else:
            self.file = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            fd = self.file.fileno()
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        self.path = path

    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def tail(self, since: int = 0, lines: int = _STDERR_TAIL_LINES) -> list[str]:
        """The last ``lines`` non-empty lines written after byte offset ``since``."""
        if self.file.closed:
            return []
        end = self.size()
        start = max(since, end - _STDERR_TAIL_BYTES)
        if end <= start:
            return []
        data = os.pread(self.file.fileno(), end - start, start).decode("utf-8", "replace")
        out = [ln.rstrip() for ln in data.splitlines() if ln.strip()]
        if start > since and out:
            out = out[1:]  # the first line was cut in the middle
        return out[-lines:]

    def close(self) -> None:
        self.file.close()


class StdioTransport:
    """An agent started as a child process, spoken to over its stdin/stdout.

    ``command`` ``python``/``python3`` means the runner's own interpreter, so example agents
    run inside the runner's environment without PATH tricks. A relative ``cwd`` is taken
    relative to ``base_dir`` (the workflow file's directory). ``env`` is added to the SDK's
    minimal default environment (HOME, LOGNAME, PATH, SHELL, TERM, USER).
    """

    kind = TransportKind.STDIO

    def __init__(self, spec: AgentSpec, *, base_dir: str | None = None, stderr_path: str | None = None) -> None:
        if not spec.command:
            raise AgentError(f"agent '{spec.id}' (stdio) has no command", agent_id=spec.id)
        self.command = sys.executable if spec.command in ("python", "python3") else _find_command(str(spec.command))
        self.args = [str(a) for a in spec.args]
        self.env = {str(k): str(v) for k, v in spec.env.items()} or None
        self.cwd: str | None = None
        if spec.cwd:
            cwd = os.path.expanduser(str(spec.cwd))
            self.cwd = cwd if os.path.isabs(cwd) else os.path.join(base_dir or os.getcwd(), cwd)
        self._stderr_path = stderr_path
        self._log: _StderrLog | None = None
        self._mark = 0
        self.stdout_noise: list[str] = []  # non-MCP lines the child wrote on stdout (first few)

    def note_stdout_noise(self, exc: BaseException | None) -> None:
        if len(self.stdout_noise) < 3:
            self.stdout_noise.append(_noise_text(exc))

    @property
    def params(self) -> StdioServerParameters:
        return StdioServerParameters(command=self.command, args=self.args, env=self.env, cwd=self.cwd)

    def stderr_tail(self, lines: int = _STDERR_TAIL_LINES) -> list[str]:
        """The last lines the current (or last) child process wrote to stderr."""
        return self._log.tail(self._mark, lines) if self._log is not None else []

    @asynccontextmanager
    async def target(self) -> AsyncIterator[Any]:
        if self._log is None:
            self._log = _StderrLog(self._stderr_path)
        self._mark = self._log.size()
        self.stdout_noise = []
        token = _CURRENT_STDIO.set(self)
        try:
            yield stdio_client(self.params, errlog=self._log.file)
        finally:
            _CURRENT_STDIO.reset(token)

    def reason(self, exc: BaseException, *, starting: bool) -> str:
        leaf = leaf_exception(exc)
        tail = self.stderr_tail()
        if isinstance(leaf, FileNotFoundError):
            if self.cwd is not None and leaf.filename == self.cwd:
                return f"working directory '{self.cwd}' does not exist"
            return f"command '{self.command}' not found"
        if isinstance(leaf, PermissionError):
            return f"command '{self.command}' cannot be executed: permission denied"
        if is_connection_lost(leaf):
            what = "exited before completing the MCP handshake" if starting else "exited or closed its stdout"
            text = f"the process {what}"
        else:
            text = describe(leaf)
        if self.stdout_noise:
            text += (
                f"; it wrote non-MCP text on stdout ({self.stdout_noise[0]!r}): an MCP server over stdio "
                "must keep stdout for protocol messages and log to stderr"
            )
        if tail:
            shown = tail if starting else tail[-3:]
            text += "; stderr:\n    " + "\n    ".join(shown)
        elif starting and is_connection_lost(leaf) and not self.stdout_noise:
            text += " (nothing on stderr)"
        return text

    def session_lost(self, exc: BaseException) -> bool:
        return is_connection_lost(exc)

    def refused(self, exc: BaseException) -> bool:
        """Never: the child may have read the request before it died."""
        return False

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


class _UnsentAsError(httpx2.AsyncBaseTransport):
    """Answer a POST that could not connect with that request's own JSON-RPC error.

    The SDK runs each POST in a task of the session's task group, so a failed connect
    there ends the whole session, and every call in flight on it fails alike, whether its
    request reached the server or not. A failed connect sends nothing (a new TCP connection
    could not be made); answering it as this request's error (code ``_NOT_SENT``) keeps
    that fact, so the call may go to a new session or another agent (``refused``), while
    calls lost mid-response still fail as lost in flight.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._inner.handle_async_request(request)
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            if request.method != "POST":
                raise
            error = {"code": _NOT_SENT, "message": describe(exc)}
            body = {"jsonrpc": "2.0", "id": None, "error": error}
            return httpx2.Response(503, json=body, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class HttpTransport:
    """An agent already running somewhere, spoken to over MCP streamable HTTP."""

    kind = TransportKind.HTTP

    def __init__(self, spec: AgentSpec) -> None:
        if not spec.url:
            raise AgentError(f"agent '{spec.id}' (http) has no url", agent_id=spec.id)
        self.url = str(spec.url)
        self.headers = {str(k): str(v) for k, v in spec.headers.items()}

    @asynccontextmanager
    async def target(self) -> AsyncIterator[Any]:
        wire = _UnsentAsError(httpx2.AsyncHTTPTransport())
        async with httpx2.AsyncClient(headers=self.headers, timeout=_HTTP_TIMEOUT, transport=wire) as http:
            yield streamable_http_client(self.url, http_client=http)

    def reason(self, exc: BaseException, *, starting: bool) -> str:
        leaf = leaf_exception(exc)
        if isinstance(leaf, MCPError) and leaf.code == _NOT_SENT:
            return f"cannot connect to {self.url}: {leaf.message}"
        if isinstance(leaf, httpx2.HTTPStatusError):
            return f"{self.url} answered HTTP {leaf.response.status_code}"
        if isinstance(leaf, httpx2.TransportError):
            return f"cannot connect to {self.url}: {describe(leaf)}"
        if is_connection_lost(leaf):
            return f"the connection to {self.url} was closed"
        return f"{self.url}: {describe(leaf)}"

    def session_lost(self, exc: BaseException) -> bool:
        """Also a legacy (2025-11-25) session the server no longer knows, e.g. after a restart.

        The SDK reports a 404 on a session as "Session terminated" and other non-JSON error
        statuses (server-everything answers 400) as "Server returned an error response";
        both get the one reconnect, and a retry that fails the same way is a plain failure.
        """
        return is_connection_lost(exc) or self.refused(exc)

    def refused(self, exc: BaseException) -> bool:
        """The server turned the request away at the HTTP level, or was never reached.

        A 404 on a session ("Session terminated") and an error status with no JSON-RPC
        body (how server-everything answers a session it does not know) are the server's
        HTTP layer refusing the request before any tool ran; a failed connect
        (``_UnsentAsError``) sent nothing. The SDK reports every non-404 error status the same way, so a 5xx
        without a JSON-RPC body from a server that crashed mid-call looks like a refusal
        too: it is the one case where a lost call can be sent twice over HTTP.
        """
        leaf = leaf_exception(exc)
        if isinstance(leaf, (httpx2.ConnectError, httpx2.ConnectTimeout)):
            return True
        return isinstance(leaf, MCPError) and (
            leaf.code == _NOT_SENT
            or (leaf.code == INVALID_REQUEST and leaf.message == "Session terminated")
            or (leaf.code == INTERNAL_ERROR and leaf.message == "Server returned an error response")
        )

    def close(self) -> None:
        pass


class InProcessTransport:
    """An ``MCPServer`` (or low-level ``Server``) object living in the runner's process.

    ``module`` is ``"package.module:attribute"``; the attribute is the server or a zero-arg
    callable returning one. ``base_dir`` is put first on ``sys.path`` for the import (and
    left there: the module may import its siblings later).
    """

    kind = TransportKind.INPROCESS

    def __init__(self, spec: AgentSpec, *, base_dir: str | None = None) -> None:
        if not spec.module:
            raise AgentError(f"agent '{spec.id}' (inprocess) has no module", agent_id=spec.id)
        self.module = str(spec.module)
        self.base_dir = base_dir
        self._server: Any = None

    def resolve(self) -> Any:
        """Import the server object (once; reconnects reuse it)."""
        if self._server is not None:
            return self._server
        mod_name, sep, attr = self.module.partition(":")
        if not sep or not mod_name or not attr:
            raise ValueError(f"module {self.module!r} must be 'package.module:attribute'")
        if self.base_dir and self.base_dir not in sys.path:
            sys.path.insert(0, self.base_dir)
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"cannot import module '{mod_name}': {exc}") from exc
        except (SystemExit, KeyboardInterrupt) as exc:  # the module's code must not end the runner
            raise ValueError(f"importing module '{mod_name}' raised {type(exc).__name__}{_args(exc)}") from None
        try:
            obj: Any = getattr(mod, attr)
        except AttributeError:
            raise ValueError(f"module '{mod_name}' has no attribute '{attr}'") from None
        if not isinstance(obj, (MCPServer, Server)) and callable(obj):
            factory: Callable[[], Any] = obj
            obj = factory()
        if not isinstance(obj, (MCPServer, Server)):
            raise ValueError(f"'{self.module}' is not an MCPServer or Server (it is {type(obj).__name__})")
        contain_tool_exits(obj)
        self._server = obj
        return obj

    @asynccontextmanager
    async def target(self) -> AsyncIterator[Any]:
        yield self.resolve()

    def reason(self, exc: BaseException, *, starting: bool) -> str:
        return describe(exc)

    def session_lost(self, exc: BaseException) -> bool:
        return is_connection_lost(exc)

    def refused(self, exc: BaseException) -> bool:
        """Never: the server object shares our process, so a lost call may have run."""
        return False

    def close(self) -> None:
        pass


def _args(exc: BaseException) -> str:
    return f"({', '.join(repr(a) for a in exc.args)})" if exc.args else ""


def contain_tool_exits(server: MCPServer | Server) -> None:
    """Make a tool's ``SystemExit`` or ``KeyboardInterrupt`` that tool's failure, not the runner's end.

    An in-process server shares the runner's process: ``sys.exit(3)`` inside a tool would
    otherwise propagate through the SDK (which catches only ``Exception``) and end the
    run with exit 3, reported as interrupted. The ``tools/call`` handler is wrapped once
    (idempotent: a server reused by another run is not wrapped twice).
    """
    low: Server = server._lowlevel_server if isinstance(server, MCPServer) else server
    entry = low.get_request_handler("tools/call")
    if entry is None or getattr(entry.handler, "_runner_contained", False):
        return
    inner = entry.handler

    async def call_tool(ctx: Any, params: Any) -> Any:
        try:
            return await inner(ctx, params)
        except (SystemExit, KeyboardInterrupt) as exc:
            from mcp_types import CallToolResult, TextContent

            text = f"tool '{params.name}' raised {type(exc).__name__}{_args(exc)} (in-process agent)"
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

    call_tool._runner_contained = True  # type: ignore[attr-defined]
    low.add_request_handler("tools/call", entry.params_type, call_tool)


def make_transport(spec: AgentSpec, *, base_dir: str | None = None, stderr_path: str | None = None) -> AgentTransport:
    """The transport for ``spec.transport``; ValueError for pull agents (no connection)."""
    kind = TransportKind(spec.transport)
    if kind is TransportKind.STDIO:
        return StdioTransport(spec, base_dir=base_dir, stderr_path=stderr_path)
    if kind is TransportKind.HTTP:
        return HttpTransport(spec)
    if kind is TransportKind.INPROCESS:
        return InProcessTransport(spec, base_dir=base_dir)
    raise ValueError(f"agent '{spec.id}' uses transport '{kind}', which has no connection")
