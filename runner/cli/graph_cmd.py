"""``runner graph FILE``: the step DAG as Mermaid or Graphviz dot."""

from __future__ import annotations

import json

import click

from runner.cli.app import App, common_options, pass_app
from runner.model import StepSpec, Workflow


def _label(s: StepSpec) -> str:
    what = s.tool_to_call or (f"uses {s.uses}" if s.uses else "pull")
    extra = " (for_each)" if s.for_each is not None else ""
    return f"{s.step_id}\n{what}{extra}"


def to_mermaid(wf: Workflow) -> str:
    lines = ["flowchart TD"]
    ids = {s.step_id: f"s{i}" for i, s in enumerate(wf.all_steps)}
    for s in wf.all_steps:
        label = _label(s).replace('"', "#quot;").replace("\n", "<br/>")
        shape = ('(["', '"])') if s.is_finally else ('["', '"]')
        lines.append(f"  {ids[s.step_id]}{shape[0]}{label}{shape[1]}")
    for s in wf.all_steps:
        for d in s.depends_on:
            if d in ids:
                lines.append(f"  {ids[d]} --> {ids[s.step_id]}")
    if wf.finally_steps:
        last = [s for s in wf.steps if not any(s.step_id in o.depends_on for o in wf.steps)]
        for f in wf.finally_steps:
            if not f.depends_on:
                for s in last:
                    lines.append(f"  {ids[s.step_id]} -.-> {ids[f.step_id]}")
    return "\n".join(lines)


def to_dot(wf: Workflow) -> str:
    q = json.dumps
    lines = [f"digraph {q(wf.name)} {{", "  rankdir=TB;", "  node [shape=box];"]
    for s in wf.all_steps:
        style = ", style=dashed" if s.is_finally else ""
        lines.append(f"  {q(s.step_id)} [label={q(_label(s))}{style}];")
    for s in wf.all_steps:
        for d in s.depends_on:
            lines.append(f"  {q(d)} -> {q(s.step_id)};")
    lines.append("}")
    return "\n".join(lines)


@click.command()
@click.argument("file", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@common_options
@pass_app
def graph(app: App, file: str, fmt: str) -> int:
    """Draw the DAG of a workflow (exit 2 if the file is invalid)."""
    from runner.api import load_workflow

    wf = load_workflow(file, app.registry())
    click.echo(to_mermaid(wf) if fmt == "mermaid" else to_dot(wf))
    return 0
