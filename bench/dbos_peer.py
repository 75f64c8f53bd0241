"""The DBOS side of ``bench/workers.py``: the same workload on DBOS Transact (run by an interpreter
that has ``dbos`` installed, not the runner's venv).

``python dbos_peer.py URL K N``: K worker processes (``DBOS.launch()`` each, one queue with
``worker_concurrency=8``), then N workflows of 10 steps enqueued with ``DBOSClient``;
prints one JSON line: runs/s from the first enqueue to the last completion (DBOS needs its
workers up to create its schema, so enqueueing is inside the clock here), and the
enqueue time alone. ``python dbos_peer.py worker URL ID`` is one worker process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def worker(url: str, ident: str) -> None:
    from dbos import DBOS

    DBOS(config={"name": "bench", "system_database_url": url, "executor_id": ident})

    @DBOS.step(name="echo")
    def echo(x: str) -> str:
        return x

    @DBOS.workflow(name="chain")
    def chain(n: int) -> str:
        v = ""
        for i in range(10):
            v = echo(f"{n}-{i}")
        return v

    DBOS.launch()
    DBOS.register_queue("bench", worker_concurrency=8)  # its default polling: every 1 s
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    DBOS.destroy()


def main(url: str, k: int, n: int) -> None:
    from dbos import DBOSClient

    procs = []
    for i in range(k):
        p = subprocess.Popen([sys.executable, __file__, "worker", url, f"w{i}"], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":  # one at a time: the first creates the schema
            raise SystemExit(f"DBOS worker {i} did not start")
        procs.append(p)
    try:
        client = DBOSClient(system_database_url=url)
        t0 = time.perf_counter()
        for i in range(n):
            client.enqueue({"queue_name": "bench", "workflow_name": "chain"}, i)
        enq = time.perf_counter() - t0
        while len(client.list_workflows(status="SUCCESS", load_input=False, load_output=False)) < n:
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        client.destroy()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    print(json.dumps({"workers": k, "runs": n, "wall_s": round(wall, 2), "runs_per_s": round(n / wall, 1),
                      "enqueue_s": round(enq, 2)}))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("DBOS__DISABLE_OTLP", "1")
    if sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
