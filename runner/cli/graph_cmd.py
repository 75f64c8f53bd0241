"""``runner graph FILE``: the step DAG as Mermaid or Graphviz dot.

A step that calls a workflow (``uses:`` or ``workflow:``) is one node; with ``--expand``
it is a subgraph of the callee's steps (node ids ``team/decompose``), recursively, and
the caller's edges go to the callee's entry steps and leave from its exit steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import click

from runner.cli.app import App, common_options, pass_app
from runner.model import StepSpec, Workflow


def _label(s: StepSpec, child: Workflow | None) -> str:
    if s.uses:
        what = f"uses {s.uses}"
    elif s.inline is not None:
        what = f"workflow {child.name}" if child is not None and child.name != s.step_id else "workflow"
    else:
        what = s.tool_to_call or "pull"
    extra = " (for_each)" if s.for_each is not None else ""
    return f"{s.step_id}\n{what}{extra}"


@dataclass
class _Node:
    path: str  # "team/decompose": the step ids from the outermost workflow down
    label: str
    is_finally: bool


@dataclass
class _Group:
    path: str
    label: str
    items: list[_Node | _Group]


@dataclass
class _Graph:
    """What both formats draw: nested items, and edges between leaf nodes (dashed: to ``finally``)."""

    items: list[_Node | _Group] = field(default_factory=list)
    edges: list[tuple[str, str, bool]] = field(default_factory=list)


def _layout(wf: Workflow, prefix: str, expand: bool, graph: _Graph) -> tuple[list[_Node | _Group], set[str], set[str]]:
    """Items of ``wf``'s steps, its edges added to ``graph``; and its entry and exit leaves."""
    items: list[_Node | _Group] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for s in wf.all_steps:
        path = prefix + s.step_id
        child = wf.children.get(s.step_id)
        if expand and child is not None:
            inner, ins, outs = _layout(child, path + "/", expand, graph)
            items.append(_Group(path, _label(s, child), inner))
            entry[s.step_id], exit_[s.step_id] = sorted(ins), sorted(outs)
        else:
            items.append(_Node(path, _label(s, child), s.is_finally))
            entry[s.step_id] = exit_[s.step_id] = [path]

    def link(a: str, b: str, dashed: bool) -> None:
        graph.edges += [(x, y, dashed) for x in exit_[a] for y in entry[b]]

    later: set[str] = set()  # steps something depends on (directly or as the DAG before finally)
    for s in wf.all_steps:
        for d in s.depends_on:
            if d in entry:
                link(d, s.step_id, False)
                later.add(d)
    last = [s.step_id for s in wf.steps if not any(s.step_id in o.depends_on for o in wf.steps)]
    for f in wf.finally_steps:
        if not f.depends_on:
            for sid in last:
                link(sid, f.step_id, True)
                later.add(sid)
    ins = {p for s in wf.steps if not s.depends_on for p in entry[s.step_id]}
    outs = {p for s in wf.all_steps if s.step_id not in later for p in exit_[s.step_id]}
    return items, ins, outs


def _graph(wf: Workflow, expand: bool) -> _Graph:
    graph = _Graph()
    graph.items = _layout(wf, "", expand, graph)[0]
    return graph


def to_mermaid(wf: Workflow, *, expand: bool = False) -> str:
    graph = _graph(wf, expand)
    ids: dict[str, str] = {}
    lines = ["flowchart TD"]

    def text(label: str) -> str:
        # Mermaid reads #name; as an entity and renders labels as HTML: '#' first, so the
        # codes put in here are the only ones; then what would be markup or end the string
        for ch, code in (("#", "#35;"), ("&", "#38;"), ("<", "#60;"), (">", "#62;"), ('"', "#quot;")):
            label = label.replace(ch, code)
        return label.replace("\n", "<br/>")

    def draw(items: list[_Node | _Group], indent: str) -> None:
        for it in items:
            if isinstance(it, _Group):
                gid = ids[it.path] = f"g{len(ids)}"
                lines.append(f'{indent}subgraph {gid} ["{text(it.label)}"]')
                draw(it.items, indent + "  ")
                lines.append(f"{indent}end")
            else:
                nid = ids[it.path] = f"s{len(ids)}"
                # an inner node shows its full path (team/up); a top-level one its id
                label = text(it.path + it.label[it.label.index("\n") :]) if "/" in it.path else text(it.label)
                shape = ('(["', '"])') if it.is_finally else ('["', '"]')
                lines.append(f"{indent}{nid}{shape[0]}{label}{shape[1]}")

    draw(graph.items, "  ")
    for a, b, dashed in graph.edges:
        lines.append(f"  {ids[a]} {'-.->' if dashed else '-->'} {ids[b]}")
    return "\n".join(lines)


def _q(s: str) -> str:
    """A DOT quoted string (JSON's escapes are DOT's; non-ASCII stays as it is)."""
    return json.dumps(s, ensure_ascii=False)


def to_dot(wf: Workflow, *, expand: bool = False) -> str:
    graph = _graph(wf, expand)
    lines = [f"digraph {_q(wf.name)} {{", "  rankdir=TB;", "  node [shape=box];"]

    def draw(items: list[_Node | _Group], indent: str) -> None:
        for it in items:
            if isinstance(it, _Group):
                lines.append(f"{indent}subgraph {_q('cluster_' + it.path)} {{")
                lines.append(f"{indent}  label={_q(it.label)};")
                lines.append(f"{indent}  style=rounded;")
                draw(it.items, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                style = ", style=dashed" if it.is_finally else ""
                lines.append(f"{indent}{_q(it.path)} [label={_q(it.label)}{style}];")

    draw(graph.items, "  ")
    for a, b, dashed in graph.edges:
        lines.append(f"  {_q(a)} -> {_q(b)}{' [style=dashed]' if dashed else ''};")
    lines.append("}")
    return "\n".join(lines)


@click.command()
@click.argument("file", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@click.option(
    "--expand",
    is_flag=True,
    help="Draw each step that calls a workflow (uses: or workflow:) as a subgraph of its steps, recursively.",
)
@common_options
@pass_app
def graph(app: App, file: str, fmt: str, expand: bool) -> int:
    """Draw the DAG of a workflow (exit 2 if the file is invalid)."""
    from runner.api import load_workflow

    wf = load_workflow(file, app.registry())
    click.echo(to_mermaid(wf, expand=expand) if fmt == "mermaid" else to_dot(wf, expand=expand))
    return 0
