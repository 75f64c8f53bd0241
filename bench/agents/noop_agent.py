"""A no-op MCP server for the benchmark: in-process (``bench.agents.noop_agent:server``)
or over stdio (``python bench/agents/noop_agent.py``).

Its tools are ``async def`` (a sync tool costs a worker-thread hop, ~85 µs, which would
be charged to the runner) and do as little as possible, so that what is measured is the
MCP call and the runner around it, not the tool.
"""

from __future__ import annotations

import asyncio

from mcp.server import MCPServer

server = MCPServer("noop", log_level="WARNING")


@server.tool()
async def echo(x: str) -> str:
    """Return ``x`` unchanged (the 1,000-step chain passes each result to the next step)."""
    return x


@server.tool()
async def noop() -> int:
    """Do nothing; return 0."""
    return 0


@server.tool()
async def item(x: int) -> int:
    """Return the ``for_each`` item it was given."""
    return x


@server.tool()
async def sleep(ms: float = 50.0) -> float:
    """Sleep ``ms`` milliseconds (the parallel-calls row); return ``ms``."""
    await asyncio.sleep(ms / 1000.0)
    return ms


if __name__ == "__main__":
    server.run()
