"""The SPEC §7 performance budgets, measured: ``python bench/bench.py [--quick] [--only ROW]``.

A script, not a test: it prints progress on stderr and, at the end, a Markdown table of
every figure next to its budget on stdout. Rows (the numbering of the benchmark brief):

0. calibration: the MCP SDK's own per-call cost here, against MCP-SDK-NOTES (no budget);
1. runner overhead per step on a 1,000-step templated chain, in-process agent, per store;
2. 40 sequential tool calls over stdio vs a hand-written loop on one SDK session;
3. 200 parallel 50 ms calls over one stdio session at concurrency 50 vs gather+semaphore;
4. 10,000 steps (layered DAG, for_each): plan, run, peak RSS; 100,000 steps vs 10,000;
5. ``runner validate`` wall time (ordinary, 1,000-step, 10,000-step file); no MCP import.

``--profile chain|layered|foreach [--fake]`` instead runs one workflow under cProfile and
prints the functions that cost the most (own time), to find hot spots in the engine;
``--fake`` swaps the MCP server for ``runner.testing.FakeAgent`` to leave the SDK out.

Timings use ``time.perf_counter`` (the runner's own ``duration_ms``/``preflight_ms`` where
the connection must be excluded) and medians of repetitions; the machine has 2 cores that
other processes share, so figures move with the load: re-run a row that looks off with
``--only``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `runner` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Row, log  # noqa: E402

ROWS = ("0", "1", "2", "3", "4", "5")


def _table(rows: list[Row]) -> str:
    lines = ["| # | what | measured | budget | verdict | notes |", "|---|---|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r.row} | {r.what} | {r.value} | {r.budget} | {r.verdict} | {r.note} |")
    return "\n".join(lines)


def _header(args: argparse.Namespace, reps: int, load: str) -> str:
    return (
        f"runner benchmark (SPEC §7) — {time.strftime('%Y-%m-%d %H:%M:%S')}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load} at the start; "
        f"{'quick' if args.quick else 'full'} mode, {reps} repetitions per timed row (row 2: {2 * reps}; "
        f"validating the 10,000-step file: {max(2, reps - 2)}), row 4 one run per figure in a fresh process.\n\n"
        "Figures vary with the machine's load (2 cores shared with other work): "
        "re-run a row that looks off with `--only ROW`."
    )


def run_rows(which: list[str], big: tuple[str, ...], reps: int, with_pg: bool) -> list[Row]:
    from bench import engine_rows, scale, validate_rows

    rows: list[Row] = []
    for row in which:
        t0 = time.perf_counter()
        log(f"row {row} …")
        try:
            if row == "0":
                rows += asyncio.run(engine_rows.row0_calibration())
            elif row == "1":
                rows += asyncio.run(engine_rows.row1_overhead(reps, with_pg=with_pg))
            elif row == "2":
                rows += asyncio.run(engine_rows.row2_stdio_sequential(2 * reps))
            elif row == "3":
                rows += asyncio.run(engine_rows.row3_stdio_parallel(reps))
            elif row == "4":
                rows += scale.row4_scale(big)
            elif row == "5":
                rows += validate_rows.row5_validate(reps)
        except Exception as exc:  # one broken row must not hide the others' figures
            log(f"row {row} failed: {type(exc).__name__}: {exc}")
            rows.append(Row(row, f"row {row}", "error", "", False, f"{type(exc).__name__}: {exc}"[:300]))
        log(f"row {row} done in {time.perf_counter() - t0:.1f} s")
    return rows


def profile(which: str, top: int, fake: bool) -> None:
    """One run of a benchmark workflow under cProfile; the top functions by own time.

    ``fake``: the agent is a ``runner.testing.FakeAgent`` (no MCP SDK in the profile).
    """
    import cProfile
    import pstats
    from typing import Any

    from bench.common import AGENT_ID, chain_workflow, foreach_workflow, inprocess_agent, layered_workflow
    from runner.engine import Engine
    from runner.testing import FakeAgent, FakePool

    async def echo(x: Any) -> Any:
        return x

    fake_agent = FakeAgent(AGENT_ID, {"echo": echo, "noop": lambda: 0, "item": echo})
    agent = fake_agent.spec if fake else inprocess_agent()
    build = {
        "chain": lambda: chain_workflow(1000, agent, prefix="p"),
        "layered": lambda: layered_workflow(100, 100, agent),
        "foreach": lambda: foreach_workflow(10_000, agent),
    }[which]

    def engine(wf: Any) -> Engine:
        return Engine(wf, base_dir=str(ROOT), pool=FakePool([fake_agent]) if fake else None)

    async def main() -> None:
        await engine(chain_workflow(20, agent, prefix="warm")).run({})
        wf = build()
        prof = cProfile.Profile()
        prof.enable()
        res = await engine(wf).run({})
        prof.disable()
        log(f"{which}: {res.status}, {res.duration_ms - res.preflight_ms:.0f} ms without preflight (under cProfile)")
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(top)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions; skip the 100,000-step runs")
    p.add_argument("--big", choices=("layered", "foreach", "both", "none"), default="layered",
                   help="row 4's 100,000-step run(s) in full mode (default: the layered DAG)")
    p.add_argument("--only", action="append", choices=ROWS, metavar="ROW",
                   help="run only this row (0–5); repeatable")
    p.add_argument("--reps", type=int, default=None, help="repetitions per timed row (default 5, quick 3)")
    p.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL store in row 1")
    p.add_argument("--profile", choices=("chain", "layered", "foreach"),
                   help="profile one workflow run with cProfile instead of benchmarking")
    p.add_argument("--fake", action="store_true",
                   help="with --profile: a runner.testing.FakeAgent instead of the in-process MCP server")
    p.add_argument("--top", type=int, default=35, help="functions shown by --profile")
    args = p.parse_args(argv)
    if args.profile:
        profile(args.profile, args.top, args.fake)
        return 0
    reps = args.reps or (3 if args.quick else 5)
    which = args.only or list(ROWS)
    t0 = time.perf_counter()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    big = () if args.quick or args.big == "none" else ("layered", "foreach") if args.big == "both" else (args.big,)
    rows = run_rows(which, big, reps, with_pg=not args.no_pg)
    print(_header(args, reps, load))
    print()
    print(_table(rows))
    print()
    failed = [r for r in rows if r.ok is False]
    print(f"{len(rows)} figures, {len(failed)} over budget; total bench time {time.perf_counter() - t0:.0f} s.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
