"""``runner expand FILE``: the workflow with every ``uses:`` inlined as ``workflow:``."""

from __future__ import annotations

import os
import tempfile
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
    help="Write the YAML to this file instead of stdout ('-' is stdout).",
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
    if output == "-":  # the usual spelling of stdout, not a file named '-'
        output = None
    home = str(Path(output).resolve().parent) if output else None
    # the name goes in a comment: a line break in it would end the comment and start YAML
    name = " ".join(Path(file).name.splitlines())
    text = f"# runner expand {name}: every uses: inlined as workflow:\n" + to_yaml(expand_workflow(wf, home))
    if output is None:
        click.echo(text, nl=False)
    else:
        _write(Path(output), text)
    return 0


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all; a path that cannot be written is exit 2.

    A regular file is replaced through a temporary file beside it, so a full disk or a
    kill mid-write never leaves half a workflow where the user expects one. A device or
    pipe (``/dev/stdout``) is written in place: replacing it would delete it.
    """
    try:
        if path.exists() and not path.is_file():
            with path.open("w", encoding="utf-8") as f:
                f.write(text)
            return
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror or exc}", param_hint="'--output'") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
