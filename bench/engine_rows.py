"""Rows 0–3: the MCP SDK's own speed here, and the runner's cost around MCP calls.

Every figure compares the runner with the same tool calls made by a hand-written loop
over one ``mcp.Client`` session. Connecting is excluded on both sides: the runner's part
is ``RunResult.duration_ms - RunResult.preflight_ms`` (store setup, planning, the DAG loop,
every event and store write, the outputs; not the agent connection and ``tools/list`` of
the preflight, nor closing the pool), the baseline's part starts after ``list_tools()``
(which the runner's preflight also does, so neither side's first call pays the SDK's
implicit tool listing).

Row 1 is measured twice: with the in-process ``MCPServer`` (the budgeted figure), and with
``runner.testing.FakePool`` in place of MCP, which isolates the engine (scheduler,
templates, events, store) from the SDK's ~0.1–0.5 ms a call and its noise.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from mcp import Client, StdioServerParameters

from bench.common import (
    AGENT_ID,
    NOOP_SCRIPT,
    ROOT,
    Row,
    chain_workflow,
    inprocess_agent,
    log,
    median,
    parallel_workflow,
    spread,
    stdio_agent,
)
from runner.agents.pool import AgentPool
from runner.engine import Engine, RunResult
from runner.model import RunStatus, Workflow
from runner.service import RunService
from runner.store import open_store
from runner.store.base import Store
from runner.testing import FakeAgent, FakePool

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _run_engine(wf: Workflow, store: Store | None = None, pool: Any = None) -> float:
    """Run ``wf``; return the runner's wall time without the preflight, in seconds."""
    if store is None:
        res: RunResult = await Engine(wf, base_dir=str(ROOT), pool=pool).run({})
    else:  # a stored run goes through the service, as `runner run` does
        res = await RunService(store, pool=pool, base_dir=str(ROOT)).run(wf, {})
    if res.status != RunStatus.COMPLETED:
        why = next((f"{sid}: {o.error}" for sid, o in res.steps.items() if o.error), res.error)
        raise RuntimeError(f"benchmark run {wf.name} ended {res.status}: {why}")
    return (res.duration_ms - res.preflight_ms) / 1000.0


async def _baseline_chain(client: Client, n: int) -> float:
    """``n`` sequential ``echo`` calls, each passing on the previous result (seconds)."""
    x: Any = "seed"
    t0 = time.perf_counter()
    for _ in range(n):
        r = await client.call_tool("echo", {"x": x})
        x = r.structured_content["result"]  # type: ignore[index]
    return time.perf_counter() - t0


async def _baseline_parallel(client: Client, n: int, ms: float, concurrency: int) -> float:
    """``n`` ``sleep(ms)`` calls gathered under a semaphore of ``concurrency`` (seconds)."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await client.call_tool("sleep", {"ms": ms})

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- stores


class _Stores:
    """The store configurations of row 1; temporary files and databases, removed on close."""

    def __init__(self, with_pg: bool) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="runner-bench-")
        self.urls: dict[str, str | None] = {
            "none": None,
            "memory": "memory://",
            "sqlite": f"sqlite:///{self._tmp.name}/bench.db",
        }
        self._pg_db: str | None = None
        self.pg_error: str | None = None
        if with_pg:
            self._create_pg()

    def _create_pg(self) -> None:
        try:
            import psycopg

            name = f"runner_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            self._pg_db = name
            base = PG_ADMIN_URL.rsplit("/", 1)[0]
            self.urls["postgresql"] = f"{base}/{name}"
        except Exception as exc:  # no server: the row says why instead of failing the bench
            self.pg_error = f"{type(exc).__name__}: {exc}".splitlines()[0]

    def open(self, key: str) -> Store | None:
        url = self.urls[key]
        return open_store(url) if url is not None else None

    def close(self) -> None:
        if self._pg_db is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_db}" WITH (FORCE)')
            self._pg_db = None
        self._tmp.cleanup()


# --------------------------------------------------------------------------- row 1


async def _echo(x: Any) -> Any:
    return x


async def _fake_baseline(agent: FakeAgent, n: int) -> float:
    """``n`` sequential calls straight to the fake agent (what the engine adds nothing to)."""
    x: Any = "seed"
    t0 = time.perf_counter()
    for _ in range(n):
        x = (await agent.call("echo", {"x": x})).result
    return time.perf_counter() - t0


async def _chain_runs(
    reps: int, n: int, stores: _Stores, keys: list[str], mcp: bool, label: str
) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds of each repetition: the runner per store key, and the hand-written baseline.

    ``mcp``: the in-process ``MCPServer`` through ``mcp.Client`` (the budgeted figure);
    otherwise ``runner.testing.FakePool`` (the engine alone, no MCP SDK). Baseline and
    runner alternate within each repetition, so a change in load hits both.
    """
    from bench.agents.noop_agent import server

    runs: dict[str, list[float]] = {k: [] for k in keys}
    base: list[float] = []
    for rep in range(-1, reps):  # rep -1 warms up: imports, pydantic's lazy builds, store schemas
        m = 50 if rep < 0 else n
        if mcp:
            async with Client(server) as client:
                await client.list_tools()
                b = await _baseline_chain(client, m)
        else:
            b = await _fake_baseline(FakeAgent(AGENT_ID, {"echo": _echo}), m)
        line = [f"baseline {b * 1e3:.0f} ms"]
        for k in keys:
            store = stores.open(k)
            prefix = f"{'m' if mcp else 'f'}{rep + 1}{k}_"
            try:
                if mcp:
                    t = await _run_engine(chain_workflow(m, inprocess_agent(), prefix=prefix), store)
                else:
                    agent = FakeAgent(AGENT_ID, {"echo": _echo})
                    t = await _run_engine(chain_workflow(m, agent.spec, prefix=prefix), store, FakePool([agent]))
            finally:
                if store is not None:
                    store.close()
            if rep >= 0:
                runs[k].append(t)
            line.append(f"{k} {t * 1e3:.0f} ms")
        if rep >= 0:
            base.append(b)
            log(f"  {label} rep {rep + 1}/{reps}: " + ", ".join(line))
    return runs, base


