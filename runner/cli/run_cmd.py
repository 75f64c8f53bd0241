"""``runner run FILE``: run a workflow to completion; the exit code is the verdict."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from runner.cli.app import App, common_options, input_option, pass_app
from runner.errors import InputInvalid
from runner.model import RunStatus

EXIT_FOR_STATUS = {RunStatus.COMPLETED: 0, RunStatus.FAILED: 1, RunStatus.TIMED_OUT: 4, RunStatus.CANCELLED: 4}


def resume_hint(app: App, run_id: str) -> str:
    """The exact command that resumes ``run_id``, with the store it was kept in."""
    import os
    import shlex

    store = app.store
    cmd = f"runner resume {run_id}"
    if store and store != os.environ.get("RUNNER_STORE"):
        cmd += f" --store {shlex.quote(store)}"
    return cmd


def check_writable(option: str, path: str | None) -> None:
    """Refuse an output file that cannot be written *before* the run, not after it (exit 2)."""
    if not path:
        return
    import os

    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or path.endswith(os.sep):
        raise InputInvalid(f"{option}: {path} is a directory, not a file")
    if not os.path.isdir(parent):
        raise InputInvalid(f"{option}: cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InputInvalid(f"{option}: cannot write {path}: permission denied")


def emit_result(result: Any, output: str, junit: str | None, quiet: bool) -> None:
    """Print the result (text or JSON on stdout), then write the JUnit file.

    stdout first: a JUnit file that cannot be written must not swallow the run's verdict.
    """
    data = result.to_json()
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    elif not quiet:
        if data["outputs"]:
            for k, v in data["outputs"].items():
                click.echo(f"{k}: {v if isinstance(v, str) else json.dumps(v, default=str)}")
    if junit:
        from runner.cli.progress import write_junit

        try:
            write_junit(junit, data, tolerated=result.tolerated, skip_reasons=result.skip_reasons)
        except OSError as exc:
            raise InputInvalid(f"--junit: cannot write {junit}: {exc.strerror or exc}") from None


class _Terminated(Exception):
    """SIGTERM reached the run (a CI job cancelled, `kill PID`)."""


async def _drive(work: Any) -> Any:
    """Await the run; on Ctrl-C or SIGTERM the engine sees a cancellation and records it.

    SIGTERM is what CI systems send a cancelled job: it is handled like Ctrl-C (the run is
    left `interrupted` and resumable, exit 130) instead of killing the process mid-write.
    """
    import signal

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    terminated = False

    def on_term() -> None:
        nonlocal terminated
        terminated = True
        if main is not None:
            main.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_term)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        pass
    try:
        return await work
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated() from None
        raise
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


def execute(
    app: App,
    service: Any,
    prepared: Any,
    *,
    output: str,
    junit: str | None,
    events: str | None,
) -> int:
    """Shared by ``run``, ``resume`` and ``retry``: sinks, the service's engine, result, exit code."""
    from runner.cli.progress import EventsFile, Progress

    store = service.store
    sinks: list[Any] = []
    if not app.quiet:
        sinks.append(Progress(sys.stderr, verbose=app.verbose, total=len(prepared.workflow.all_steps)))
    try:
        ev_file = EventsFile(events) if events else None
    except OSError as exc:
        service.release(run_id=prepared.run.run_id, lease=prepared.lease)
        store.close()
        raise InputInvalid(f"--events: cannot write {events}: {exc.strerror or exc}") from None
    if ev_file is not None:
        sinks.append(ev_file)
    engine = service.engine(prepared, sinks=sinks)
    try:
        try:
            result = asyncio.run(_drive(service.execute(prepared, engine=engine)))
        except (KeyboardInterrupt, _Terminated):
            from runner.errors import Interrupted

            # What finished before Ctrl-C is still reported (stdout, JUnit), as for a failed run.
            partial = engine.partial_result(RunStatus.INTERRUPTED, "interrupted by the user")
            if partial is not None:
                emit_result(partial, output, junit, True)
            raise Interrupted(f"interrupted; resume with: {resume_hint(app, engine.run_id)}") from None
        except Exception as exc:
            partial = getattr(exc, "result", None)
            if partial is not None:
                emit_result(partial, output, junit, True)
            from runner.errors import StoreError

            if isinstance(exc, StoreError) and engine.run_stored and type(exc) is StoreError:
                raise StoreError(f"{exc}; once the store works again: {resume_hint(app, engine.run_id)}") from None
            raise
    finally:
        if ev_file is not None:
            ev_file.close()
        store.close()
    emit_result(result, output, junit, False)  # -q hides progress, not the result
    if app.quiet and result.status != RunStatus.COMPLETED:
        _quiet_errors(result)
    return EXIT_FOR_STATUS[result.status]


