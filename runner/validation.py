"""Workflow validation: every problem at once, positioned, most relevant first.

Layers of checks, each a rank (``runner.loader.RANK_*``) so the most fundamental problems
come first: YAML (syntax, tags, duplicate keys) < JSON Schema (types, unknown keys) <
structure (duplicate ids, unknown ``depends_on``, cycles) < references (agents, roles,
patterns, templates) < inputs (defaults and ``with`` values against their schemas).
Later layers run even when earlier ones fail — on whatever parts of the document still
make sense — so one ``runner validate`` shows everything to fix.

Nothing here renders a template or imports the MCP SDK; jsonschema and the template
module are imported on first use, so ``import runner.validation`` stays cheap.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.errors import Problem, WorkflowInvalid
from runner.loader import (
    RANK_INPUTS,
    RANK_REFERENCE,
    RANK_SCHEMA,
    RANK_STRUCTURE,
    SourceMap,
    fast_schema_valid,
    fast_valid,
    gc_paused,
    json_path,
    load_yaml,
    read_text,
    schema,
    schema_validator,
)
from runner.model import AgentSpec

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

PathT = tuple[str | int, ...]


def has_errors(problems: Iterable[Problem]) -> bool:
    """Whether any problem is an error (warnings and notes do not make a file invalid)."""
    return any(p.severity == "error" for p in problems)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Most relevant first: by rank; within a rank in file order, except schema problems,
    which keep their relevance order (shallowest first)."""
    return sorted(problems, key=lambda p: (p.rank, (0, 0) if p.rank == RANK_SCHEMA else (p.line, p.col)))


def hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else empty."""
    options = [c for c in choices if isinstance(c, str)]
    norm = word.replace("-", "_").lower()
    for c in options:
        if c.replace("-", "_").lower() == norm:
            return f" (did you mean {c!r}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
            for f in _walk(p):
                problems += _validate_any(f, registry, explicit=False)
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
    """Validate one file as a workflow or an agents file, whichever it is."""
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
    if not explicit and isinstance(data, dict) and not set(data) & _workflow_keys():
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


# --------------------------------------------------------------------------- formatting


def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


_GH_LEVEL = {"error": "error", "warning": "warning"}


def format_problems(problems: Sequence[Problem], fmt: str = "text") -> str:
    """Render problems as ``text`` lines, a ``json`` list, or ``github`` annotations.

    text: ``file:line:col: message [json.path]`` per line (warnings and notes say so);
    json: a list of {file, line, col, message, path, severity};
    github: ``::error file=F,line=L,col=C,title=runner validate::message [path]``.
    """
    if fmt == "json":
        return json.dumps([p.to_json() for p in problems], indent=2, ensure_ascii=False)
    if fmt == "github":
        lines = []
        for p in problems:
            props = [f"file={_gh_prop(p.file)}"]
            if p.line:
                props += [f"line={p.line}", f"col={p.col}"]
            props.append(f"title={_gh_prop('runner validate')}")
            level = _GH_LEVEL.get(p.severity, "notice")
            lines.append(f"::{level} {','.join(props)}::{_gh_data(f'{p.message} [{p.path}]')}")
        return "\n".join(lines)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: use text, json or github")
    return "\n".join(
        p.format() if p.severity == "error" else f"{p.file}:{p.line}:{p.col}: {p.severity}: {p.message} [{p.path}]"
        for p in problems
    )


# --------------------------------------------------------------------------- schema layer


def _schema_problems(name: str, data: Any, smap: SourceMap) -> list[Problem]:
    """JSON Schema errors, shallowest (most fundamental) first, then in file order.

    A fast exact check answers for valid documents; jsonschema runs only when something
    is wrong, and then, in long step lists, only over the steps that fail the fast check
    (``remap`` puts their real indices back into the paths).
    """
    if fast_valid(name, data):
        return []
    from jsonschema.exceptions import WEAK_MATCHES

    target, remap = _trim_steps(name, data)
    errors = list(schema_validator(name).iter_errors(target))

    def order(e: Any) -> tuple[Any, ...]:
        path = remap(tuple(e.absolute_path))
        return (len(path), e.validator in WEAK_MATCHES, smap.position(path))

    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for e in sorted(errors, key=order):
        for prob in _explain(e, smap, data, remap):
            if (prob.path, prob.message) not in seen:
                seen.add((prob.path, prob.message))
                out.append(prob)
    return out


def _trim_steps(name: str, data: Any) -> tuple[Any, Callable[[PathT], PathT]]:
    """``data`` with only the steps that fail the step schema, and the path remapping."""
    maps: dict[str, list[int]] = {}
    if name == "workflow.schema.json" and isinstance(data, dict):
        trimmed = dict(data)
        for section in ("steps", "finally"):
            seq = data.get(section)
            if isinstance(seq, list) and len(seq) > 20:
                keep = [i for i, st in enumerate(seq) if not fast_valid("step.schema.json", st)]
                keep = keep or [0]  # keep the list non-empty so minItems judges it right
                trimmed[section] = [seq[i] for i in keep]
                maps[section] = keep
        if maps:
            data = trimmed

    def remap(path: PathT) -> PathT:
        if len(path) >= 2 and path[0] in maps and isinstance(path[1], int):
            return (path[0], maps[str(path[0])][path[1]], *path[2:])
        return path

    return data, remap


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _agent_context(data_path: PathT, root: Any) -> tuple[str, str] | None:
    """(agent id, transport) when ``data_path`` points into an agent entry."""
    if len(data_path) >= 2 and data_path[0] == "agents" and isinstance(data_path[1], int):
        try:
            agent = root["agents"][data_path[1]]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(agent, dict):
            return str(agent.get("id", "?")), str(agent.get("transport", "stdio"))
    return None


_PATTERN_HELP = {
    "name": "use lower-case letters, digits, '-' and '_', starting with a letter or digit",
    "step_id": "use letters, digits, '_' and '-', starting with a letter or '_'",
    "id": "use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
    "module": "use 'package.module:attribute'",
}


def _explain(e: Any, smap: SourceMap, root: Any, remap: Callable[[PathT], PathT]) -> list[Problem]:
    """One jsonschema error → positioned problems with messages for people."""
    path: PathT = remap(tuple(e.absolute_path))
    v = e.validator
    inst = e.instance
    if v == "additionalProperties" and e.validator_value is False and isinstance(inst, dict):
        allowed = list(e.schema.get("properties", {}))
        return [
            smap.problem(f"unknown key {k!r}{hint(k, allowed)}", (*path, k), key=True, rank=RANK_SCHEMA)
            for k in inst
            if k not in allowed
        ]
    if v == "not" and e.validator_value == {} and path:  # a key this context forbids
        key = path[-1]
        ctx = _agent_context(path, root)
        msg = (
            f"{key!r} does not apply to transport {ctx[1]!r} (agent {ctx[0]!r})"
            if ctx
            else f"key {key!r} is not allowed here"
        )
        return [smap.problem(msg, path, key=True, rank=RANK_SCHEMA)]
    if v == "required" and isinstance(inst, dict):
        out = []
        for k in e.validator_value:
            if k in inst:
                continue
            ctx = _agent_context(path, root)
            if ctx and k in ("command", "url", "module"):
                msg = f"agent {ctx[0]!r} with transport {ctx[1]!r} needs {k!r}"
            else:
                msg = f"missing required key {k!r}"
            out.append(smap.problem(msg, path, rank=RANK_SCHEMA))
        return out
    if "propertyNames" in e.relative_schema_path:
        return [
            smap.problem(
                f"invalid input name {inst!r}: use letters, digits and '_'",
                (*path, inst),
                key=True,
                rank=RANK_SCHEMA,
            )
        ]
    if v in ("anyOf", "oneOf") and e.schema.get("title") == "duration":
        msg = f"invalid duration {_preview(inst)}: use e.g. 500ms, 30s, 10m, 1h or a number of seconds"
        return [smap.problem(msg, path, rank=RANK_SCHEMA)]
    if v in ("anyOf", "oneOf") and e.context:
        from jsonschema.exceptions import best_match

        return _explain(best_match(e.context), smap, root, remap)
    if v == "type":
        types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        msg = f"expected {' or '.join(types)}, got {_type_name(inst)} {_preview(inst)}"
        return [smap.problem(msg, path, rank=RANK_SCHEMA)]
    if v == "pattern":
        field = next((p for p in reversed(path) if isinstance(p, str)), "")
        help_ = _PATTERN_HELP.get(str(field)) if path[:1] != ("inputs",) else None
        msg = f"invalid {field} {inst!r}: {help_}" if help_ else f"{inst!r} does not match {e.validator_value!r}"
        return [smap.problem(msg, path, rank=RANK_SCHEMA)]
    if v in ("enum", "const"):
        choices = e.validator_value if v == "enum" else [e.validator_value]
        shown = ", ".join(str(c) for c in choices)
        extra = hint(inst, [str(c) for c in choices]) if isinstance(inst, str) else ""
        return [smap.problem(f"{_preview(inst)} is not one of: {shown}{extra}", path, rank=RANK_SCHEMA)]
    if v == "uniqueItems" and isinstance(inst, list):
        seen: list[Any] = []
        for i, item in enumerate(inst):
            if item in seen:
                return [smap.problem(f"duplicate entry {_preview(item)}", (*path, i), rank=RANK_SCHEMA)]
            seen.append(item)
    if v == "minItems" and path == ("steps",):
        return [smap.problem("a workflow needs at least one step", path, rank=RANK_SCHEMA)]
    return [smap.problem(e.message, path, rank=RANK_SCHEMA)]


# --------------------------------------------------------------------------- documents


def _check_agents_file(data: Any, smap: SourceMap) -> list[Problem]:
    if not isinstance(data, dict):
        return [smap.problem("an agents file must be a mapping with an 'agents:' list", rank=RANK_SCHEMA)]
    problems = _schema_problems("agents-file.schema.json", data, smap)
    problems += _duplicate_agents(data.get("agents"), smap)
    if isinstance(data.get("agents"), list):
        checks = _Checks({"agents": data["agents"]}, smap, (), False, False, inputs_known=False)
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
                f"a workflow must be a mapping with name and steps, not {_type_name(data)}",
                rank=RANK_SCHEMA,
            )
        ]
    if check_agents is None:
        check_agents = Path(smap.file).parent.name != "patterns"
    problems = _schema_problems("workflow.schema.json", data, smap)
    problems += _duplicate_agents(data.get("agents"), smap)
    problems += _Checks(data, smap, registry, check_inputs, check_agents).run()
    return sort_problems(problems)


# --------------------------------------------------------------------------- workflow checks

_ROOTS = frozenset({"inputs", "steps", "run", "workflow", "secrets"})
_ALL_ROOTS = ("inputs", "steps", "item", "index", "run", "workflow", "secrets")
_AGENT_ROOTS = frozenset({"inputs", "secrets", "workflow", "run"})
_NOT_TEMPLATED = frozenset({"step_id", "description", "depends_on", "uses"})
_AGENT_TEMPLATED = ("command", "args", "env", "cwd", "url", "headers")
_INPUT_REF = re.compile(r"(?<![\w.])inputs\s*(?:\.\s*([A-Za-z_]\w*)\b(?!\s*\()|\[\s*(['\"])([^'\"]*)\2\s*\])")
_CODE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)


def _has_syntax(s: str) -> bool:
    return "{" in s and ("{{" in s or "{%" in s or "{#" in s)


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return _has_syntax(value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return False


@lru_cache(maxsize=65536)
def _input_refs(text: str) -> tuple[str, ...]:
    """Names read as ``inputs.X`` / ``inputs['X']`` inside a template's code parts."""
    names: dict[str, None] = {}
    for m in _CODE.finditer(text):
        for r in _INPUT_REF.finditer(m.group(1) or m.group(2) or ""):
            names[r.group(1) or r.group(3)] = None
    return tuple(names)


