"""Load on `runner serve` over streamable HTTP: many agents at once, nothing lost.

    .venv/bin/python bench/serve_load.py [--clients 50] [--calls 200] [--store URL]

Starts `runner serve --transport http --port 0` on a fresh SQLite file (or ``--store``),
registers one agent per client and, for each, a workflow whose ``for_each`` pull step
waits for that agent's reports. Then every client makes ``--calls`` calls over its own
HTTP session, mixing heartbeats, messages sent and read, file leases taken and released,
and reports on its pull items. At the end it checks that nothing was lost: every report
recorded exactly once (one ``step_reported`` event each, every item completed), every
message delivered exactly once, no error results. Prints a Markdown table: calls, errors,
throughput, p50/p99 latency per tool. Exit status 1 when anything was lost or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(sys.executable).parent / "runner"
ADMIN = "bench-admin-token-0123456789"


def start_server(store: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, RUNNER_ADMIN_TOKEN=ADMIN)
    proc = subprocess.Popen(
        [str(RUNNER), "serve", "--transport", "http", "--port", "0", "--store", store],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://\S+/mcp)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("runner serve did not start")


class Session:
    """One client's HTTP session, timing each call by tool."""

    def __init__(self, url: str, token: str, timings: dict[str, list[float]], errors: list[str]) -> None:
        self.url, self.token, self.timings, self.errors = url, token, timings, errors

    async def __aenter__(self) -> Session:
        self._http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        await self._http.__aenter__()
        self._client = Client(streamable_http_client(self.url, http_client=self._http))
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.__aexit__(*exc)
        await self._http.__aexit__(*exc)

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        r = await self._client.call_tool(tool, args)
        self.timings[tool].append(time.perf_counter() - t0)
        if r.is_error:
            self.errors.append(f"{tool}: {r.content[0].text if r.content else '?'}")
            return None
        return r.structured_content


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--store", default=None)
    ap.add_argument("--seed", type=int, default=7)
    opts = ap.parse_args()
    rnd = random.Random(opts.seed)
    tmp = tempfile.mkdtemp(prefix="serve-load-")
    store = opts.store or f"sqlite:///{tmp}/load.db"
    proc, url = start_server(store)
    timings: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    n_items = opts.calls  # more items than any client can report
    try:
        agents = [f"agent{i:03d}" for i in range(opts.clients)]
        tokens: dict[str, str] = {}
        runs: dict[str, str] = {}
        async with Session(url, ADMIN, timings, errors) as op:
            for a in agents:
                reg = await op.call("register_agent", {"id": a, "name": a, "role": "worker", "capabilities": ["load"]})
                assert reg is not None, errors
                tokens[a] = reg["token"]
                wf = (
                    f"name: load-{a}\nagents: []\nsteps:\n  - step_id: work\n    assigned_agent_id: {a}\n"
                    f"    for_each: \"{{{{ range({n_items}) | list }}}}\"\n"
                )
                d = await op.call("define_workflow", {"workflow_yaml": wf})
                assert d is not None and d["valid"], (d, errors)
                ex = await op.call("execute_workflow", {"workflow_id": f"load-{a}"})
                assert ex is not None, errors
                runs[a] = ex["run_id"]

        sent: dict[str, int] = defaultdict(int)  # recipient -> messages sent to it
        received: dict[str, list[int]] = defaultdict(list)  # recipient -> message ids read
        reported: dict[str, set[int]] = defaultdict(set)

        async def client(a: str) -> None:
            async with Session(url, tokens[a], timings, errors) as s:
                for _ in range(opts.calls):
                    kind = rnd.choices(["heartbeat", "send", "read", "lock", "report"], [25, 20, 15, 20, 20])[0]
                    if kind == "heartbeat":
                        await s.call("heartbeat", {"agent_id": a, "status": "working"})
                    elif kind == "send":
                        to = rnd.choice([b for b in agents if b != a])
                        if await s.call("send_message", {"sender_id": a, "recipient_id": to, "content": f"hi from {a}"}):
                            sent[to] += 1
                    elif kind == "read":
                        got = await s.call("get_messages", {"agent_id": a, "unread_only": True})
                        if got:
                            received[a].extend(m["id"] for m in got["messages"])
                    elif kind == "lock":
                        path = f"src/{rnd.randrange(20)}/*.py"
                        got = await s.call("acquire_file_lock", {"agent_id": a, "file_path": path, "ttl_seconds": 30})
                        if got and got.get("granted"):
                            await s.call("release_file_lock", {"agent_id": a, "file_path": path})
                    else:
                        waiting = await s.call("list_assigned_steps", {"agent_id": a})
                        todo = [w for w in (waiting or {}).get("steps", []) if w["index"] not in reported[a]]
                        if todo:
                            w = todo[0]
                            got = await s.call("report_step_completion", {
                                "workflow_id": w["workflow_id"], "step_id": "work", "agent_id": a,
                                "run_id": w["run_id"], "index": w["index"], "result": {"i": w["index"]},
                            })
                            if got and got["report"] == "accepted":
                                reported[a].add(w["index"])

        async def drain(a: str) -> None:  # once every client is done: what is left for ``a``
            async with Session(url, tokens[a], timings, errors) as s:
                got = await s.call("get_messages", {"agent_id": a, "unread_only": True})
                if got:
                    received[a].extend(m["id"] for m in got["messages"])

        t0 = time.perf_counter()
        await asyncio.gather(*(client(a) for a in agents))
        wall = time.perf_counter() - t0
        for a in agents:
            await drain(a)
        await asyncio.sleep(1.5)  # let the executing runs apply the last reports

        lost: list[str] = []
        from runner.store import open_store

        st = open_store(store)
        try:
            for a in agents:
                if len(received[a]) != len(set(received[a])):
                    lost.append(f"{a}: a message was delivered twice")
                if len(set(received[a])) != sent[a]:
                    lost.append(f"{a}: {sent[a]} messages sent to it, {len(set(received[a]))} delivered")
                evs = [e for e in st.get_events(runs[a]) if e.type == "step_reported"]
                idx = [e.data.get("index") for e in evs]
                if sorted(idx) != sorted(reported[a]):
                    lost.append(f"{a}: {len(reported[a])} reports accepted, {len(idx)} step_reported events")
                done = {e.data.get("index") for e in st.get_events(runs[a]) if e.type == "item_completed"}
                if not reported[a] <= done:
                    lost.append(f"{a}: reported items not completed: {sorted(reported[a] - done)[:5]}")
        finally:
            st.close()
            async with Session(url, ADMIN, timings, errors) as op:
                for a in agents:
                    await op.call("cancel_run", {"run_id": runs[a]})
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    calls = sum(len(v) for v in timings.values())
    print(f"| clients | calls | errors | lost | wall s | calls/s |\n|---|---|---|---|---|---|\n"
          f"| {opts.clients} | {calls} | {len(errors)} | {len(lost)} | {wall:.1f} | {calls / wall:.0f} |\n")
    print("| tool | calls | p50 ms | p99 ms |\n|---|---|---|---|")
    for tool, ts in sorted(timings.items()):
        ts.sort()
        p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))]
        print(f"| {tool} | {len(ts)} | {statistics.median(ts) * 1000:.1f} | {p99 * 1000:.1f} |")
    reports = sum(len(v) for v in reported.values())
    print(f"\nreports accepted: {reports}; messages sent: {sum(sent.values())}")
    for line in (errors[:10] + lost[:10]):
        print("!", line)
    return 1 if errors or lost else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