def _quiet_errors(result: Any) -> None:
    """With -q the live view is off, and with it the only account of why a run did not
    complete: the failed steps (inner ones included) and the run's verdict go to stderr."""
    for sid, step in result.to_json()["steps"].items():
        if step["status"] == "failed" and step["error"]:
            click.echo(f"FAIL  {sid} — {step['error']}", err=True)
    click.echo(f"run {result.status}: {result.error or result.status}", err=True)


@click.command()
@click.argument("file", type=click.Path())
@input_option("A workflow input (repeatable); typed by the input's schema.")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help="YAML/JSON file of inputs.")
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What to print on stdout when the run ends.",
)
@click.option("--junit", type=click.Path(dir_okay=False), help="Write a JUnit XML report (one testcase per step).")
@click.option("--events", type=click.Path(dir_okay=False), help="Write every event as a JSON line.")
@click.option(
    "--secrets",
    "secrets_file",
    type=click.Path(dir_okay=False),
    help="YAML mapping of secrets (also RUNNER_SECRET_<NAME> env vars).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Store the run as queued, print its id and exit; `runner resume ID` (or a worker) executes it.",
)
@common_options
@pass_app
def run(
    app: App,
    file: str,
    pairs: tuple[str, ...],
    inputs_file: str | None,
    output: str,
    junit: str | None,
    events: str | None,
    secrets_file: str | None,
    detach: bool,
) -> int:
    """Run a workflow to completion with live progress on stderr.

    Exit codes: 0 completed, 1 a step failed, 2 invalid input, 3 a required agent could not
    be reached, 4 timed out or cancelled, 70 internal error, 130 interrupted (resumable).
    """
    from runner.api import load_secrets, load_workflow, open_store, parse_cli_inputs
    from runner.service import RunService

    registry = app.registry()
    wf = load_workflow(file, registry)
    if wf.warnings and not app.quiet:
        from runner.model.problems import format_problems

        click.echo(format_problems(wf.warnings, "text"), err=True)
    inputs = parse_cli_inputs(wf, pairs, inputs_file)
    from runner.model.outcomes import resolve_inputs

    inputs = resolve_inputs(wf, inputs)  # bad inputs: exit 2 before anything is stored
    if not detach:
        check_writable("--junit", junit)
        check_writable("--events", events)
    store = open_store(app.store)
    try:
        service = RunService(store, registry=registry, secrets=load_secrets(secrets_file))
        run_id, lease = service.start(wf, inputs, queued=detach)
        if detach:
            if output == "json":
                click.echo(json.dumps({"run_id": run_id, "status": "queued"}))
            else:
                click.echo(run_id)
            if not app.quiet:
                click.echo(f"run {run_id} queued; execute it with: {resume_hint(app, run_id)}", err=True)
            store.close()
            return 0
        prepared = service.prepare(run_id, lease=lease, inputs=inputs, workflow=wf)
    except BaseException:
        store.close()
        raise
    return execute(app, service, prepared, output=output, junit=junit, events=events)
