"""Instructions per step under valgrind's callgrind: the noise-free figure behind row 1.

    python bench/callgrind.py                          # FakePool chain: none, memory, sqlite
    python bench/callgrind.py --store sqlite --functions 25   # + where the instructions go
    python bench/callgrind.py --mcp                    # in-process MCP server + SDK baseline

Wall time on a shared 2-core machine drifts 3–4× from hour to hour; instruction counts
do not (±0.1 % between runs). Each figure runs a child process twice under
``valgrind --tool=callgrind``, a short chain (``--small``, 200 steps) and a long one
(``--big``, 1,200 steps), and reports ``(I(big) − I(small)) / (big − small)``: start-up,
imports, store creation and agent connection cancel out, what is left is one chain step
(``{"x": "{{ steps.<prev>.result }}"}``, the row 1 workflow).

The child runs the chain as ``runner run`` does: through ``runner.service.RunService``
for a store, a bare ``Engine`` for ``none``. By default the agent is
``runner.testing.FakePool`` (the engine alone: scheduler, templates, events, store);
with ``--mcp`` it is the in-process ``MCPServer`` through the SDK, and a ``baseline``
figure (the same calls by a hand-written loop on one ``mcp.Client``) is added.

``--functions N`` prints, per store, the N C-level functions whose own cost grew the most
per step between the two runs (``callgrind_annotate``): the interpreter's eval loop,
allocation, ``sqlite3VdbeExec``... For Python-level hot spots use ``bench.py --profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `runner` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, log  # noqa: E402

STORES = ("none", "memory", "sqlite")


# --------------------------------------------------------------------------- the child


async def _child(store_key: str, n: int, mcp: bool, db: str | None) -> None:
    """One chain of ``n`` steps (``store_key`` ``baseline``: the SDK loop alone)."""
    from bench.common import AGENT_ID, chain_workflow, inprocess_agent
    from runner.engine import Engine
    from runner.model import RunStatus
    from runner.service import RunService
    from runner.store import open_store
    from runner.testing import FakeAgent, FakePool

    if store_key == "baseline":
        from mcp import Client

        from bench.agents.noop_agent import server

        async with Client(server) as client:
            await client.list_tools()
            x: Any = "seed"
            for _ in range(n):
                r = await client.call_tool("echo", {"x": x})
                x = r.structured_content["result"]  # type: ignore[index]
        return

    async def echo(x: Any) -> Any:
        return x

    if mcp:
        agent_spec, pool = inprocess_agent(), None
    else:
        fake = FakeAgent(AGENT_ID, {"echo": echo})
        agent_spec, pool = fake.spec, FakePool([fake])
    wf = chain_workflow(n, agent_spec, prefix="c")
    if store_key == "none":
        res = await Engine(wf, base_dir=str(ROOT), pool=pool).run({})
    else:
        url = "memory://" if store_key == "memory" else f"sqlite:///{db}"
        store = open_store(url)
        try:
            res = await RunService(store, pool=pool, base_dir=str(ROOT)).run(wf, {})
        finally:
            store.close()
    if res.status != RunStatus.COMPLETED:
        raise SystemExit(f"chain ended {res.status}: {res.error}")


# --------------------------------------------------------------------------- the parent


def _callgrind(store_key: str, n: int, mcp: bool, workdir: Path) -> tuple[int, Path]:
    """Run one child under callgrind; its total instruction count and its output file."""
    out = workdir / f"callgrind.{store_key}.{n}.out"
    db = workdir / f"{store_key}.{n}.db"
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, "-m", "bench.callgrind", "--child", store_key, "--steps", str(n), "--db", str(db),
    ]
    if mcp:
        cmd.append("--mcp")
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind child {store_key} {n} failed:\n{proc.stderr[-2000:]}")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(errors="replace"), re.M)
    if m is None:
        raise RuntimeError(f"no totals in {out}")
    return int(m.group(1)), out


_FN_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.+?)\s*$")


def _self_costs(out: Path) -> dict[str, int]:
    """Own instructions per function, from ``callgrind_annotate``."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True, check=True
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        m = _FN_LINE.match(line)
        if m and ":" in m.group(2) and not m.group(2).startswith("PROGRAM TOTALS"):
            where, _, fn = m.group(2).split(" [")[0].rpartition(":")
            name = f"{where.rsplit('/', 1)[-1]}:{fn}"  # file:function, without the build path and library
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def measure(keys: list[str], small: int, big: int, mcp: bool, functions: int) -> dict[str, int]:
    """Instructions per step for each store key (and ``baseline`` with ``mcp``)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    per_step: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="runner-callgrind-") as tmp:
        work = Path(tmp)
        for key in keys:
            n_small, out_small = _callgrind(key, small, mcp, work)
            n_big, out_big = _callgrind(key, big, mcp, work)
            per_step[key] = round((n_big - n_small) / (big - small))
            log(f"  {key}: {n_small:,} ({small} steps), {n_big:,} ({big} steps) -> {per_step[key]:,} a step")
            if functions:
                a, b = _self_costs(out_small), _self_costs(out_big)
                grown = sorted(((b.get(f, 0) - a.get(f, 0), f) for f in b.keys() | a.keys()), reverse=True)
                print(f"\n{key}: own instructions per step, by function (top {functions})")
                for diff, fn in grown[:functions]:
                    print(f"{diff / (big - small):>10,.0f}  {fn}")
    return per_step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", action="append", choices=STORES, help="store(s) to measure (default: all)")
    p.add_argument("--small", type=int, default=200, help="steps of the short chain")
    p.add_argument("--big", type=int, default=1200, help="steps of the long chain")
    p.add_argument("--mcp", action="store_true", help="the in-process MCP server instead of FakePool (+ SDK baseline)")
    p.add_argument("--functions", type=int, default=0, metavar="N", help="also show the N C functions that grew most")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.child, args.steps, args.mcp, args.db))
        return 0
    if args.big <= args.small:
        p.error("--big must be larger than --small")
    keys = list(args.store or STORES) + (["baseline"] if args.mcp else [])
    per_step = measure(keys, args.small, args.big, args.mcp, args.functions)
    agent = "in-process MCP" if args.mcp else "runner.testing.FakePool"
    print(f"\n| instructions per step ({agent}, {args.big}−{args.small} steps) | count |")
    print("|---|---:|")
    for key, n in per_step.items():
        print(f"| {key} | {n:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
