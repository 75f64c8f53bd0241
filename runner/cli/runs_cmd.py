"""``runner runs list|show``, ``runner resume`` and ``runner retry``: history and re-runs."""

from __future__ import annotations

import json
from typing import Any

import click

from runner.cli.app import App, common_options, pass_app
from runner.cli.run_cmd import execute
from runner.errors import InputInvalid
from runner.model.clock import duration_ms


def _find_run(store: Any, run_id: str) -> Any:
    return store.find_run(run_id)


def _record_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "workflow": r.workflow_name,
        "status": r.status,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "inputs": r.inputs,
        "outputs": r.outputs,
        "error": r.error,
        "source": r.source,
        "workflow_hash": r.workflow_hash,
        "attempt": r.attempt,
        "runs_on": r.runs_on,
        "worker": r.worker,  # the worker that last claimed it (null: not executed by a worker)
    }


def _since(value: str | None) -> str | None:
    """``--since``: an ISO 8601 date/time, or a duration back from now (``90m``, ``1h``, ``2d``)."""
    if value is None:
        return None
    import datetime as dt

    from runner.model import parse_duration

    text = value.strip()
    try:
        seconds = float(text[:-1]) * 86400 if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit() else None
        if seconds is None and text and text[-1] in "smh" and text[0].isdigit():
            seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if seconds is None:
        return value  # the store checks it as ISO 8601 and names what is wrong
    try:
        moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)
    except OverflowError:
        raise InputInvalid(f"--since: {value!r} reaches back before year 1") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ordered(store: Any, run: Any) -> list[Any]:
    """The run's step rows in workflow order, as ``runner run --output json`` lists them:
    each step where its file writes it, the steps of a nested run (``team/decompose``)
    under the step that ran it, each callee's steps in its file's order.

    The order comes from the workflow text the run was started with (kept in the store);
    without it, the store's order (first appearance) with nested steps grouped the same way.
    """
    from runner.errors import WorkflowInvalid
    from runner.load.order import written_order
    from runner.model.nesting import grouped

    steps = store.get_steps(run.run_id)
    rec = store.get_workflow(run.workflow_name, run.workflow_hash) if run.workflow_hash else None
    if rec is not None:
        try:
            key = written_order(rec.source_text, run.source)
        except WorkflowInvalid:
            pass
        else:
            return sorted(steps, key=lambda s: key(s.step_id))
    by_id = {s.step_id: s for s in steps}
    return [by_id[sid] for sid in grouped(by_id)]


def _history(events: list[Any]) -> list[dict[str, Any]]:
    """Every session and every step outcome of a run, oldest first (resume and retry keep both)."""
    from runner.model import events as ev

    keep = {ev.RUN_STARTED, ev.RUN_RESUMED, ev.RUN_INTERRUPTED, *ev.RUN_TERMINAL, ev.STEP_COMPLETED, ev.STEP_FAILED}
    out = []
    for e in events:
        if e.type not in keep:
            continue
        item: dict[str, Any] = {"ts": e.ts, "type": e.type}
        for k in ("step_id", "attempt", "agent_id", "error"):
            if getattr(e, k) is not None:
                item[k] = getattr(e, k)
        if e.type == ev.STEP_COMPLETED and "result" in e.data:
            item["result"] = e.data["result"]
        if e.type in (ev.RUN_STARTED, ev.RUN_RESUMED) and e.data.get("owner"):
            item["owner"] = e.data["owner"]  # the process (a worker's id) that executed this session
        out.append(item)
    return out


@click.group()
def runs() -> None:
    """Run history from the store."""


@runs.command("list")
@click.option("--workflow", help="Only runs of this workflow name.")
@click.option(
    "--status",
    type=click.Choice(["queued", "pending", "running", "completed", "failed", "timed_out", "cancelled", "interrupted"]),
    help="Only runs with this status.",
)
@click.option(
    "--since", metavar="WHEN", help="Only runs started at or after WHEN: ISO 8601 (2026-12-01T08:00) or ago (1h, 2d)."
)
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def list_runs(app: App, workflow: str | None, status: str | None, since: str | None, limit: int, output: str) -> int:
    """List runs, newest first."""
    from runner.api import open_store

    store = open_store(app.store, read_only=True)
    try:
        rows = store.list_runs(workflow=workflow, status=status, since=_since(since), limit=limit)
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps([_record_json(r) for r in rows], indent=2, default=str))
        return 0
    if not rows:
        click.echo("no runs", err=True)
        return 0
    click.echo(f"{'RUN ID':<26} {'WORKFLOW':<24} {'STATUS':<11} {'STARTED':<27} DURATION")
    for r in rows:
        d = duration_ms(r.started_at, r.finished_at)
        why = f"  ({r.error})" if r.status == "interrupted" and r.error else ""  # e.g. handed back by worker W
        click.echo(
            f"{r.run_id:<26} {r.workflow_name[:24]:<24} {r.status:<11} {r.started_at or '-':<27} "
            f"{'-' if d is None else f'{d / 1000:.2f}s'}{why}"
        )
    return 0


