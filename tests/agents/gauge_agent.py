"""An MCP agent that measures how many of its calls are in flight at once, across processes.

``GAUGE_PATH`` (env) names a JSON-lines log shared by every process that runs this agent
(the workers of a test). ``hold`` appends an ``enter`` line holding the number of calls in
flight at that moment — counted under an exclusive ``flock`` of the log, over the whole
log's enters and exits — sleeps ``seconds`` (on the first call of a key only, so a call
re-sent after a crash is quick), and appends an ``exit`` line. A test reads the largest
``in_flight`` to check an agent's ``max_concurrency`` across workers. A call of a killed
process never exits: ``enter`` lines carry the pid so a test can tell them apart.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from typing import Any

from mcp.server import MCPServer

server = MCPServer("gauge", log_level="WARNING")


def _log(kind: str, key: str) -> dict[str, Any]:
    """Append one line under the log's lock; an ``enter`` line counts the calls in flight now."""
    with open(os.environ["GAUGE_PATH"], "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            lines = [json.loads(line) for line in f if line.strip()]
            dead = {x["pid"] for x in lines if x["kind"] == "dead"}
            live = [x for x in lines if x["pid"] not in dead]
            n = sum(1 for x in live if x["kind"] == "enter") - sum(1 for x in live if x["kind"] == "exit")
            line = {"kind": kind, "key": key, "pid": os.getpid(), "t": time.time(), "in_flight": n + (kind == "enter")}
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
            return line
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mark_dead(path: str, pid: int) -> None:
    """A test killed ``pid``: its calls in flight no longer count (they will never exit)."""
    os.environ.setdefault("GAUGE_PATH", path)
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(json.dumps({"kind": "dead", "key": "", "pid": pid, "t": time.time(), "in_flight": 0}) + "\n")
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _entered_before(key: str) -> bool:
    path = os.environ["GAUGE_PATH"]
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        return any(x["kind"] == "enter" and x["key"] == key for x in map(json.loads, filter(str.strip, f)))


@server.tool()
async def hold(key: str, seconds: float = 0.2) -> dict[str, Any]:
    """Be in flight for ``seconds`` (first call of ``key`` only); return how many calls were in flight."""
    first = not _entered_before(key)
    entered = _log("enter", key)
    try:
        if first and seconds:
            await asyncio.sleep(seconds)
    finally:
        _log("exit", key)
    return {"key": key, "in_flight": entered["in_flight"]}


if __name__ == "__main__":
    server.run()
