"""Scale-out throughput: 1,000 queued runs × 10 steps executed by 1, 2 and 4 `runner worker`s.

A script, not a test (``.venv/bin/python -m bench.workers [--runs N] [--workers 1,2,4]``).
Each round gets a fresh PostgreSQL database (``RUNNER_BENCH_PG``, default the local server
at 127.0.0.1:5432 as user postgres), queues the runs as ``runner run --detach`` does
(the same service call, in this process), starts the workers (real processes, the no-op
agent in-process, ``--concurrency 8`` each) and waits until every run has completed.

Reported per worker count:

* ``runs/s``: runs completed / wall time from the workers' start to the last run's end;
* ``queue wait p50/p99``: ``run_queued`` → ``run_started`` of the batch (dominated by the
  backlog: 1,000 runs wait for a few dozen slots);
* ``claim p50/p99``: the claim latency of an idle pool: 20 runs queued one at a time,
  0.4 s apart (the pool idle when each comes), each from ``run_queued`` to ``run_started`` (the notification, the claim
  transaction, loading the workflow; the figure a user waits for);
* ``once``: every run executed exactly once (10 ``step_completed`` each, one session).

Then the same workload on DBOS (``--dbos PYTHON``: an interpreter with ``dbos`` installed;
a workflow of 10 steps enqueued 1,000 times on a DBOS queue, executed by as many
processes), when given.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.load import load_workflow  # noqa: E402
from runner.model import events as ev  # noqa: E402
from runner.model.clock import duration_ms  # noqa: E402
from runner.service import RunService  # noqa: E402
from runner.store import open_store  # noqa: E402

ADMIN = os.environ.get("RUNNER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RUNNER = Path(sys.executable).parent / "runner"

WORKFLOW = """
name: bench-chain
inputs:
  n: {type: integer}
agents:
  - id: noop
    transport: inprocess
    module: "bench.agents.noop_agent:server"
steps:
""" + "".join(
    f"  - step_id: s{i}\n    tool_to_call: echo\n    tool_arguments: {{x: \"{{{{ inputs.n }}}}-{i}\"}}\n"
    + (f"    depends_on: [s{i - 1}]\n" if i else "")
    for i in range(10)
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def database() -> Iterator[str]:
    import psycopg

    name = "runner_bench_" + uuid.uuid4().hex[:10]
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def queue(url: str, wf_path: Path, n: int, *, spacing: float = 0.0) -> list[str]:
    store = open_store(url)
    try:
        service = RunService(store)
        wf = load_workflow(str(wf_path))
        ids = []
        for i in range(n):
            ids.append(service.start(wf, {"n": i}, queued=True)[0])
            if spacing:
                time.sleep(spacing)
        return ids
    finally:
        store.close()


def wait_done(url: str, ids: list[str], timeout: float) -> None:
    store = open_store(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = {r.run_id: r.status for r in store.list_runs(limit=len(ids) + 100)}
            left = [r for r in ids if runs.get(r) != "completed"]
            if not left:
                return
            bad = [r for r in ids if runs.get(r) in ("failed", "cancelled", "timed_out")]
            if bad:
                raise SystemExit(f"run {bad[0]} ended {runs[bad[0]]}")
            time.sleep(0.2)
        raise SystemExit(f"{len(left)} run(s) not completed within {timeout}s")
    finally:
        store.close()


def latencies(url: str, ids: list[str]) -> tuple[list[float], bool]:
    """run_queued -> run_started per run (ms), and whether each ran once (one session, 10 steps)."""
    store = open_store(url)
    try:
        out, once = [], True
        for r in ids:
            evs = store.get_events(r)
            q = next(e.ts for e in evs if e.type == ev.RUN_QUEUED)
            s = next(e.ts for e in evs if e.type == ev.RUN_STARTED)
            out.append(duration_ms(q, s) or 0.0)
            sessions = sum(1 for e in evs if e.type in (ev.RUN_STARTED, ev.RUN_RESUMED))
            once = once and sessions == 1 and sum(1 for e in evs if e.type == ev.STEP_COMPLETED) == 10
        return out, once
    finally:
        store.close()


def start_workers(url: str, k: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [
        subprocess.Popen(
            [str(RUNNER), "worker", "-q", "--store", url, "--concurrency", str(concurrency), "--poll-interval", "1"],
            env=env,
            start_new_session=True,
        )
        for _ in range(k)
    ]


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def round_for(k: int, runs: int, concurrency: int, wf_path: Path) -> dict[str, Any]:
    with database() as url:
        open_store(url).close()  # migrate before the clock starts
        t0 = time.perf_counter()
        ids = queue(url, wf_path, runs)
        queue_s = time.perf_counter() - t0
        log(f"  {k} worker(s): {runs} runs queued in {queue_s:.1f}s; executing")
        procs = start_workers(url, k, concurrency)
        try:
            t1 = time.perf_counter()
            wait_done(url, ids, timeout=1800)
            wall = time.perf_counter() - t1
            waits, once = latencies(url, ids)
            log("  idle claim latency: 20 runs queued one at a time")
            idle = queue(url, wf_path, 20, spacing=0.4)
            wait_done(url, idle, timeout=300)
            claims, once_idle = latencies(url, idle)
        finally:
            stop_workers(procs)
    return {
        "workers": k,
        "runs": runs,
        "wall_s": round(wall, 2),
        "runs_per_s": round(runs / wall, 1),
        "queue_wait_p50_ms": round(pct(waits, 0.5)),
        "queue_wait_p99_ms": round(pct(waits, 0.99)),
        "claim_p50_ms": round(pct(claims, 0.5), 1),
        "claim_p99_ms": round(pct(claims, 0.99), 1),
        "exactly_once": once and once_idle,
        "queue_s": round(queue_s, 2),
    }


def dbos_round(python: str, k: int, runs: int) -> dict[str, Any]:
    with database() as url:
        out = subprocess.run(
            [python, str(Path(__file__).with_name("dbos_peer.py")), url, str(k), str(runs)],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if out.returncode != 0:
            return {"workers": k, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--dbos", metavar="PYTHON", help="an interpreter with dbos installed: run the DBOS peer too")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    wf_path = Path("/tmp") / f"runner-bench-chain-{os.getpid()}.yaml"
    wf_path.write_text(WORKFLOW, encoding="utf-8")
    rows = []
    try:
        for k in counts:
            rows.append(round_for(k, args.runs, args.concurrency, wf_path))
            log(f"  -> {rows[-1]}")
    finally:
        wf_path.unlink(missing_ok=True)
    print(f"runner worker, {args.runs} runs x 10 steps, PostgreSQL, --concurrency {args.concurrency}\n")
    print("| workers | runs/s | wall s | queue wait p50 / p99 ms | idle claim p50 / p99 ms | exactly once |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['runs_per_s']} | {r['wall_s']} | {r['queue_wait_p50_ms']} / "
            f"{r['queue_wait_p99_ms']} | {r['claim_p50_ms']} / {r['claim_p99_ms']} | {r['exactly_once']} |"
        )
    if args.dbos:
        print("\nDBOS, the same workload (10-step workflow, 1,000 enqueued on one queue)\n")
        print("| processes | runs/s | wall s |")
        print("|---|---|---|")
        for k in counts:
            d = dbos_round(args.dbos, k, args.runs)
            log(f"  dbos -> {d}")
            print(f"| {k} | {d.get('runs_per_s', d.get('error'))} | {d.get('wall_s', '-')} |")
    return 0 if all(r["exactly_once"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
