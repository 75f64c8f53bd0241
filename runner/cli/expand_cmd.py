"""``runner expand FILE``: the workflow with every ``uses:`` inlined as ``workflow:``."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.app import App, common_options, pass_app


@click.command()
@click.argument("file", type=click.Path())
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the YAML to this file instead of stdout.",
)
@common_options
@pass_app
def expand(app: App, file: str, output: str | None) -> int:
    """Print FILE with every uses: replaced by the workflow it calls, recursively.

    The result is workflow YAML that runner validate accepts and that runs exactly as FILE
    does, from FILE's directory (or that of --output): a relative agent cwd is rewritten.
    Templates are printed as written; nothing is rendered, no secret is read. Exit 0, or 2
    with file:line:col problems.
    """
    from runner.api import load_workflow
    from runner.load.dump import expand_workflow, to_yaml

    wf = load_workflow(file, app.registry())
    home = str(Path(output).resolve().parent) if output else None
    text = f"# runner expand {Path(file).name}: every uses: inlined as workflow:\n" + to_yaml(expand_workflow(wf, home))
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
    return 0
