"""Workflow validation: every problem at once, positioned, most relevant first.

Layers of checks, each a rank (``runner.model.problems.RANK_*``) so the most fundamental
problems come first: YAML (syntax, tags, duplicate keys) < JSON Schema (types, unknown
keys) < structure (duplicate ids, unknown ``depends_on``, cycles) < references (agents,
roles, patterns, templates) < inputs (defaults and ``with`` values against their schemas).
Later layers run even when earlier ones fail — on whatever parts of the document still
make sense — so one ``runner validate`` shows everything to fix.

This module is the entry point: it loads files, tells workflows from agents files, and
runs the layers: :mod:`runner.load.schema_problems` (the schema layer),
:mod:`runner.load.checks` (everything after it, with :mod:`runner.load.checks_templates` and
:mod:`runner.load.checks_inputs`); :mod:`runner.model.problems` orders and formats the result. Nothing here renders a template or imports the MCP SDK; jsonschema and the
template analysis are imported on first use, so ``import runner.load.validation`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from runner.errors import Problem, WorkflowInvalid
from runner.load.calls import call_problems
from runner.load.checks import WorkflowChecks, known_patterns, resolve_uses
from runner.load.schema import schema
from runner.load.schema_problems import schema_problems, type_name
from runner.load.yaml import SourceMap, gc_paused, load_yaml, read_text
from runner.model import AgentSpec
from runner.model.problems import RANK_SCHEMA, RANK_STRUCTURE, format_problems, has_errors, hint, sort_problems

__all__ = [
    "analyze",
    "analyze_agents",
    "format_problems",
    "has_errors",
    "hint",
    "known_patterns",
    "resolve_uses",
    "sort_problems",
    "validate_file",
    "validate_paths",
    "validate_text",
]


# --------------------------------------------------------------------------- entry points


def analyze(
    text: str,
    file: str = "<string>",
    registry: Sequence[AgentSpec] = (),
    *,
    check_inputs: bool = True,
    check_agents: bool | None = None,
) -> tuple[Any, list[Problem]]:
    """Load and check a workflow text: ``(data, problems)``; data is None on YAML errors.

    ``check_agents=None`` checks agent references unless the file is a pattern (it lies
    in a ``patterns`` directory): a pattern's agents come from the workflow that uses it.
    """
    with gc_paused():
        try:
            data, smap = load_yaml(text, file)
        except WorkflowInvalid as exc:
            return None, list(exc.problems)
        return data, _check_workflow(data, smap, registry, check_inputs, check_agents)


def analyze_agents(text: str, file: str = "<string>") -> tuple[Any, list[Problem]]:
    """Load and check an agents file (top-level ``agents:`` list)."""
    try:
        data, smap = load_yaml(text, file)
    except WorkflowInvalid as exc:
        return None, list(exc.problems)
    return data, _check_agents_file(data, smap)


def validate_text(
    text: str,
    file: str = "<string>",
    registry: Sequence[AgentSpec] = (),
    *,
    check_inputs: bool = True,
) -> list[Problem]:
    """Every problem of a workflow given as text, most relevant first."""
    return analyze(text, file, registry, check_inputs=check_inputs)[1]


def validate_file(path: str | Path, registry: Sequence[AgentSpec] = ()) -> list[Problem]:
    """Every problem of one workflow (or agents) file; an unreadable file is one problem."""
    return _validate_any(Path(path), registry, explicit=True)


def validate_paths(paths: Sequence[str | Path], registry: Sequence[AgentSpec] = ()) -> list[Problem]:
    """Validate files and directories (recursively: ``*.yaml``, ``*.yml``).

    A file holding only a top-level ``agents:`` list is checked as an agents file. A
    YAML file met while walking a directory that has none of a workflow's top-level
    keys (an inputs or secrets file, say) is skipped with an ``info`` note; a file named
    on the command line is always checked. Files in a ``patterns`` directory are checked
    as patterns (agent references are left to the workflows that use them).
    """
    problems: list[Problem] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = False
            for f in _walk(p):
                found = True
                problems += _validate_any(f, registry, explicit=False)
            if not found:  # a typo'd or emptied directory must not pass CI as "valid"
                problems.append(Problem(f"no workflow files (*.yaml, *.yml) under {p}", "$", str(p), 0, 0))
        else:
            problems += _validate_any(p, registry, explicit=True)
    return problems


def _walk(root: Path) -> Iterator[Path]:
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).parts
        if any(part.startswith(".") or part == "__pycache__" for part in rel[:-1]):
            continue
        if f.suffix in (".yaml", ".yml") and f.is_file():
            yield f


def _validate_any(path: Path, registry: Sequence[AgentSpec], *, explicit: bool) -> list[Problem]:
    """Validate one file as a workflow or an agents file, whichever it is.

    One file's problems stand alone: if checking it fails unexpectedly (a bug in a check,
    a RecursionError, a MemoryError), that becomes an error on this file, and the files
    after it are still checked and reported (``--format json`` still prints them all).
    """
    try:
        return _validate_one(path, registry, explicit=explicit)
    except Exception as exc:  # noqa: BLE001 - isolate the file; the message says it is runner's fault
        reason = f"{type(exc).__name__}: {exc}".strip()
        if len(reason) > 200:
            reason = reason[:197] + "..."
        return [
            Problem(
                f"could not be validated: runner failed on this file ({reason}); please report it",
                "$",
                str(path),
                1,
                1,
                rank=RANK_SCHEMA,
            )
        ]


def _validate_one(path: Path, registry: Sequence[AgentSpec], *, explicit: bool) -> list[Problem]:
    file = str(path)
    with gc_paused():
        try:
            data, smap = load_yaml(read_text(path), file)
        except WorkflowInvalid as exc:
            return list(exc.problems)
        return _dispatch(data, smap, registry, explicit=explicit)


def _dispatch(data: Any, smap: SourceMap, registry: Sequence[AgentSpec], *, explicit: bool) -> list[Problem]:
    """Pick the checks by the document's shape (see ``validate_paths``)."""
    file = smap.file
    if isinstance(data, dict) and data and set(data) == {"agents"}:
        return _check_agents_file(data, smap)
    if not explicit and isinstance(data, dict) and not _looks_like_workflow(data):
        return [
            Problem(
                "skipped: not a workflow (none of name, steps, agents, ...)",
                "$",
                file,
                1,
                1,
                severity="info",
            )
        ]
    return _check_workflow(data, smap, registry, True, None)


