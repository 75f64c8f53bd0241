"""``runner`` entry point: the root group and the one place exceptions become exit codes."""

from __future__ import annotations

import sys
import traceback

import click

from runner.cli.app import App, common_options, quiet_sdk_logs
from runner.errors import RunnerError, WorkflowInvalid


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mcp-workflow-runner", prog_name="runner")
@common_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Declarative YAML workflows for multi-agent systems, dispatched as MCP tool calls."""
    ctx.ensure_object(App)


def _register() -> None:
    from runner.cli import (
        agents_cmd,
        expand_cmd,
        graph_cmd,
        run_cmd,
        runs_cmd,
        serve_cmd,
        steps_cmd,
        validate_cmd,
        worker_cmd,
    )

    cli.add_command(validate_cmd.validate)
    cli.add_command(run_cmd.run)
    cli.add_command(graph_cmd.graph)
    cli.add_command(expand_cmd.expand)
    cli.add_command(agents_cmd.agents)
    cli.add_command(runs_cmd.runs)
    cli.add_command(runs_cmd.resume)
    cli.add_command(runs_cmd.retry)
    cli.add_command(steps_cmd.cancel)
    cli.add_command(steps_cmd.steps)
    cli.add_command(serve_cmd.serve)
    cli.add_command(serve_cmd.audit)
    cli.add_command(worker_cmd.worker)
    cli.add_command(worker_cmd.workers)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to the exit codes of SPEC §4 without tracebacks."""
    app = App()
    quiet_sdk_logs()
    try:
        rv = cli.main(args=argv, prog_name="runner", standalone_mode=False, obj=app)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("runner: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except WorkflowInvalid as exc:
        for p in exc.problems:
            click.echo(p.format(), err=True)
        sys.exit(exc.exit_code)
    except RunnerError as exc:
        if app.verbose:
            traceback.print_exc()
        click.echo(f"runner: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("runner: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 70
        if app.verbose:
            traceback.print_exc()
        click.echo(f"runner: internal error: {type(exc).__name__}: {exc} (run with -v for a traceback)", err=True)
        sys.exit(70)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
