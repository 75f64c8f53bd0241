"""``runner validate --deep``: typed data flow checked against the real agents.

Connects to every agent a workflow can use (in parallel, as a run's preflight does) and
checks, with file:line:col positions: that each ``tool_to_call`` exists on an agent that may
run the step; that literal ``tool_arguments`` satisfy the tool's ``inputSchema`` (templated
values are unknowable before the run and are left alone); and that every
``steps.<id>.result.<field>`` reference names a field the producing tool's ``outputSchema``
declares. Imports the MCP SDK, so plain ``validate`` never loads this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.core.selection import eligible
from runner.errors import Problem, WorkflowInvalid
from runner.load import SourceMap, load_workflow, load_yaml, read_text
from runner.load.instantiate import render_agent
from runner.load.validation import hint
from runner.model import AgentSpec, StepSpec, TransportKind, Workflow
from runner.template import TemplateError, is_templated, referenced_result_fields

RANK_DEEP = 80


def _files(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(x for x in p.rglob("*") if x.suffix in (".yaml", ".yml"))
        else:
            out.append(p)
    return out


def deep_check_paths(paths: Sequence[str], registry: Sequence[AgentSpec] = ()) -> list[Problem]:
    """Deep problems of every workflow file under ``paths`` (files that are not workflows are skipped)."""
    problems: list[Problem] = []
    for f in _files(paths):
        text = read_text(f)
        data, smap = load_yaml(text, str(f))
        if not isinstance(data, dict) or "steps" not in data:
            continue  # an agents file or something else validate already judged
        try:
            wf = load_workflow(text, file=str(f), registry=registry)
        except WorkflowInvalid as exc:
            problems += exc.problems
            continue
        problems += asyncio.run(deep_check(wf, smap, registry))
    return problems


def _step_paths(wf: Workflow) -> dict[str, list[str | int]]:
    paths: dict[str, list[str | int]] = {}
    for i, s in enumerate(wf.steps):
        paths[s.step_id] = ["steps", i]
    for i, s in enumerate(wf.finally_steps):
        paths[s.step_id] = ["finally", i]
    return paths


async def deep_check(wf: Workflow, smap: SourceMap, registry: Sequence[AgentSpec] = ()) -> list[Problem]:
    """The deep problems of one loaded workflow (see the module docstring)."""
    from runner.agents.pool import AgentPool

    problems: list[Problem] = []
    agents: dict[str, AgentSpec] = {a.id: a for a in registry}
    agents.update({a.id: a for a in wf.agents})
    defaults = {k: v["default"] for k, v in wf.inputs.items() if isinstance(v, dict) and "default" in v}
    ctx = {"inputs": defaults, "secrets": _AnySecret(), "workflow": {"name": wf.name}}
    needed: dict[str, AgentSpec] = {}
    paths = _step_paths(wf)
    callees = list(_callee_steps(wf, smap, paths, agents))
    for s in [*wf.all_steps, *(c[0] for c in callees)]:
        if s.tool_to_call is None:
            continue
        for aid in eligible(s, agents)[0]:
            if aid in needed or agents[aid].transport == TransportKind.PULL:
                continue
            try:
                needed[aid] = render_agent(agents[aid], ctx)
            except TemplateError as exc:
                problems.append(
                    smap.problem(
                        f"--deep: cannot start agent '{aid}' without running: {exc}",
                        ["agents"],
                        rank=RANK_DEEP,
                        severity="warning",
                    )
                )
    base_dir = str(Path(wf.source).resolve().parent) if wf.source else None
    pool = AgentPool()
    try:
        errors = await pool.open(list(needed.values()), base_dir=base_dir)
        for aid, err in errors.items():
            if err is not None:
                where = _agent_path(wf, aid)
                problems.append(
                    smap.problem(f"--deep: agent '{aid}' could not be reached: {err}", where, rank=RANK_DEEP)
                )
        conns = pool.connected()
        tool_of: dict[str, Any] = {}
        for s in wf.all_steps:
            if s.tool_to_call is None:
                continue
            if is_templated(s.tool_to_call):
                problems.append(
                    smap.problem(
                        f"--deep: tool_to_call {s.tool_to_call!r} is a template: the tool is chosen when the "
                        "run renders it and cannot be checked now",
                        [*paths[s.step_id], "tool_to_call"],
                        rank=RANK_DEEP,
                        severity="warning",
                    )
                )
                continue
            ids = [a for a in eligible(s, agents)[0] if a in conns]
            if not ids:
                continue
            offering = [a for a in ids if s.tool_to_call in conns[a].tools]
            if not offering:
                offered = sorted(conns[ids[0]].tools)
                problems.append(
                    smap.problem(
                        f"agent '{ids[0]}' has no tool '{s.tool_to_call}'{hint(s.tool_to_call, offered)}; "
                        f"it offers: {', '.join(offered) or '(none)'}",
                        [*paths[s.step_id], "tool_to_call"],
                        rank=RANK_DEEP,
                    )
                )
                continue
            info = conns[offering[0]].tools[s.tool_to_call]
            tool_of[s.step_id] = info
            problems += _check_arguments(s, info, smap, paths[s.step_id])
        problems += _check_result_refs(wf, tool_of, smap, paths)
        for s, csmap, where in callees:
            assert s.tool_to_call is not None
            ids = [a for a in eligible(s, agents)[0] if a in conns]
            if ids and not any(s.tool_to_call in conns[a].tools for a in ids):
                offered = sorted(conns[ids[0]].tools)
                problems.append(
                    csmap.problem(
                        f"agent '{ids[0]}' has no tool '{s.tool_to_call}'{hint(s.tool_to_call, offered)}; "
                        f"it offers: {', '.join(offered) or '(none)'}",
                        [*where, "tool_to_call"],
                        rank=RANK_DEEP,
                    )
                )
    finally:
        await pool.close()
    return problems


def _callee_steps(
    wf: Workflow, smap: SourceMap, paths: dict[str, list[str | int]], agents: dict[str, AgentSpec], depth: int = 0
) -> Iterator[tuple[StepSpec, SourceMap, list[str | int]]]:
    """The tool steps of every workflow ``wf`` calls (recursively) whose agent and tool are
    written literally, with the source map and path that place them. A callee's templated
    choices (a pattern's ``assigned_agent_id: "{{ inputs.coordinator }}"``) depend on the
    call's ``with:`` and are the run's to check; so are agents only the callee declares."""
    if depth > 16:
        return
    specs = {s.step_id: s for s in wf.all_steps}
    for sid, child in wf.children.items():
        if sid not in paths or sid not in specs:
            continue
        if specs[sid].inline is not None:
            csmap = smap.sub([*paths[sid], "workflow"])
        elif child.source and child.source_text:
            try:
                csmap = load_yaml(child.source_text, child.source)[1]
            except WorkflowInvalid:
                continue
        else:
            continue
        cpaths = _step_paths(child)
        for s in child.all_steps:
            fixed = (s.assigned_agent_id, s.assigned_role, *s.required_capabilities, *s.fallback_agents)
            if (
                s.tool_to_call is None
                or is_templated(s.tool_to_call)
                or any(isinstance(v, str) and "{" in v for v in fixed)
                or (child.per_task and s.step_id in child.per_task)
                or not any(a in agents for a in eligible(s, agents)[0])
            ):
                continue
            yield s, csmap, cpaths[s.step_id]
        yield from _callee_steps(child, csmap, cpaths, agents, depth + 1)


class _AnySecret(dict[str, str]):
    """Secrets are not needed to check agents' tools; render them as a placeholder."""

    def __missing__(self, key: str) -> str:
        return "***"


def _agent_path(wf: Workflow, aid: str) -> list[str | int]:
    for i, a in enumerate(wf.agents):
        if a.id == aid:
            return ["agents", i]
    return ["agents"]


def _templated_at(instance: Any, path: Sequence[Any]) -> bool:
    node = instance
    for p in path:
        if isinstance(node, str):
            return is_templated(node)
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, str) and is_templated(node)


