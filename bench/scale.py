"""Row 4: 10,000 and 100,000 steps — plan time, run time and peak RSS.

Each measurement runs in a fresh interpreter (``python -m bench.scale SHAPE N``) so that
its peak RSS is that workflow's and nothing from an earlier row stays in memory.
The child imports everything and runs a 10-step warm-up first, then reports as one JSON
line:

* ``plan_s``: building the ``Scheduler`` from the workflow's steps (what the engine does
  before its first dispatch), plus, separately, ``layers_s``: ``dag.topo_layers`` over the
  dependency map (what ``runner graph`` and validation walk);
* ``run_s``: ``duration_ms - preflight_ms`` of the run (planning, the DAG loop, every MCP
  call to the in-process no-op agent and every event; not connecting the agent);
* ``rss_mb``: peak RSS of the whole process (``VmHWM``, see ``_rss_mb``); ``rss_base_mb``
  the peak before the workflow was built (interpreter, runner, MCP SDK, warm-up);
* ``sdk_s`` (10,000 steps and less): the same tool calls made by hand over one session at
  the same concurrency, after the run (so it does not raise the RSS figure), to show how
  much of ``run_s`` is the MCP SDK itself.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, Row, log

PLAN_BUDGET_S = 1.0
RUN_BUDGET_S = 5.0
RSS_BUDGET_MB = 300.0
SCALE_BUDGET = 12.0


def _rss_mb() -> float:
    """Peak RSS of this process in MB: ``VmHWM``, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` survives ``exec``: a child spawned by a 300 MB parent reports at
    least 300 MB however little it uses. ``VmHWM`` (/proc/self/status) is the high-water
    mark of this process's own address space, so it is the figure to compare with a budget.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(shape: str, n: int) -> dict[str, Any]:
    """Build, plan and run one big workflow in this process; the figures as a dict."""
    from bench.common import chain_workflow, foreach_workflow, inprocess_agent, layered_workflow
    from runner.core.dag import topo_layers
    from runner.core.scheduler import Scheduler
    from runner.engine import Engine
    from runner.model import RunStatus

    async def run(wf: Any) -> Any:
        return await Engine(wf, base_dir=str(ROOT)).run({})

    asyncio.run(run(chain_workflow(10, inprocess_agent(), prefix="warm")))
    rss_base = _rss_mb()
    t0 = time.perf_counter()
    if shape == "layered":
        wf = layered_workflow(n // 100, 100, inprocess_agent())
    elif shape == "foreach":
        wf = foreach_workflow(n, inprocess_agent())
    else:
        raise SystemExit(f"unknown shape {shape!r}")
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Scheduler(wf.steps, concurrency=wf.concurrency, finally_steps=wf.finally_steps)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    topo_layers({s.step_id: s.depends_on for s in wf.steps})
    layers_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = asyncio.run(run(wf))
    wall_s = time.perf_counter() - t0
    if res.status != RunStatus.COMPLETED:
        raise SystemExit(f"run ended {res.status}: {res.error}")
    rss = _rss_mb()
    sdk_s = asyncio.run(_sdk_floor(shape, n, wf.concurrency)) if n <= 10_000 else None
    return {
        "shape": shape, "n": n, "build_s": build_s, "plan_s": plan_s, "layers_s": layers_s,
        "run_s": (res.duration_ms - res.preflight_ms) / 1000.0, "wall_s": wall_s,
        "rss_mb": rss, "rss_base_mb": rss_base, "concurrency": wf.concurrency, "sdk_s": sdk_s,
    }


async def _sdk_floor(shape: str, n: int, concurrency: int) -> float:
    """The same ``n`` tool calls made by hand: ``asyncio.gather`` under a semaphore, one session.

    It ignores the DAG's ordering (a layer of 100 never holds back the next), so it is a
    floor: what the MCP SDK alone costs for these calls at this concurrency.
    """
    from mcp import Client

    from bench.agents.noop_agent import server

    sem = asyncio.Semaphore(concurrency)
    async with Client(server) as client:
        await client.list_tools()

        async def one(i: int) -> None:
            async with sem:
                if shape == "foreach":
                    await client.call_tool("item", {"x": i})
                else:
                    await client.call_tool("noop", {})

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0


def measure(shape: str, n: int, timeout: float) -> dict[str, Any] | None:
    """Run ``child`` in a fresh interpreter; None if it did not finish within ``timeout``."""
    cmd = [sys.executable, "-m", "bench.scale", shape, str(n)]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fig(r: dict[str, Any]) -> str:
    return (f"run {r['run_s']:.2f} s, plan {r['plan_s'] * 1e3:.0f} ms, topo_layers {r['layers_s'] * 1e3:.0f} ms, "
            f"peak RSS {r['rss_mb']:.0f} MB (before the workflow: {r['rss_base_mb']:.0f} MB)")


def row4_scale(big: tuple[str, ...] = ("layered",), timeout_10k: float = 120.0) -> list[Row]:
    """Plan, run and RSS at 10,000 steps (both shapes); 100,000 steps of the shapes in ``big``.

    A 100,000-step run is killed once it is clearly over budget (12× the 10,000-step run,
    plus 20 s for imports, building the workflow and planning), and reported as such.
    """
    rows: list[Row] = []
    ten: dict[str, dict[str, Any] | None] = {}
    for shape, label in (("layered", "DAG 100 layers × 100 (2.5 deps/step)"),
                         ("foreach", "for_each over 10,000 items")):
        r = measure(shape, 10_000, timeout_10k)
        ten[shape] = r
        what = f"10,000 steps, {label}, in-process no-op agent"
        if r is None:
            log(f"  row 4 {shape} 10k: did not finish within {timeout_10k:.0f} s")
            rows.append(Row("4", f"{what}: run", f"> {timeout_10k:.0f} s (killed)", f"≤ {RUN_BUDGET_S:g} s", False))
            continue
        log(f"  row 4 {shape} 10k: {_fig(r)}")
        if shape == "layered":
            rows.append(Row("4", f"{what}: plan (Scheduler build)", f"{r['plan_s'] * 1e3:.0f} ms",
                            f"≤ {PLAN_BUDGET_S * 1e3:.0f} ms", r["plan_s"] <= PLAN_BUDGET_S,
                            f"dag.topo_layers {r['layers_s'] * 1e3:.0f} ms; building the model {r['build_s'] * 1e3:.0f} ms"))
        rows.append(Row("4", f"{what}: run", f"{r['run_s']:.2f} s", f"≤ {RUN_BUDGET_S:g} s",
                        r["run_s"] <= RUN_BUDGET_S,
                        f"concurrency {r['concurrency']}; {r['run_s'] / r['n'] * 1e6:.0f} µs/step incl. the MCP call; "
                        f"the same {r['n']:,} calls by hand (gather + semaphore {r['concurrency']}, one session): "
                        f"{r['sdk_s']:.2f} s; one run in a fresh process"))
        rows.append(Row("4", f"{what}: peak RSS", f"{r['rss_mb']:.0f} MB", f"≤ {RSS_BUDGET_MB:.0f} MB",
                        r["rss_mb"] <= RSS_BUDGET_MB,
                        f"VmHWM of the process; {r['rss_base_mb']:.0f} MB before building the workflow"))
    for shape, label in (("layered", "DAG 1,000 layers × 100"), ("foreach", "for_each over 100,000 items")):
        base = ten.get(shape)
        if shape not in big or base is None:
            continue
        limit = base["run_s"] * SCALE_BUDGET
        timeout = limit + 20.0  # past 12× the budget is failed; 20 s covers imports, build and plan
        r = measure(shape, 100_000, timeout)
        what = f"100,000 steps, {label}: run time vs 10,000 steps"
        if r is None:
            log(f"  row 4 {shape} 100k: did not finish within {timeout:.0f} s")
            rows.append(Row("4", what, f"> {timeout / base['run_s']:.0f}× (killed after {timeout:.0f} s)",
                            f"≤ {SCALE_BUDGET:g}×", False, f"10,000 steps: {base['run_s']:.2f} s"))
            continue
        log(f"  row 4 {shape} 100k: {_fig(r)}")
        ratio = r["run_s"] / base["run_s"]
        rows.append(Row("4", what, f"{ratio:.1f}×", f"≤ {SCALE_BUDGET:g}×", ratio <= SCALE_BUDGET,
                        f"{r['run_s']:.1f} s vs {base['run_s']:.2f} s; plan {r['plan_s'] * 1e3:.0f} ms; "
                        f"peak RSS {r['rss_mb']:.0f} MB"))
    return rows


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
