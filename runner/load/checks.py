"""The checks past the schema: structure, agents, templates, patterns and input values.

:class:`WorkflowChecks` works on whatever a loaded document holds, schema-valid or not,
and skips anything of the wrong shape (the schema layer has already reported it), so a
single run reports every problem. Nothing here renders a template: templates are
analysed statically by :mod:`runner.template.analysis`, imported on first use together
with Jinja, and jsonschema only when a value is not certainly valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import Problem, WorkflowInvalid
from runner.load.schema import fast_schema_valid
from runner.load.yaml import PathT, SourceMap, load_yaml, read_text
from runner.model import AgentSpec
from runner.model.problems import RANK_INPUTS, RANK_REFERENCE, RANK_STRUCTURE, Hinter, hint
from runner.model.spec import STEP_ATTRIBUTES
from runner.model.user_schema import schema_problems as user_schema_problems
from runner.model.user_schema import validation_messages

__all__ = ["WorkflowChecks", "known_patterns", "resolve_uses"]

# After every other reference problem (a workflow without agents is often a draft: its own
# problems come first), before input values.
RANK_NO_AGENTS = RANK_REFERENCE + 5


_ROOTS = frozenset({"inputs", "steps", "run", "workflow", "secrets", "agents"})
_ALL_ROOTS = ("inputs", "steps", "item", "index", "previous", "agents", "run", "workflow", "secrets")
_ITEM_ROOTS = frozenset({"item", "index", "previous"})
# `timeout` and `retry` are fixed before the run starts (rendered with the selection).
_FIXED_ROOTS = frozenset({"inputs", "workflow", "agents"})
_FIXED_KEYS = frozenset({"timeout", "retry"})
_AGENT_ROOTS = frozenset({"inputs", "secrets", "workflow", "run"})
# `workflow:` (an inline callee) has its own inputs and steps: it is checked as a workflow of its own
_NOT_TEMPLATED = frozenset({"step_id", "description", "depends_on", "uses", "workflow"})
_AGENT_TEMPLATED = ("command", "args", "env", "cwd", "url", "headers")
_INPUT_REF = re.compile(r"(?<![\w.])inputs\s*(?:\.\s*([A-Za-z_]\w*)\b(?!\s*\()|\[\s*(['\"])([^'\"]*)\2\s*\])")
_CODE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)


def _has_syntax(s: str) -> bool:
    """``runner.template.syntax.has_syntax``, repeated so a file without templates never imports Jinja."""
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
    from runner.load.patterns import list_patterns

    return list_patterns()


def resolve_uses(uses: str, file: str) -> Path | None:
    """The file a ``uses:`` names (``runner.load.patterns`` rules, shared with the engine), or None."""
    from runner.load.patterns import resolve_uses as _resolve

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
    """Why ``value`` fails the JSON Schema ``sch`` (None: the schema itself is invalid or
    unsafe, which :meth:`WorkflowChecks.input_schemas` reports)."""
    if fast_schema_valid(sch, value):
        return []
    from jsonschema import Draft202012Validator

    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    if not meta.is_valid(sch) or user_schema_problems(sch):
        return None
    return validation_messages(sch, value)


class WorkflowChecks:
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
        self._analysis: ModuleType | None = None
        self._id_hinter: Hinter | None = None

    def attr_hint(self, word: str) -> str:
        """Did-you-mean among a step's attributes; ``outputs`` (a pattern's word) is ``result``."""
        if word in ("output", "outputs", "results", "value", "data"):
            return " (did you mean 'result'?)"
        return hint(word, STEP_ATTRIBUTES)

    def id_hint(self, word: str) -> str:
        """Did-you-mean among the step ids: one shared, bounded :class:`Hinter`."""
        if self._id_hinter is None:
            self._id_hinter = Hinter(self.ids)
        return self._id_hinter(word)

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
        self.input_schemas()
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
        from runner.core.dag import ancestors, find_cycles

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
        owned = {path for path, _step, _sid in self._owned()}
        for path, step in self.steps:  # a duplicate's own depends_on is still checked (every error at once)
            raw = step.get("depends_on")
            if path in owned or not isinstance(raw, list):
                continue
            for j, dep in enumerate(raw):
                if isinstance(dep, str) and dep not in self.ids:
                    self.add(
                        f"unknown step {dep!r} in depends_on{self.id_hint(dep)}",
                        (*path, "depends_on", j),
                        rank=RANK_STRUCTURE,
                    )
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
                    self.add(f"unknown step {dep!r} in depends_on{self.id_hint(dep)}", dpath, rank=RANK_STRUCTURE)
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
            kinds = [k for k in ("tool_to_call", "uses", "workflow") if k in step]
            if len(kinds) > 1:
                self.add(
                    "a step either calls a tool (tool_to_call) or uses a pattern (uses) or runs a workflow "
                    f"written in place (workflow), one of them: this one has {' and '.join(kinds)}",
                    (*path, kinds[1]),
                    key=True,
                    rank=RANK_STRUCTURE,
                )
            if "with" in step and "uses" not in step and "workflow" not in step:
                self.add(
                    "'with' passes inputs to a pattern or workflow, but this step has no 'uses' nor 'workflow'",
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
            self._for_each(step.get("for_each"), (*path, "for_each"))
            if "max_parallel" in step and "for_each" not in step:
                self.add(
                    "max_parallel has no effect without for_each",
                    (*path, "max_parallel"),
                    key=True,
                    rank=RANK_STRUCTURE,
                    severity="warning",
                )

    def _no_agents(self) -> None:
        """Steps that need an agent in a workflow that has none: one problem, at the first."""
        selectors = ("assigned_agent_id", "assigned_role", "required_capabilities")
        # a step with a selector is judged by it (an unknown role is its own problem; a
        # templated one is a sub-workflow's parameter, filled by the workflow using it)
        needy = [
            (path, st)
            for path, st in self.steps
            if "uses" not in st and "workflow" not in st and not any(k in st for k in selectors)
        ]
        if not needy:
            return
        path, step = needy[0]
        sid = step.get("step_id", "?")
        what = f"calls tool {step['tool_to_call']!r}" if isinstance(step.get("tool_to_call"), str) else "needs an agent"
        others = f" (and {len(needy) - 1} more step(s))" if len(needy) > 1 else ""
        self.add(
            f"step {sid!r} {what}{others} but there is no agent to run it: the workflow declares no agents "
            "(add an agents: list) and no --agents registry was given",
            (*path, "tool_to_call") if "tool_to_call" in step else path,
            rank=RANK_NO_AGENTS,
        )

    def _for_each(self, value: Any, path: PathT) -> None:
        """A ``for_each`` whose value is known now must be a list (a string or a mapping
        would iterate its characters or keys: never what was meant)."""
        if isinstance(value, str) and not _has_syntax(value):
            self.add(
                f"for_each is the plain string {value[:60]!r}, not a list: write a YAML list, or a template "
                "giving one (\"{{ steps.x.result }}\")",
                path,
                rank=RANK_STRUCTURE,
            )
        elif isinstance(value, str):
            known, const = self._t().lone_constant(value)
            if known and not isinstance(const, (list, tuple)):
                kind = {str: "a string", dict: "a mapping", bool: "a boolean", int: "a number", float: "a number"}
                what = kind.get(type(const), "not a list") if const is not None else "null"
                self.add(f"for_each must give a list; {value.strip()[:60]!r} is always {what}", path, rank=RANK_STRUCTURE)

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
        if not known:
            self._no_agents()
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

    def _t(self) -> ModuleType:
        """:mod:`runner.template.analysis`, imported (with Jinja) when a template is met."""
        if self._analysis is None:
            from runner.template import analysis as template_analysis

            self._analysis = template_analysis
        return self._analysis

    def templates(self) -> None:
        for path, step in self.steps:
            sid = step.get("step_id") if isinstance(step.get("step_id"), str) else None
            fan = "for_each" in step
            for key, value in step.items():
                if key in _NOT_TEMPLATED:
                    continue
                if key in _FIXED_KEYS:
                    allowed = _FIXED_ROOTS
                else:
                    allowed = _ROOTS | _ITEM_ROOTS if fan and key != "for_each" else _ROOTS
                for spath, text in _strings(value, (*path, key)):
                    self._template(text, spath, allowed, sid, path[0] == "finally")
                    if "previous" in allowed and step.get("max_parallel") != 1:
                        self._previous(text, spath)
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
            if allowed is _FIXED_ROOTS and root in _ALL_ROOTS:
                field = ".".join(str(p) for p in path[2:4])
                msg = f"{field} is fixed before the run starts: it may use inputs, workflow and agents, not {root!r}"
            elif root in _ITEM_ROOTS and not agent:
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
            for ref, attr in sorted(t.referenced_step_attributes(text)):
                if attr not in STEP_ATTRIBUTES:
                    self.add(
                        f"steps.{ref}.{attr}: a step has no attribute {attr!r}{self.attr_hint(attr)}; "
                        f"it has: {', '.join(STEP_ATTRIBUTES)}",
                        path,
                    )
        if "inputs" in allowed and self.inputs_known:
            for name in _input_refs(text):
                if name not in self.inputs:
                    declared = (
                        f"; declared: {', '.join(self.inputs)}" if self.inputs else "; the workflow declares no inputs"
                    )
                    self.add(f"template references undeclared input {name!r}{hint(name, self.inputs)}{declared}", path)

    def _previous(self, text: str, path: PathT) -> None:
        """``previous`` is the result of the item before, which has finished only when
        items run one at a time."""
        if "previous" in self._t().referenced_roots(text):
            self.add(
                "'previous' (the result of the item before) needs max_parallel: 1 on this step: "
                "items running in parallel have no item before them that has finished",
                path,
            )

    def _step_ref(self, ref: str, path: PathT, owner: str | None, after_dag: bool) -> None:
        if ref not in self.ids:
            self.add(f"template references unknown step {ref!r}{self.id_hint(ref)}", path)
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
        from runner.load.patterns import is_path_ref, uses_problem

        for path, step in self.steps:
            uses = step.get("uses")
            if not isinstance(uses, str) or _has_syntax(uses):
                continue
            bad = uses_problem(uses)
            if bad:
                self.add(bad, (*path, "uses"))
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
            self._with(path, step, repr(uses), iface)
        for path, step in self.steps:
            body = step.get("workflow")
            if isinstance(body, dict) and "uses" not in step:
                inputs = body.get("inputs")
                self._with(path, step, "the inline workflow", inputs if isinstance(inputs, dict) else {})

    def _with(self, path: PathT, step: dict[str, Any], callee: str, iface: dict[str, Any]) -> None:
        """``with:`` against the callee's inputs, the same for ``uses:`` and ``workflow:``:
        no unknown key, every input without a default given, literal values valid."""
        given = step.get("with")
        given = given if isinstance(given, dict) else {}
        for k in given:
            if k not in iface:
                self.add(
                    f"{callee} has no input {k!r}{hint(k, iface)}; inputs: " + (", ".join(iface) or "none"),
                    (*path, "with", k),
                    key=True,
                )
        for name, sch in iface.items():
            if name not in given and not (isinstance(sch, dict) and "default" in sch):
                where = (*path, "with") if "with" in step else (*path, "uses" if "uses" in step else "workflow")
                self.add(f"{callee} needs input {name!r} (it has no default)", where, key=True)
        if not self.check_inputs:
            return
        for k, v in given.items():
            sch = iface.get(k)
            if isinstance(sch, dict) and not _templated(v):
                for msg in _jsonschema_messages(sch, v) or ():
                    self.add(
                        f"input {k!r} of {callee} does not match its schema: {msg}",
                        (*path, "with", k),
                        rank=RANK_INPUTS,
                    )

    def inline_bodies(self) -> Iterator[tuple[PathT, dict[str, Any]]]:
        """Each step's inline ``workflow:`` mapping, with the step's path."""
        for path, step in self.steps:
            body = step.get("workflow")
            if isinstance(body, dict):
                yield path, body

    def declared_agents(self) -> list[AgentSpec]:
        """The agents this document declares, as far as an inline callee's checks need them."""
        out = []
        declared = self.data.get("agents")
        for a in declared if isinstance(declared, list) else ():
            if isinstance(a, dict) and isinstance(a.get("id"), str):
                caps = a.get("capabilities")
                caps = tuple(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else ()
                role = a.get("role") if isinstance(a.get("role"), str) else None
                out.append(AgentSpec(id=a["id"], role=role, capabilities=caps))
        return out

    # ------------------------------------------------------------------ inputs

    def input_schemas(self) -> None:
        """An input's schema may only reference itself and its patterns must compile:
        a schema that would fetch a URL, read a file or hang on a pattern is refused."""
        for name, sch in self.inputs.items():
            for where, msg in user_schema_problems(sch):
                self.add(f"schema of input {name!r}: {msg}", ("inputs", name, *where), rank=RANK_STRUCTURE)

    def input_defaults(self) -> None:
        for name, sch in self.inputs.items():
            if isinstance(sch, dict) and "default" in sch:
                for msg in _jsonschema_messages(sch, sch["default"]) or ():
                    self.add(
                        f"default of input {name!r} does not match its schema: {msg}",
                        ("inputs", name, "default"),
                        rank=RANK_INPUTS,
                    )
