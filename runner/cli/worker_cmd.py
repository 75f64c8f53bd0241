"""``runner worker`` (execute runs from the store until stopped) and ``runner workers list``."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from typing import Any

import click

from runner.cli.app import App, common_options, pass_app
from runner.errors import InputInvalid

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")  # as `runs_on` in workflow.schema.json


def parse_labels(text: str) -> list[str]:
    """``--labels a,b``: comma-separated labels, each as ``runs_on`` spells them."""
    labels = [part.strip() for part in text.split(",") if part.strip()]
    for label in labels:
        if not _LABEL.match(label):
            raise InputInvalid(
                f"--labels: {label!r} is not a label (up to 63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit)"
            )
    return sorted(set(labels))


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=4, show_default=True,
              help="Runs this worker executes at once; it claims more only while it has room.")
@click.option("--labels", default="", metavar="A,B",
              help="This worker's labels: it claims runs whose workflow's `runs_on` labels are all among them.")
@click.option("--poll-interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True,
              help="Seconds between looks at the store when nothing woke the worker (PostgreSQL notifies it).")
@click.option("--secrets", "secrets_file", type=click.Path(dir_okay=False), help="YAML mapping of secrets for its runs.")
@common_options
@pass_app
def worker(app: App, concurrency: int, labels: str, poll_interval: float, secrets_file: str | None) -> int:
    """Execute queued runs from the store until stopped (SIGTERM: exit 0; Ctrl-C: exit 130).

    Any number of workers, on any machines, may share one PostgreSQL store (or several on
    one machine a SQLite file). A dead worker's runs are taken over by the others once
    their lease expires; a stopped one hands its runs back, resumable, at once.
    """
    from runner.api import load_secrets, open_store
    from runner.service import RunService
    from runner.service.executor import RunExecutor
    from runner.store.leases import lease_ttl

    wanted = parse_labels(labels)
    lease_ttl()  # a bad RUNNER_LEASE_TTL is exit 2 now, not in the first claim
    registry = app.registry()
    secrets = load_secrets(secrets_file)
    store = open_store(app.store)
    try:
        if not store.shared:
            raise InputInvalid(
                f"--store: a worker executes runs other processes queue; {store.url} is private to one process "
                "(use a SQLite file or PostgreSQL)"
            )

        def note(text: str) -> None:
            if not app.quiet:
                click.echo(f"runner worker: {text}", err=True)

        def make_service() -> RunService:
            return RunService(store, registry=registry, secrets=secrets)

        executor = RunExecutor(store, make_service, poll_s=poll_interval, max_runs=concurrency, labels=wanted,
                               on_note=note)
        got = asyncio.run(_serve(executor, store.url, note))
    finally:
        store.close()
    return 130 if got == signal.SIGINT else 0


async def _serve(executor: Any, url: str, note: Any) -> int:
    """Run the executor until SIGTERM or SIGINT; hand back what it holds; the signal's number."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    got: list[int] = []

    def on_signal(sig: int) -> None:
        if not got:
            got.append(sig)
            note(f"{signal.Signals(sig).name}: no more claims; handing back {len(executor.tasks)} run(s) in flight")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        executor.start()
        shown = ",".join(executor.labels) or "-"
        note(f"{executor.worker_id} executing runs of {url} (concurrency {executor.max_runs}, labels {shown})")
        await stop.wait()
    finally:
        await executor.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    note(f"stopped after claiming {executor.claimed} run(s)")
    return got[0] if got else 0


@click.group()
def workers() -> None:
    """Workers that execute runs from the store."""


@workers.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def list_workers(app: App, limit: int, output: str) -> int:
    """List workers, newest first: host, pid, labels, heartbeat age, runs held, state."""
    from runner.api import open_store
    from runner.model.clock import duration_ms, now_iso

    store = open_store(app.store, read_only=True)
    try:
        rows = store.list_workers(limit=limit)
    finally:
        store.close()
    now = now_iso()
    out: list[dict[str, Any]] = []
    for w in rows:
        age_ms = duration_ms(w.heartbeat_at, now)
        age = None if age_ms is None else round(max(age_ms, 0.0) / 1000, 3)
        state = "stopped" if w.stopped_at else ("stale" if age is None or age > w.ttl_s else "running")
        out.append({
            "id": w.worker_id, "host": w.host, "pid": w.pid, "labels": w.labels, "concurrency": w.concurrency,
            "state": state, "runs_held": w.runs_held,
            "heartbeat_at": w.heartbeat_at, "heartbeat_age_s": age, "started_at": w.started_at,
            "stopped_at": w.stopped_at,
        })
    if output == "json":
        click.echo(json.dumps(out, indent=2))
        return 0
    if not out:
        click.echo("no workers", err=True)
        return 0
    click.echo(f"{'WORKER':<44} {'HOST':<16} {'PID':>7} {'STATE':<8} {'RUNS':>4} {'HEARTBEAT':>10}  LABELS")
    for row in out:
        beat = "-" if row["heartbeat_age_s"] is None else f"{row['heartbeat_age_s']:.1f}s ago"
        click.echo(
            f"{row['id'][:44]:<44} {row['host'][:16]:<16} {row['pid']:>7} {row['state']:<8} {row['runs_held']:>4} "
            f"{beat:>10}  {','.join(row['labels']) or '-'}"
        )
    return 0