def _check_arguments(s: StepSpec, info: Any, smap: SourceMap, path: list[str | int]) -> list[Problem]:
    schema = info.input_schema
    if not schema:
        return []
    import jsonschema

    args = s.tool_arguments if s.tool_arguments is not None else {}
    if isinstance(args, str):
        return []  # the whole argument object is one template
    out: list[Problem] = []
    try:
        validator = jsonschema.Draft202012Validator(schema)
        errors = list(validator.iter_errors(args))
    except jsonschema.SchemaError:
        return []
    props = schema.get("properties")
    if isinstance(props, dict) and isinstance(args, dict) and schema.get("additionalProperties") in (None, False):
        # SDK-generated schemas leave additionalProperties unset, and servers drop unknown
        # arguments silently: a misspelt argument name is almost always a bug.
        for key in args:
            if key not in props:
                out.append(
                    smap.problem(
                        f"tool '{s.tool_to_call}' has no argument '{key}'{hint(key, props)} "
                        f"(arguments: {', '.join(props)})",
                        [*path, "tool_arguments", key],
                        key=True,
                        rank=RANK_DEEP,
                    )
                )
    for err in errors:
        where = list(err.absolute_path)
        if _templated_at(args, where):
            continue  # a templated value is only known at run time
        if err.validator == "additionalProperties" and not where:
            continue  # reported above, key by key
        out.append(
            smap.problem(f"tool '{s.tool_to_call}': {err.message}", [*path, "tool_arguments", *where], rank=RANK_DEEP)
        )
    return out