def _per_step_us(runs: list[float], base: list[float], n: int) -> float:
    """(median runner − median baseline) / n, in µs: a noise spike in one run of either
    side moves its median little, where it would ruin one pair of a paired difference."""
    return (median(runs) - median(base)) / n * 1e6


def _us_spread(xs: list[float], n: int) -> str:
    return spread([x / n * 1e6 for x in xs])


# SPEC §7 holds the budgets as ratios to the bare in-memory call measured in the same run
# (the run's own time per step / one SDK call): memory ≤ 1.25×, SQLite ≤ 1.6×.
_BUDGETS = {"none": 1.25, "memory": 1.25, "sqlite": 1.6, "postgresql": None}
_LABELS = {"none": "no store", "memory": "memory store", "sqlite": "SQLite store (WAL, file in /tmp)",
           "postgresql": "PostgreSQL store (127.0.0.1)"}


async def row1_overhead(reps: int, n: int = 1000, with_pg: bool = True) -> list[Row]:
    """Runner overhead per step on an ``n``-step templated chain: in-process MCP, then engine alone."""
    stores = _Stores(with_pg)
    try:
        keys = list(stores.urls)
        runs, base = await _chain_runs(reps, n, stores, keys, True, "row 1 (in-process MCP)")
        fkeys = [k for k in keys if k != "postgresql"]
        fruns, fbase = await _chain_runs(reps, n, stores, fkeys, False, "row 1 (FakePool)")
    finally:
        stores.close()
    rows = []
    for k in keys:
        us = _per_step_us(runs[k], base, n)
        ratio = median(runs[k]) / median(base)
        budget = _BUDGETS[k]
        rows.append(Row(
            "1", f"run time per step / bare call, {n}-step templated chain, in-process agent, {_LABELS[k]}",
            f"{ratio:.3f}×", f"≤ {budget:g}×" if budget else "(none)",
            (ratio <= budget) if budget else None,
            f"overhead {us:.1f} µs/step; medians of {reps} reps: runner {median(runs[k]) / n * 1e6:.0f} µs/step "
            f"(spread {_us_spread(runs[k], n)}), SDK loop {median(base) / n * 1e6:.0f} µs/call "
            f"(spread {_us_spread(base, n)}); from the fastest rep of each side "
            f"{(min(runs[k]) - min(base)) / n * 1e6:.1f} µs",
        ))
    if "postgresql" not in stores.urls:
        rows.append(Row("1", "runner overhead per step, PostgreSQL store", "n/a", "(none)", None,
                        f"no PostgreSQL: {stores.pg_error}"))
    for k in fkeys:
        rows.append(Row(
            "1", f"same chain, engine alone (runner.testing.FakePool, no MCP SDK), {_LABELS[k]}",
            f"{_per_step_us(fruns[k], fbase, n):.1f} µs", "(diagnostic)", None,
            f"medians of {reps} reps: runner {median(fruns[k]) / n * 1e6:.0f} µs/step "
            f"(spread {_us_spread(fruns[k], n)}), direct fake calls {median(fbase) / n * 1e6:.1f} µs/call; "
            f"fastest rep {(min(fruns[k]) - min(fbase)) / n * 1e6:.1f} µs; "
            "a lower bound of the row above (leaves out AgentConnection.call and result conversion)",
        ))
    return rows


