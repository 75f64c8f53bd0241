"""An MCP agent that writes every call to a ledger file, so tests can count calls across crashes.

``LEDGER_PATH`` (env) names the file; each call appends one JSON line with the key, the
idempotency key from the request ``_meta`` and the process id. ``record`` sleeps
``sleep_first`` seconds on the first call of a key only, so a test can kill the runner
while that call is in flight and a resumed run finishes quickly.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context

server = MCPServer("ledger", log_level="WARNING")


def _entries() -> list[dict[str, Any]]:
    path = os.environ["LEDGER_PATH"]
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@server.tool()
async def record(key: str, ctx: Context, sleep_first: float = 0.0, value: Any = None) -> dict[str, Any]:
    """Append a ledger line for ``key``; return how many times ``key`` was recorded and ``value``."""
    meta = dict(ctx.request_context.meta or {})
    n = sum(1 for e in _entries() if e["key"] == key) + 1
    line = {"key": key, "n": n, "pid": os.getpid(), "idempotency_key": meta.get("runner/idempotency_key")}
    with open(os.environ["LEDGER_PATH"], "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if n == 1 and sleep_first:
        await asyncio.sleep(sleep_first)
    return {"key": key, "calls": n, "value": value}


if __name__ == "__main__":
    server.run()