def _result_schema(info: Any) -> dict[str, Any] | None:
    schema = info.output_schema
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties")
    if schema.get("type") == "object" and isinstance(props, dict) and list(props) == ["result"]:
        inner = props["result"]
        return inner if isinstance(inner, dict) else None  # the SDK wrapper is unwrapped at run time
    return schema


def _json_types(schema: Any, depth: int = 0) -> set[str] | None:
    """The JSON types a schema allows (``type``, a list of them, ``anyOf``/``oneOf``
    branches, ``const``/``enum`` values); None when it does not say (anything goes)."""
    if not isinstance(schema, dict) or depth > 20:
        return None
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list) and t and all(isinstance(x, str) for x in t):
        return set(t)
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            found: set[str] = set()
            for b in branches:
                sub = _json_types(b, depth + 1)
                if sub is None:
                    return None
                found |= sub
            return found
    values = schema["enum"] if isinstance(schema.get("enum"), list) else [schema["const"]] if "const" in schema else None
    if values:
        return {_type_of(v) for v in values}
    return None


def _type_of(v: Any) -> str:
    if v is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array")):
        if isinstance(v, kind):
            return name
    return "object"


def _article(t: str) -> str:
    return "an" if t[:1] in "aeiou" else "a"


def _string_leaves(where: list[str | int], val: Any) -> list[tuple[list[str | int], str]]:
    """Every string inside ``val`` with its path below ``where`` (mapping keys, list indexes)."""
    if isinstance(val, str):
        return [(where, val)]
    if isinstance(val, dict):
        return [leaf for k, v in val.items() for leaf in _string_leaves([*where, str(k)], v)]
    if isinstance(val, (list, tuple)):
        return [leaf for i, v in enumerate(val) for leaf in _string_leaves([*where, i], v)]
    return []


def _check_result_refs(
    wf: Workflow, tool_of: Mapping[str, Any], smap: SourceMap, paths: Mapping[str, list[str | int]]
) -> list[Problem]:
    out: list[Problem] = []
    places: list[tuple[list[str | int], Any]] = []
    for s in wf.all_steps:
        for key, val in (
            ("tool_arguments", s.tool_arguments),
            ("if", s.condition),
            ("for_each", s.for_each),
            ("with", s.with_),
        ):
            if val is not None:
                places.append(([*paths[s.step_id], key], val))
    for name, val in wf.outputs.items():
        places.append((["outputs", name], val))
    leaves = [leaf for where, val in places for leaf in _string_leaves(where, val)]
    for where, val in leaves:  # each template string, so a problem points at its own value
        for step_id, field in sorted(referenced_result_fields(val)):
            info = tool_of.get(step_id)
            if info is None:
                continue
            schema = _result_schema(info)
            if schema is None:
                continue
            types = _json_types(schema)
            props = schema.get("properties")
            if types is not None and "object" not in types:
                t = " or ".join(sorted(types))
                out.append(
                    smap.problem(
                        f"steps.{step_id}.result.{field}: tool '{info.name}' returns {_article(t)} {t}, "
                        f"which has no field '{field}'",
                        where,
                        rank=RANK_DEEP,
                    )
                )
            elif isinstance(props, dict) and field not in props and not schema.get("additionalProperties"):
                out.append(
                    smap.problem(
                        f"steps.{step_id}.result.{field}: tool '{info.name}' output has no field '{field}'"
                        f"{hint(field, props)} (fields: {', '.join(props) or 'none'})",
                        where,
                        rank=RANK_DEEP,
                    )
                )
    return out