# --------------------------------------------------------------------------- rows 2 and 3


async def _stdio_pair(
    reps: int,
    wf_for: Callable[[int], Workflow],
    baseline: Callable[[Client], Any],
    label: str,
) -> tuple[list[float], list[float]]:
    """Alternate runner and hand-written runs, each with a freshly spawned stdio server."""
    params = StdioServerParameters(command=sys.executable, args=[NOOP_SCRIPT])
    runner_t: list[float] = []
    base_t: list[float] = []
    for rep in range(-1, reps):  # rep -1: warm-up (page cache, pydantic builds), not counted
        if rep % 2:  # alternate which side goes first, so a drift in load favours neither
            t = await _run_engine(wf_for(rep))
        async with Client(params) as client:
            await client.list_tools()
            b = await baseline(client)
        if not rep % 2:
            t = await _run_engine(wf_for(rep))
        if rep >= 0:
            base_t.append(b)
            runner_t.append(t)
            log(f"  {label} rep {rep + 1}/{reps}: baseline {b * 1e3:.1f} ms, runner {t * 1e3:.1f} ms")
    return runner_t, base_t


_ROW2_PAIRS = 5
"""Runner/baseline pairs per repetition of row 2 (on the same two warm sessions)."""


async def _timed_runner(wf: Workflow, pool: AgentPool) -> tuple[float, float]:
    """The runner's timed part (seconds) and this process's CPU time over the whole run.

    The CPU time covers ``Engine.run`` from end to end: on a pool already connected, that
    adds only the preflight's checks to the timed part (a fraction of a call), so the
    figure leans, if anything, against the runner.
    """
    c0 = time.process_time()
    t = await _run_engine(wf, pool=pool)
    return t, time.process_time() - c0


async def _timed_baseline(client: Client, n: int) -> tuple[float, float]:
    c0 = time.process_time()
    t = await _baseline_chain(client, n)
    return t, time.process_time() - c0


