"""Loading: YAML with positions → validated plain values → the frozen workflow model.

``yaml`` reads strictly and keeps every node's position; ``schema`` and
``schema_problems`` check against runner's JSON Schemas; ``checks`` (with
``checks_templates`` and ``checks_inputs``) and ``validation`` find every other problem
(DAG, references, templates, calls and inputs); ``build`` makes the model;
``patterns`` resolves ``uses:``; ``instantiate`` applies inputs to agent settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from runner.errors import Problem, WorkflowInvalid
from runner.load.build import build_agent, build_inline, build_workflow
from runner.load.validation import analyze, analyze_agents
from runner.load.yaml import PathT, SourceMap, gc_paused, json_path, load_yaml, read_text
from runner.model import AgentSpec, Workflow
from runner.model.ids import workflow_hash

__all__ = [
    "SourceMap",
    "gc_paused",
    "json_path",
    "load_agents_file",
    "load_workflow",
    "load_yaml",
    "read_text",
    "workflow_hash",
]


def load_workflow(
    path_or_text: str | Path,
    *,
    file: str | None = None,
    registry: Sequence[AgentSpec] = (),
    check_inputs: bool = True,
) -> Workflow:
    """Read, validate and build a workflow; raises WorkflowInvalid with every problem.

    ``path_or_text`` is a path (a ``Path``, or a string naming an existing file without
    newlines) or the YAML text itself; ``file`` names the text in messages.
    ``check_inputs=False`` skips checking input defaults against their schemas.
    """
    text, source = _source(path_or_text, file)
    data, problems = analyze(text, source, registry, check_inputs=check_inputs)
    # Warnings never block: a file that `runner validate` accepts must also run.
    if any(p.severity == "error" for p in problems):
        raise WorkflowInvalid(problems)
    wf = build_workflow(data, source=source, text=text)
    if problems:
        wf = dataclasses.replace(wf, warnings=tuple(problems))
    return _with_children(wf, registry, (_identity(source),))


def _identity(source: str) -> str:
    path = Path(source)
    return str(path.resolve()) if path.is_file() else source


def _with_children(
    wf: Workflow,
    registry: Sequence[AgentSpec],
    stack: tuple[str, ...],
    where: tuple[Workflow, PathT] | None = None,
    memo: dict[tuple[str, tuple[str, ...]], Workflow] | None = None,
) -> Workflow:
    """Load every workflow a step calls (``uses:`` or ``workflow:``), now, so a run never
    reads a file mid-way.

    The callee is validated on the caller's agents (it runs on them); a chain of calls
    that comes back to a file already on it is a validation error, not an endless run.
    An inline callee is built from the calling file (it was validated with it) and its own
    calls are loaded the same way; ``where`` is the file whose text holds ``wf`` and the
    path of ``wf`` in it, so a problem inside an inline body is positioned in that file.
    """
    users = [
        (section, i, s)
        for section, seq in (("steps", wf.steps), ("finally", wf.finally_steps))
        for i, s in enumerate(seq)
        if s.calls_workflow
    ]
    if not users:
        return wf
    from runner.load.patterns import resolve_uses

    top, prefix = where or (wf, ())
    memo = {} if memo is None else memo  # a file called from many places is loaded once per agent set
    agents = [*registry, *(a for a in wf.agents if a.id not in {r.id for r in registry})]
    children: dict[str, Workflow] = {}
    for section, i, s in users:
        if s.inline is not None:
            child = build_inline(s, source=wf.source)
            children[s.step_id] = _with_children(
                child, agents, stack, (top, (*prefix, section, i, "workflow")), memo
            )
            continue
        assert s.uses is not None
        path = resolve_uses(s.uses, wf.source)
        key = str(path.resolve())
        if key in stack:
            chain = " -> ".join(Path(p).name for p in (*stack, key))
            raise WorkflowInvalid(
                [_problem(top, f"step '{s.step_id}': uses: recursion ({chain})", (*prefix, section, i, "uses"))]
            )
        cached = memo.get(mkey := (key, tuple(a.id for a in agents)))
        if cached is not None:
            children[s.step_id] = cached
            continue
        text, source = _source(path, None)
        data, problems = analyze(text, source, agents)
        if any(p.severity == "error" for p in problems):
            raise WorkflowInvalid(problems)
        child = build_workflow(data, source=source, text=text)
        children[s.step_id] = memo[mkey] = _with_children(child, agents, (*stack, key), None, memo)
    return dataclasses.replace(wf, children=children)


def _problem(top: Workflow, message: str, path: PathT) -> Problem:
    """A load-time problem at ``path`` of the file ``top`` was read from, with its line:col."""
    file = top.source or "<string>"
    if top.source_text is not None:
        try:
            return load_yaml(top.source_text, file)[1].problem(message, path)
        except WorkflowInvalid:
            pass
    return Problem(message, json_path(path), file)


def _source(path_or_text: str | Path, file: str | None) -> tuple[str, str]:
    if isinstance(path_or_text, Path):
        if path_or_text.is_dir():
            raise WorkflowInvalid(
                [Problem(f"{path_or_text} is a directory, not a workflow file", "$", str(path_or_text), 0, 0)]
            )
        return read_text(path_or_text), file or str(path_or_text)
    if "\n" not in path_or_text and (path_or_text.endswith((".yaml", ".yml")) or Path(path_or_text).is_file()):
        return read_text(path_or_text), file or path_or_text
    return path_or_text, file or "<string>"


def load_agents_file(path: str | Path) -> list[AgentSpec]:
    """Agents of a registry file (top-level ``agents:`` list); raises WorkflowInvalid."""
    source = str(path)
    text = read_text(path, what="agents file")
    data, problems = analyze_agents(text, source)
    if problems:
        raise WorkflowInvalid(problems)
    return [build_agent(a, source) for a in data["agents"]]