def _workflow_keys() -> frozenset[str]:
    return frozenset(schema("workflow.schema.json")["properties"])


def _looks_like_workflow(data: dict[str, Any]) -> bool:
    """Whether a mapping found in a directory is meant as a workflow.

    True when a top-level key is a workflow key or a near miss of one (``stpes``,
    ``nmae``): a file whose every key is misspelled is reported, not skipped. Only the
    first keys are compared, so a generated file with 100,000 keys costs nothing here.
    """
    keys = _workflow_keys()
    if not keys.isdisjoint(data):
        return True
    import difflib

    names = sorted(keys)
    for key in list(data)[:_LOOKS_LIKE_KEYS]:
        if isinstance(key, str) and len(key) <= 40 and difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.75):
            return True
    return False


_LOOKS_LIKE_KEYS = 50


# --------------------------------------------------------------------------- documents


def _check_agents_file(data: Any, smap: SourceMap) -> list[Problem]:
    if not isinstance(data, dict):
        return [smap.problem("an agents file must be a mapping with an 'agents:' list", rank=RANK_SCHEMA)]
    problems = schema_problems("agents-file.schema.json", data, smap)
    problems += _duplicate_agents(data.get("agents"), smap)
    if isinstance(data.get("agents"), list):
        checks = WorkflowChecks({"agents": data["agents"]}, smap, (), False, False, inputs_known=False)
        problems += checks.agent_templates()
    return sort_problems(problems)