async def row2_stdio_sequential(reps: int, n: int = 40) -> list[Row]:
    """``n`` sequential calls over stdio: runner vs one SDK session, both on a warm server.

    The runner runs its ``n``-step chain on an ``AgentPool`` connected once, the baseline
    its loop on one ``mcp.Client`` opened once: each side has its own server process for
    the whole row, so no repetition pays a process start or a server's first calls (the
    SDK's validator build, the server's lazy set-up), which cost both sides alike and
    would only dilute the ratio. That makes a pair cheap (~2 × ``n`` calls), so each
    repetition runs ``_ROW2_PAIRS`` pairs, alternating which side goes first, and the
    figure is the median runner time over the median baseline time of all pairs. The
    notes add the median of the per-pair ratios (neighbours in time share the machine's
    load) and this process's CPU time per call on each side: the server does the same
    work for both (the same requests), so the difference is the runner's own cost in
    CPU, which the load moves far less than wall time.
    """
    params = StdioServerParameters(command=sys.executable, args=[NOOP_SCRIPT])
    pool = AgentPool()
    runner_t: list[float] = []
    base_t: list[float] = []
    runner_cpu: list[float] = []
    base_cpu: list[float] = []
    ratios: list[float] = []
    try:
        errors = await pool.open([stdio_agent()], base_dir=str(ROOT))
        if errors.get(AGENT_ID) is not None:
            raise RuntimeError(f"row 2: the stdio agent did not start: {errors[AGENT_ID]}")
        async with Client(params) as client:
            await client.list_tools()
            seq = 0
            for rep in range(-1, reps):  # rep -1: warm-up (both sessions' first calls), not counted
                line = []
                for _ in range(1 if rep < 0 else _ROW2_PAIRS):
                    seq += 1
                    wf = chain_workflow(n, stdio_agent(), prefix=f"q{seq}_")
                    if seq % 2:  # alternate which side goes first, so a drift in load favours neither
                        r, rc = await _timed_runner(wf, pool)
                        b, bc = await _timed_baseline(client, n)
                    else:
                        b, bc = await _timed_baseline(client, n)
                        r, rc = await _timed_runner(wf, pool)
                    if rep >= 0:
                        runner_t.append(r)
                        base_t.append(b)
                        runner_cpu.append(rc)
                        base_cpu.append(bc)
                        ratios.append(r / b)
                        line.append(f"{b * 1e3:.0f}/{r * 1e3:.0f}")
                if rep >= 0:
                    log(f"  row 2 rep {rep + 1}/{reps}: baseline/runner ms " + ", ".join(line))
    finally:
        await pool.close()
    ratio = median(runner_t) / median(base_t)
    rcpu, bcpu = median(runner_cpu) / n * 1e6, median(base_cpu) / n * 1e6
    return [Row(
        "2", f"{n} sequential tool calls over stdio (templated chain) vs hand-written loop on one session",
        f"{ratio:.3f}×", "≤ 1.1×", ratio <= 1.1,
        f"runner {median(runner_t) * 1e3:.1f} ms (spread {spread([x * 1e3 for x in runner_t])}), "
        f"baseline {median(base_t) * 1e3:.1f} ms (spread {spread([x * 1e3 for x in base_t])}); "
        f"medians of {len(runner_t)} pairs ({reps} × {_ROW2_PAIRS}), warm servers; median per-pair ratio "
        f"{median(ratios):.3f}×, fastest runner / fastest baseline {min(runner_t) / min(base_t):.3f}×; "
        f"this process's CPU per call: runner {rcpu:.0f} µs, SDK loop {bcpu:.0f} µs "
        f"(+{rcpu - bcpu:.0f} µs)",
    )]


async def row3_stdio_parallel(reps: int, n: int = 200, ms: float = 50.0, concurrency: int = 50) -> list[Row]:
    """``n`` parallel ``ms``-millisecond calls over one stdio session, ``concurrency`` at a time."""
    runner_t, base_t = await _stdio_pair(
        reps, lambda rep: parallel_workflow(n, stdio_agent(), ms, concurrency),
        lambda c: _baseline_parallel(c, n, ms, concurrency), "row 3")
    ratio = median(runner_t) / median(base_t)
    return [Row(
        "3", f"{n} parallel {ms:g} ms tool calls over one stdio session, concurrency {concurrency}, "
        "vs asyncio.gather + Semaphore",
        f"{ratio:.3f}×", "≤ 1.15×", ratio <= 1.15,
        f"runner {median(runner_t) * 1e3:.0f} ms (spread {spread([x * 1e3 for x in runner_t])}), "
        f"baseline {median(base_t) * 1e3:.0f} ms (spread {spread([x * 1e3 for x in base_t])}); medians of {reps}",
    )]


# --------------------------------------------------------------------------- row 0


async def row0_calibration(n: int = 2000) -> list[Row]:
    """How fast the MCP SDK itself is on this machine right now, against MCP-SDK-NOTES.

    The budgets of SPEC §7 were set from the SDK costs in MCP-SDK-NOTES "Results"
    (``MCPServer.call_tool()`` 15 µs, in-memory ``Client(server)`` 123 µs a call, both
    medians on an idle machine). When these come out several times slower, the machine is
    loaded or slower, and every wall-time figure below is inflated by about as much.
    """
    from bench.agents.noop_agent import server

    direct: list[float] = []
    client_t: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            await server.call_tool("echo", {"x": "a"})
        direct.append((time.perf_counter() - t0) / n)
        async with Client(server) as client:
            await client.list_tools()
            client_t.append(await _baseline_chain(client, n // 2) / (n // 2))
    d, c = median(direct) * 1e6, median(client_t) * 1e6
    return [
        Row("0", "calibration: `MCPServer.call_tool()` (no client, no transport), per call", f"{d:.0f} µs",
            "(notes: 15 µs)", None, f"×{d / 15:.1f} the notes' figure; median of 3 × {n} calls"),
        Row("0", "calibration: in-memory `mcp.Client(server).call_tool()`, per sequential call", f"{c:.0f} µs",
            "(notes: 123 µs)", None, f"×{c / 123:.1f} the notes' figure; median of 3 × {n // 2} calls"),
    ]
