"""An in-process MCP server that misbehaves on purpose, for the hostile-input tests.

Module ``tests.agents.hostile_agent:server``. Each tool is one way a tool sharing the
runner's process can try to take it down or poison what it stores.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer

server = MCPServer("hostile", log_level="WARNING")


@server.tool()
async def echo(value: Any = None) -> Any:
    """Return ``value`` as given."""
    return value


@server.tool()
async def big_int() -> int:
    """An integer of 6,021 digits: more than Python will print."""
    return 2**20000


@server.tool()
async def surrogate() -> str:
    """Text with a lone UTF-16 surrogate, which UTF-8 cannot encode."""
    return "a\ud800b"


@server.tool()
async def sys_exit() -> str:
    """``sys.exit(3)`` inside the runner's process."""
    raise SystemExit(3)


@server.tool()
async def keyboard_interrupt() -> str:
    """A ``KeyboardInterrupt`` nobody typed."""
    raise KeyboardInterrupt


@server.tool()
async def boom() -> str:
    """An ordinary crash: the SDK logs its traceback."""
    raise RuntimeError("boom")