def _duplicate_agents(agents: Any, smap: SourceMap) -> list[Problem]:
    out: list[Problem] = []
    if not isinstance(agents, list):
        return out
    first: dict[str, int] = {}
    for i, a in enumerate(agents):
        if isinstance(a, dict) and isinstance(a.get("id"), str):
            if a["id"] in first:
                line = smap.position(("agents", first[a["id"]], "id"))[0]
                out.append(
                    smap.problem(
                        f"duplicate agent id {a['id']!r} (first declared on line {line})",
                        ("agents", i, "id"),
                        rank=RANK_STRUCTURE,
                    )
                )
            else:
                first[a["id"]] = i
    return out


def _check_workflow(
    data: Any,
    smap: SourceMap,
    registry: Sequence[AgentSpec],
    check_inputs: bool,
    check_agents: bool | None,
) -> list[Problem]:
    if data is None:
        return [smap.problem("empty workflow file: a workflow needs at least name and steps", rank=RANK_SCHEMA)]
    if not isinstance(data, dict):
        return [
            smap.problem(
                f"a workflow must be a mapping with name and steps, not {type_name(data)}",
                rank=RANK_SCHEMA,
            )
        ]
    if check_agents is None:
        check_agents = Path(smap.file).parent.name != "patterns"
    problems = schema_problems("workflow.schema.json", data, smap)
    problems += _workflow_checks(data, smap, registry, check_inputs, check_agents)
    if not any(p.severity == "error" for p in problems):  # follow the calls only of a sound file
        problems += call_problems(data, smap) or _callee_problems(data, smap, registry, check_inputs)
    return sort_problems(problems)


def _callee_problems(
    data: dict[str, Any], smap: SourceMap, registry: Sequence[AgentSpec], check_inputs: bool
) -> list[Problem]:
    """Each file this workflow ``uses:``, checked as ``runner run`` loads it: on this
    workflow's agents (a callee's roles and agents must exist among them), so ``validate``
    refuses what ``run`` would. Called only once ``call_problems`` found no cycle, so the
    callees' own calls (checked the same way by ``analyze``) always end."""
    known = {a.id for a in registry}
    declared = WorkflowChecks(data, smap, registry, False, False).declared_agents()
    agents = [*registry, *(a for a in declared if a.id not in known)]
    out: list[Problem] = []
    done: set[Path] = set()
    for section in ("steps", "finally"):
        seq = data.get(section)
        for step in seq if isinstance(seq, list) else ():
            uses = step.get("uses") if isinstance(step, dict) else None
            if not isinstance(uses, str) or "{" in uses:
                continue
            target = resolve_uses(uses, smap.file)
            if target is None or target in done:
                continue  # a missing target is the `uses:` check's to report
            done.add(target)
            try:
                text = read_text(target)
            except WorkflowInvalid as exc:
                out += exc.problems
                continue
            out += [p for p in analyze(text, str(target), agents, check_inputs=check_inputs)[1] if p.severity == "error"]
    return out


def _workflow_checks(
    data: dict[str, Any], smap: SourceMap, registry: Sequence[AgentSpec], check_inputs: bool, check_agents: bool
) -> list[Problem]:
    """The checks past the schema, of a workflow and of every inline ``workflow:`` in it.

    An inline callee is checked as a workflow of its own (its inputs, its steps, its
    templates), on the caller's agents as a ``uses:`` callee is; ``smap.sub`` places its
    problems in the calling file. The schema layer has already walked into it.
    """
    problems = _duplicate_agents(data.get("agents"), smap)
    checks = WorkflowChecks(data, smap, registry, check_inputs, check_agents)
    problems += checks.run()
    bodies = list(checks.inline_bodies())
    if bodies:
        known = {a.id for a in registry}
        agents = [*registry, *(a for a in checks.declared_agents() if a.id not in known)]
        for path, body in bodies:
            problems += _workflow_checks(body, smap.sub((*path, "workflow")), agents, check_inputs, check_agents)
    return problems
