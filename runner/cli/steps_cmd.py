"""``runner cancel`` and ``runner steps list|complete|fail``: acting on a run from any process.

Each writes into the store; the process executing the run reads it from the run's log
(within about a second) — so these work from another terminal, a CI step or a script,
on SQLite (one machine) and PostgreSQL (any machine).
"""

from __future__ import annotations

import json
from typing import Any

import click

from runner.cli.app import App, common_options, pass_app
from runner.errors import InputInvalid


def _service(app: App, read_only: bool = False) -> Any:
    from runner.api import load_secrets, open_store
    from runner.service import RunService

    # RUNNER_SECRET_* of this process: a report that echoes a secret is stored masked.
    return RunService(open_store(app.store, read_only=read_only), registry=app.registry(), secrets=load_secrets())


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


@click.command()
@click.argument("run_id")
@common_options
@pass_app
def cancel(app: App, run_id: str) -> int:
    """Cancel a run: a queued run ends at once; a running one is stopped by its process.

    The executing process sees the request within about a second, cancels the calls in
    flight, runs the `finally` steps and ends the run `cancelled` (its exit code is 4).
    """
    service = _service(app)
    try:
        run = service.find_run(run_id)
        verdict = service.cancel(run.run_id)
    finally:
        service.store.close()
    messages = {
        "cancelled": f"run {run.run_id} cancelled (it was {run.status}; nothing was executing it)",
        "requested": f"cancel of run {run.run_id} requested; the process executing it stops it within about 1 s",
        "already": f"run {run.run_id} was already cancelled",
    }
    click.echo(messages[verdict], err=True)
    return 0


@click.group()
@common_options
def steps() -> None:
    """Pull steps: what waits for an agent, and the agent's report on it."""


@steps.command("list")
@click.option("--agent", "agent_id", metavar="A", help="Only steps assigned to agent A.")
@click.option("--run", "run_id", metavar="ID", help="Only steps of run ID.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def list_steps(app: App, agent_id: str | None, run_id: str | None, output: str) -> int:
    """List the pull steps waiting for a report, oldest first."""
    service = _service(app, read_only=True)
    try:
        found = service.assigned_steps(agent_id=agent_id, run_id=run_id)
    finally:
        service.store.close()
    rows = [
        {
            "run_id": a.run_id,
            "workflow": a.workflow_name,
            "step_id": a.step_id,
            "index": a.index,
            "agent_id": a.agent_id,
            "attempt": a.attempt,
            "assigned_at": a.assigned_at,
            "deadline": a.deadline,
            "arguments": a.arguments if a.arguments is not None else {},
        }
        for a in found
    ]
    if output == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        click.echo("no steps waiting", err=True)
        return 0
    click.echo(f"{'RUN ID':<26} {'STEP':<20} {'AGENT':<16} {'ATT':>3} {'DEADLINE':<27} ARGUMENTS")
    for r in rows:
        step = r["step_id"] + (f"[{r['index']}]" if r["index"] is not None else "")
        args = json.dumps(r["arguments"], default=str)
        if len(args) > 60:
            args = args[:57] + "..."
        click.echo(
            f"{r['run_id']:<26} {step[:20]:<20} {(r['agent_id'] or '-')[:16]:<16} {r['attempt']:>3} "
            f"{r['deadline'] or '-':<27} {args}"
        )
    return 0


def _report_options(f: Any) -> Any:
    f = click.option("--index", type=click.IntRange(0), default=None, help="The for_each item reported on.")(f)
    f = click.option("--agent", "agent_id", metavar="A", required=True, help="The agent the step is assigned to.")(f)
    f = click.argument("step_id")(f)
    f = click.argument("run_id")(f)
    return f


def _report(app: App, run_id: str, step_id: str, agent_id: str, index: int | None, **body: Any) -> int:
    service = _service(app)
    try:
        verdict = service.report(run_id, step_id, agent_id, index=index, **body)
    finally:
        service.store.close()
    what = "failure" if body.get("error") is not None else "completion"
    if verdict == "duplicate":
        click.echo(f"step '{step_id}': this {what} was already reported; nothing changed", err=True)
    else:
        click.echo(f"step '{step_id}': {what} reported", err=True)
    return 0


@steps.command("complete")
@_report_options
@click.option("--result", metavar="JSON", help="The step's result, as JSON (default: null).")
@common_options
@pass_app
def complete(app: App, run_id: str, step_id: str, agent_id: str, index: int | None, result: str | None) -> int:
    """Report that AGENT completed pull step STEP_ID of RUN_ID."""
    value: Any = None
    if result is not None:
        try:
            value = json.loads(result, parse_constant=_no_constant)
        except ValueError as exc:
            raise InputInvalid(f"--result: not valid JSON ({exc}): {result[:80]!r}") from None
    return _report(app, run_id, step_id, agent_id, index, result=value)


@steps.command("fail")
@_report_options
@click.option("--error", "error", metavar="MSG", required=True, help="Why the step failed.")
@common_options
@pass_app
def fail(app: App, run_id: str, step_id: str, agent_id: str, index: int | None, error: str) -> int:
    """Report that AGENT failed pull step STEP_ID of RUN_ID."""
    if not error.strip():
        raise InputInvalid("--error: give a message saying why the step failed")
    return _report(app, run_id, step_id, agent_id, index, error=error)