@runs.command("show")
@click.argument("run_id")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def show_run(app: App, run_id: str, output: str) -> int:
    """Show one run: every step with status, attempts, agent, duration, result or error."""
    from runner.api import open_store

    store = open_store(app.store, read_only=True)
    try:
        run = _find_run(store, run_id)
        steps = _ordered(store, run)
        history = _history(store.get_events(run.run_id))
    finally:
        store.close()
    data = _record_json(run)
    data["duration_ms"] = duration_ms(run.started_at, run.finished_at)
    data["steps"] = {
        s.step_id: {
            "status": s.status,
            "attempts": s.attempts,
            "agent_id": s.agent_id,
            "duration_ms": s.duration_ms,
            "result": s.result,
            "error": s.error,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
        }
        for s in steps
    }
    data["history"] = history
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return 0
    click.echo(f"run {run.run_id}  workflow {run.workflow_name}  status {run.status}")
    click.echo(f"started {run.started_at or '-'}  finished {run.finished_at or '-'}")
    if run.error:
        click.echo(f"error: {run.error}")
    # Nested steps (`team/lead/decompose`) widen the column, up to a point.
    w = min(max([24, *(len(s.step_id) for s in steps)]), 48)
    click.echo(f"{'STEP':<{w}} {'STATUS':<11} {'ATT':>3} {'AGENT':<16} {'MS':>9}  RESULT / ERROR")
    for s in steps:
        detail = s.error if s.error else json.dumps(s.result, default=str)
        if detail and len(detail) > 60:
            detail = detail[:57] + "..."
        ms = "-" if s.duration_ms is None else f"{s.duration_ms:.1f}"
        click.echo(
            f"{s.step_id[:w]:<{w}} {s.status:<11} {s.attempts:>3} {(s.agent_id or '-')[:16]:<16} "
            f"{ms:>9}  {detail or ''}"
        )
    if run.outputs:
        click.echo("outputs: " + json.dumps(run.outputs, default=str))
    sessions = [h for h in history if h["type"] in ("run_started", "run_resumed")]
    for n, h in enumerate(sessions, 1):
        if h.get("owner"):
            click.echo(f"session {n}: {h['type']} {h['ts']} by {h['owner']}")
    if len(sessions) > 1:  # resumed or retried: show what each session did
        click.echo(f"history ({len(sessions)} sessions, attempt {run.attempt}):")
        for h in history:
            what = h.get("step_id") or ""
            detail = h.get("error") or ("" if "result" not in h else json.dumps(h["result"], default=str))
            if len(detail) > 60:
                detail = detail[:57] + "..."
            att = f" attempt {h['attempt']}" if h.get("attempt") else ""
            if h.get("owner"):
                att += f" by {h['owner']}"
            click.echo(f"  {h['ts']}  {h['type']:<15} {what}{att}  {detail}".rstrip())
    return 0


def _rerun(
    app: App,
    run_id: str,
    force: bool,
    from_step: str | None,
    output: str,
    junit: str | None,
    events: str | None,
    secrets_file: str | None,
    new_attempt: bool = False,
) -> int:
    from runner.api import load_secrets, open_store
    from runner.cli.run_cmd import check_writable
    from runner.service import RunService

    check_writable("--junit", junit)
    check_writable("--events", events)
    store = open_store(app.store)
    try:
        service = RunService(store, registry=app.registry(), secrets=load_secrets(secrets_file))
        prepared = service.prepare(run_id, from_step=from_step, new_attempt=new_attempt, force=force)
        if prepared.finished:
            run = prepared.run
            if not app.quiet:
                click.echo(
                    f"run {run.run_id} already completed; nothing to resume "
                    f"(use `runner retry {run.run_id} --from STEP` to re-run steps)",
                    err=True,
                )
            if output == "json":  # scripts parse stdout: give them the stored result
                click.echo(json.dumps(_stored_result(store, run), indent=2, default=str))
            service.release(run_id=run.run_id, lease=prepared.lease)
            store.close()
            return 0
    except BaseException:
        store.close()
        raise
    return execute(app, service, prepared, output=output, junit=junit, events=events)


def _stored_result(store: Any, run: Any) -> dict[str, Any]:
    """A finished run as ``--output json`` shows it (SPEC §4 shape), read from the store."""
    steps = _ordered(store, run)
    return {
        "run_id": run.run_id,
        "workflow": run.workflow_name,
        "status": run.status,
        "outputs": run.outputs or {},
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": duration_ms(run.started_at, run.finished_at),
        "preflight_ms": 0.0,
        "error": run.error,
        "steps": {
            s.step_id: {
                "status": s.status,
                "result": s.result,
                "error": s.error,
                "attempts": s.attempts,
                "agent_id": s.agent_id,
                "duration_ms": s.duration_ms,
            }
            for s in steps
        },
    }


def _rerun_options(f: Any) -> Any:
    f = click.option("--force", is_flag=True, help="Resume even if the workflow file changed since.")(f)
    f = click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)(f)
    f = click.option("--junit", type=click.Path(dir_okay=False))(f)
    f = click.option("--events", type=click.Path(dir_okay=False))(f)
    f = click.option("--secrets", "secrets_file", type=click.Path(dir_okay=False))(f)
    return f


@click.command()
@click.argument("run_id")
@_rerun_options
@common_options
@pass_app
def resume(
    app: App, run_id: str, force: bool, output: str, junit: str | None, events: str | None, secrets_file: str | None
) -> int:
    """Execute a queued run, or continue an interrupted or failed one: completed steps are not re-run."""
    return _rerun(app, run_id, force, None, output, junit, events, secrets_file)


@click.command()
@click.argument("run_id")
@click.option("--from", "from_step", metavar="STEP", help="Re-run STEP and all its descendants.")
@_rerun_options
@common_options
@pass_app
def retry(
    app: App,
    run_id: str,
    from_step: str | None,
    force: bool,
    output: str,
    junit: str | None,
    events: str | None,
    secrets_file: str | None,
) -> int:
    """Re-run a run from a step (default: its failed steps), as a new attempt of the same run."""
    return _rerun(app, run_id, force, from_step, output, junit, events, secrets_file, new_attempt=True)