def _strings(value: Any, path: PathT) -> Iterator[tuple[PathT, str]]:
    """Every template string in a nested value, with its path."""
    if isinstance(value, str):
        if _has_syntax(value):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def known_patterns() -> list[str]:
    """Names usable as ``uses: <name>`` (files ``patterns/<name>.yaml``)."""
    from runner.patterns import list_patterns

    return list_patterns()


def resolve_uses(uses: str, file: str) -> Path | None:
    """The file a ``uses:`` names (``runner.patterns`` rules, shared with the engine), or None."""
    from runner.patterns import resolve_uses as _resolve

    try:
        return _resolve(uses, file)
    except WorkflowInvalid:
        return None


@lru_cache(maxsize=256)
def _interface(path: str, mtime: float) -> dict[str, Any] | str:
    """A pattern's ``inputs`` (name -> schema), or a message saying why it cannot be read."""
    try:
        data, _ = load_yaml(read_text(path), path)
    except WorkflowInvalid as exc:
        return exc.problems[0].format()
    if not isinstance(data, dict):
        return f"{path} is not a workflow"
    inputs = data.get("inputs") or {}
    return inputs if isinstance(inputs, dict) else f"{path}: inputs is not a mapping"


def _jsonschema_messages(sch: dict[str, Any], value: Any) -> list[str] | None:
    """Why ``value`` fails the JSON Schema ``sch`` (None: the schema itself is invalid)."""
    if fast_schema_valid(sch, value):
        return []
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import relevance

    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    if not meta.is_valid(sch):
        return None
    errors = sorted(Draft202012Validator(sch).iter_errors(value), key=relevance, reverse=True)
    return [(json_path(tuple(e.absolute_path)) + ": " if e.absolute_path else "") + e.message for e in errors]


