"""A tiny MCP server for the transport tests: counts calls, fails, sleeps, dies on demand.

Runnable three ways, so one agent covers every transport the runner speaks:

    python tests/agents/counter_agent.py               # stdio
    python tests/agents/counter_agent.py --http PORT   # streamable HTTP on 127.0.0.1:PORT/mcp
    inprocess: module "tests.agents.counter_agent:server" (or the file's directory + "counter_agent:server")

With the environment variable ``COUNTER_DIE_AT_START_IF`` naming a file, a process started
while that file exists exits at once (status 3) before speaking MCP: a server that dies at
every start, for the restart-budget tests.
"""

from __future__ import annotations

import os
import sys

_DIE_FLAG = os.environ.get("COUNTER_DIE_AT_START_IF")
if __name__ == "__main__" and _DIE_FLAG and os.path.exists(_DIE_FLAG):  # before the ~0.4 s of imports
    print(f"counter_agent: {_DIE_FLAG} exists, refusing to start", file=sys.stderr, flush=True)
    os._exit(3)

from typing import Any  # noqa: E402

import anyio  # noqa: E402
from mcp.server import MCPServer  # noqa: E402
from mcp.server.mcpserver import Context  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402


class _CountingServer(MCPServer):
    """Counts tools/list requests, so tests can prove the runner lists tools once per session."""

    listings = 0

    async def list_tools(self) -> Any:
        _CountingServer.listings += 1
        return await super().list_tools()


server = _CountingServer("counter", log_level="WARNING")

_calls = 0


def _tick() -> int:
    """Count one served call; `count` tells a fresh process from a reused one."""
    global _calls
    _calls += 1
    return _calls


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    _tick()
    return text


@server.tool()
async def add(a: int, b: int) -> int:
    """Add two integers (a primitive result: the SDK wraps it as {"result": ...})."""
    _tick()
    return a + b


@server.tool()
async def slow(seconds: float, ctx: Context, steps: int = 3) -> str:
    """Sleep `seconds` in `steps` slices, reporting progress after each one."""
    _tick()
    for i in range(steps):
        await anyio.sleep(seconds / max(steps, 1))
        await ctx.report_progress(i + 1, steps, f"slice {i + 1} of {steps}")
    return f"slept {seconds}s"


@server.tool()
async def fail(message: str) -> str:
    """Fail with `message` (ToolError, so the client sees isError with that text)."""
    _tick()
    raise ToolError(message)


@server.tool()
async def die() -> str:
    """Exit the process at once, as a crashing agent would."""
    os._exit(1)


@server.tool()
async def crash_once(marker: str, calls_log: str, ctx: Context) -> dict[str, Any]:
    """Kill this server mid-call the first time, answer on later calls.

    Every call first appends ``<pid> <idempotency key>`` to ``calls_log`` (so a test counts
    the calls the server really received, including the one that crashed it). If
    ``marker`` does not exist yet, it is created and the process exits at once, with the
    request unanswered; otherwise the call returns its pid and key.
    """
    _tick()
    meta = ctx.request_context.meta or {}
    key = str(dict(meta).get("runner/idempotency_key"))
    with open(calls_log, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {key}\n")
    if not os.path.exists(marker):
        with open(marker, "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return {"pid": os.getpid(), "key": key}


@server.tool()
async def count() -> int:
    """How many calls this process has served, this one included."""
    return _tick()


@server.tool()
async def listings() -> int:
    """How many tools/list requests this process has served."""
    return _CountingServer.listings


@server.tool()
async def whoami(ctx: Context) -> dict[str, Any]:
    """The request `_meta` this call arrived with (proves the idempotency key reaches us)."""
    _tick()
    meta = ctx.request_context.meta or {}
    return {"meta": {k: v for k, v in dict(meta).items() if _jsonable(v)}, "pid": os.getpid()}


@server.tool()
async def env(name: str) -> str | None:
    """The value of environment variable `name` in this process, or null."""
    _tick()
    return os.environ.get(name)


@server.tool()
async def header(name: str, ctx: Context) -> str | None:
    """The value of HTTP request header `name` (None over stdio and in-process)."""
    _tick()
    headers = ctx.headers
    return None if headers is None else headers.get(name)


def factory() -> MCPServer:
    """A zero-argument factory, for in-process specs that name a callable."""
    return server


def _jsonable(value: object) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), dict, list))


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
