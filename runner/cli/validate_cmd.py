"""``runner validate PATH...``: every problem at once, most relevant first."""

from __future__ import annotations

import click

from runner.cli.app import App, common_options, pass_app


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="Output format: text lines, a JSON list, or GitHub workflow-command annotations.",
)
@click.option(
    "--deep",
    is_flag=True,
    help="Also connect to the agents: check tool names, literal arguments "
    "against inputSchema and steps.<id>.result.<field> references against outputSchema.",
)
@click.option(
    "--max-problems",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Show at most this many problems, then how many more there are (0: show all).",
)
@common_options
@pass_app
def validate(app: App, paths: tuple[str, ...], fmt: str, deep: bool, max_problems: int) -> int:
    """Validate workflow and pattern files (directories recursively). Exit 0 if valid, 2 if not."""
    from runner.load.validation import format_problems, validate_paths

    registry = app.registry()
    problems = validate_paths(list(paths), registry=registry)
    if deep and not any(p.severity == "error" for p in problems):
        from runner.engine.deep import deep_check_paths

        problems = problems + deep_check_paths(list(paths), registry=registry)
    errors = [p for p in problems if p.severity == "error"]
    out = format_problems(problems, fmt, limit=max_problems)
    if fmt == "json":
        click.echo(out)
    elif out:
        click.echo(out, err=fmt == "text")
    if not errors and fmt == "text" and not app.quiet:
        click.echo(f"ok: {len(paths)} path(s) valid", err=True)
    return 2 if errors else 0