class _Checks:
    """Structure, agent, template, pattern and input checks over a loaded workflow.

    Works on whatever the document holds, schema-valid or not: anything of the wrong
    shape is skipped here because the schema layer has already reported it.
    """

    def __init__(
        self,
        data: dict[str, Any],
        smap: SourceMap,
        registry: Sequence[AgentSpec],
        check_inputs: bool,
        check_agents: bool,
        *,
        inputs_known: bool = True,
    ) -> None:
        self.data = data
        self.inputs_known = inputs_known  # False for agents files: inputs come with the workflow
        self.smap = smap
        self.registry = registry
        self.check_inputs = check_inputs
        self.check_agents = check_agents
        self.problems: list[Problem] = []
        inputs = data.get("inputs")
        self.inputs: dict[str, Any] = inputs if isinstance(inputs, dict) else {}
        self.steps: list[tuple[PathT, dict[str, Any]]] = []
        for section in ("steps", "finally"):
            seq = data.get(section)
            if isinstance(seq, list):
                self.steps += [((section, i), s) for i, s in enumerate(seq) if isinstance(s, dict)]
        self.ids: dict[str, PathT] = {}
        self.finally_ids: set[str] = set()
        self.deps: dict[str, list[str]] = {}
        self._templates: Any = None

    def add(
        self, message: str, path: PathT, *, key: bool = False, rank: int = RANK_REFERENCE, severity: str = "error"
    ) -> None:
        self.problems.append(self.smap.problem(message, path, key=key, rank=rank, severity=severity))

    def run(self) -> list[Problem]:
        self.structure()
        if self.check_agents:
            self.agents()
        self.templates()
        self.agent_templates()
        self.uses()
        if self.check_inputs:
            self.input_defaults()
        return self.problems

    # ------------------------------------------------------------------ structure

    def _owned(self) -> Iterator[tuple[PathT, dict[str, Any], str]]:
        """Steps with a string id, first occurrence of each id only."""
        for path, step in self.steps:
            sid = step.get("step_id")
            if isinstance(sid, str) and self.ids.get(sid) == path:
                yield path, step, sid

    def structure(self) -> None:
        from runner.dag import ancestors, find_cycles

        for path, step in self.steps:
            sid = step.get("step_id")
            if not isinstance(sid, str):
                continue
            if sid in self.ids:
                line = self.smap.position((*self.ids[sid], "step_id"))[0]
                self.add(
                    f"duplicate step id {sid!r} (first defined on line {line})", (*path, "step_id"), rank=RANK_STRUCTURE
                )
                continue
            self.ids[sid] = path
            if path[0] == "finally":
                self.finally_ids.add(sid)
        dep_paths: dict[tuple[str, str], PathT] = {}
        for path, step, sid in self._owned():
            raw = step.get("depends_on")
            if isinstance(raw, str):
                entries = [(raw, (*path, "depends_on"))]
            elif isinstance(raw, list):
                entries = [(d, (*path, "depends_on", j)) for j, d in enumerate(raw) if isinstance(d, str)]
            else:
                entries = []
            ok: list[str] = []
            for dep, dpath in entries:
                if dep not in self.ids:
                    self.add(f"unknown step {dep!r} in depends_on{hint(dep, self.ids)}", dpath, rank=RANK_STRUCTURE)
                elif path[0] == "steps" and dep in self.finally_ids:
                    self.add(
                        f"step {sid!r} cannot depend on finally step {dep!r}: finally steps run after all other steps",
                        dpath,
                        rank=RANK_STRUCTURE,
                    )
                else:
                    ok.append(dep)
                    dep_paths.setdefault((sid, dep), dpath)
            self.deps[sid] = ok
        for cycle in find_cycles(self.deps):
            nxt = cycle[1] if len(cycle) > 1 else cycle[0]
            self.add(
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]), dep_paths[(cycle[0], nxt)], rank=RANK_STRUCTURE
            )
        self.ancestors = ancestors(self.deps)
        for path, step in self.steps:
            if "tool_to_call" in step and "uses" in step:
                self.add(
                    "a step either calls a tool (tool_to_call) or uses a pattern (uses), not both",
                    (*path, "uses"),
                    key=True,
                    rank=RANK_STRUCTURE,
                )
            if "with" in step and "uses" not in step:
                self.add(
                    "'with' passes inputs to a pattern or workflow, but this step has no 'uses'",
                    (*path, "with"),
                    key=True,
                    rank=RANK_STRUCTURE,
                )
            cond = step.get("if")
            if isinstance(cond, str) and not _has_syntax(cond):
                self.add(
                    f"'if' is the plain string {cond!r}, not a template: write \"{{{{ expression }}}}\" or a boolean",
                    (*path, "if"),
                    rank=RANK_STRUCTURE,
                    severity="warning",
                )
            if "max_parallel" in step and "for_each" not in step:
                self.add(
                    "max_parallel has no effect without for_each",
                    (*path, "max_parallel"),
                    key=True,
                    rank=RANK_STRUCTURE,
                    severity="warning",
                )

    # ------------------------------------------------------------------ agents

    def agents(self) -> None:
        known: list[tuple[str, str | None, frozenset[str]]] = []
        declared = self.data.get("agents")
        for a in declared if isinstance(declared, list) else ():
            if isinstance(a, dict) and isinstance(a.get("id"), str):
                caps = a.get("capabilities")
                caps = caps if isinstance(caps, list) else []
                role = a.get("role") if isinstance(a.get("role"), str) else None
                known.append((a["id"], role, frozenset(c for c in caps if isinstance(c, str))))
        for spec in self.registry:
            known.append((spec.id, spec.role, frozenset(spec.capabilities)))
        ids = {k[0] for k in known}
        roles = {k[1] for k in known if k[1]}
        where = ": not declared under agents nor in the --agents registry"
        for path, step in self.steps:
            aid = step.get("assigned_agent_id")
            if isinstance(aid, str) and not _has_syntax(aid) and aid not in ids:
                self.add(f"unknown agent {aid!r}{where}{hint(aid, ids)}", (*path, "assigned_agent_id"))
            fallbacks = step.get("fallback_agents")
            for j, fb in enumerate(fallbacks if isinstance(fallbacks, list) else ()):
                if isinstance(fb, str) and not _has_syntax(fb) and fb not in ids:
                    self.add(
                        f"unknown agent {fb!r} in fallback_agents{where}{hint(fb, ids)}", (*path, "fallback_agents", j)
                    )
            if aid is not None:
                continue
            role = step.get("assigned_role")
            caps = step.get("required_capabilities")
            if not isinstance(role, str):
                role = None
            caps = [c for c in caps if isinstance(c, str)] if isinstance(caps, list) else []
            if (role is None and not caps) or _templated(role) or _templated(caps):
                continue
            if any((role is None or r == role) and set(caps) <= c for _, r, c in known):
                continue
            if role is not None and role not in roles:
                self.add(
                    f"no agent has role {role!r}{hint(role, roles)}; declare one under agents or in "
                    "the --agents registry",
                    (*path, "assigned_role"),
                )
                continue
            have = set().union(*(c for _, r, c in known if role is None or r == role))
            missing = [j for j, c in enumerate(caps) if c not in have]
            who = f"with role {role!r} " if role else ""
            if missing:
                for j in missing:
                    self.add(
                        f"no agent {who}has capability {caps[j]!r}{hint(caps[j], have)}",
                        (*path, "required_capabilities", j),
                    )
            else:
                self.add(f"no agent {who}has all of the capabilities {caps}", (*path, "required_capabilities"))

    # ------------------------------------------------------------------ templates

    def _t(self) -> Any:
        if self._templates is None:
            from runner import templates

            self._templates = templates
        return self._templates

    def templates(self) -> None:
        for path, step in self.steps:
            sid = step.get("step_id") if isinstance(step.get("step_id"), str) else None
            fan = "for_each" in step
            for key, value in step.items():
                if key in _NOT_TEMPLATED:
                    continue
                allowed = _ROOTS | {"item", "index"} if fan and key != "for_each" else _ROOTS
                for spath, text in _strings(value, (*path, key)):
                    self._template(text, spath, allowed, sid, path[0] == "finally")
        outputs = self.data.get("outputs")
        if isinstance(outputs, dict):
            for spath, text in _strings(outputs, ("outputs",)):
                self._template(text, spath, _ROOTS, None, True)

    def agent_templates(self) -> list[Problem]:
        agents = self.data.get("agents")
        for i, a in enumerate(agents if isinstance(agents, list) else ()):
            if not isinstance(a, dict):
                continue
            for key in _AGENT_TEMPLATED:
                for spath, text in _strings(a.get(key), ("agents", i, key)):
                    self._template(text, spath, _AGENT_ROOTS, None, False, agent=True)
        return self.problems

    def _template(
        self,
        text: str,
        path: PathT,
        allowed: frozenset[str],
        owner: str | None,
        after_dag: bool,
        *,
        agent: bool = False,
    ) -> None:
        t = self._t()
        bad = t.find_problems(text)
        for msg in bad:
            self.add(msg, path)
        if bad:
            return
        for root in sorted(t.referenced_roots(text) - allowed):
            if root in ("item", "index") and not agent:
                where = "in for_each itself" if path[2:3] == ("for_each",) else "outside for_each"
                msg = f"{root!r} is only defined in a step with for_each (used {where})"
            elif root == "steps" and agent:
                msg = "agent settings cannot use step results (agents start before any step runs)"
            elif agent and root in _ALL_ROOTS:
                msg = f"{root!r} is not available in agent settings (only inputs, secrets, workflow, run)"
            else:
                msg = f"unknown name {root!r} in template{hint(root, _ALL_ROOTS)}; known: " + ", ".join(_ALL_ROOTS)
            self.add(msg, path)
        if "steps" in allowed:
            for ref in sorted(t.referenced_steps(text)):
                self._step_ref(ref, path, owner, after_dag)
        if "inputs" in allowed and self.inputs_known:
            for name in _input_refs(text):
                if name not in self.inputs:
                    declared = (
                        f"; declared: {', '.join(self.inputs)}" if self.inputs else "; the workflow declares no inputs"
                    )
                    self.add(f"template references undeclared input {name!r}{hint(name, self.inputs)}{declared}", path)

    def _step_ref(self, ref: str, path: PathT, owner: str | None, after_dag: bool) -> None:
        if ref not in self.ids:
            self.add(f"template references unknown step {ref!r}{hint(ref, self.ids)}", path)
        elif owner is None:
            return  # outputs may read any step
        elif ref == owner:
            self.add(f"step {owner!r} cannot use its own result (steps.{ref})", path)
        elif after_dag and ref not in self.finally_ids:
            return  # finally steps run after the whole DAG
        elif not after_dag and ref in self.finally_ids:
            self.add(f"step {owner!r} cannot use finally step {ref!r}: finally steps run last", path)
        elif not self.ancestors.has(owner, ref):
            self.add(
                f"template references steps.{ref} but step {owner!r} does not depend on {ref!r} (add it to depends_on)",
                path,
            )

    # ------------------------------------------------------------------ patterns

    def uses(self) -> None:
        from runner.patterns import is_path_ref

        for path, step in self.steps:
            uses = step.get("uses")
            if not isinstance(uses, str) or _has_syntax(uses):
                continue
            target = resolve_uses(uses, self.smap.file)
            if target is None:
                if is_path_ref(uses):
                    msg = f"workflow file {uses!r} not found (relative to {Path(self.smap.file).parent})"
                else:
                    names = known_patterns()
                    msg = f"unknown pattern {uses!r}{hint(uses, names)}; known: " + (", ".join(names) or "none")
                self.add(msg, (*path, "uses"))
                continue
            iface = _interface(str(target), target.stat().st_mtime)
            if isinstance(iface, str):
                self.add(f"cannot use {uses!r}: {iface}", (*path, "uses"))
                continue
            given = step.get("with")
            given = given if isinstance(given, dict) else {}
            for k in given:
                if k not in iface:
                    self.add(
                        f"{uses!r} has no input {k!r}{hint(k, iface)}; inputs: " + (", ".join(iface) or "none"),
                        (*path, "with", k),
                        key=True,
                    )
            for name, sch in iface.items():
                if name not in given and not (isinstance(sch, dict) and "default" in sch):
                    where = (*path, "with") if "with" in step else (*path, "uses")
                    self.add(f"{uses!r} needs input {name!r} (it has no default)", where, key=True)
            if not self.check_inputs:
                continue
            for k, v in given.items():
                sch = iface.get(k)
                if isinstance(sch, dict) and not _templated(v):
                    for msg in _jsonschema_messages(sch, v) or ():
                        self.add(
                            f"input {k!r} of {uses!r} does not match its schema: {msg}",
                            (*path, "with", k),
                            rank=RANK_INPUTS,
                        )

    # ------------------------------------------------------------------ inputs

    def input_defaults(self) -> None:
        for name, sch in self.inputs.items():
            if isinstance(sch, dict) and "default" in sch:
                for msg in _jsonschema_messages(sch, sch["default"]) or ():
                    self.add(
                        f"default of input {name!r} does not match its schema: {msg}",
                        ("inputs", name, "default"),
                        rank=RANK_INPUTS,
                    )
