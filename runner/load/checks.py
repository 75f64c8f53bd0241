"""The checks past the schema: structure, agents, templates, patterns and input values.

:class:`WorkflowChecks` works on whatever a loaded document holds, schema-valid or not,
and skips anything of the wrong shape (the schema layer has already reported it), so a
single run reports every problem. Nothing here renders a template: templates are
analysed statically by :mod:`runner.template.analysis`, imported on first use together
with Jinja, and jsonschema only when a value is not certainly valid.

By role: this module holds the checks' state and entry point, the structure (ids,
``depends_on``, cycles, what a step is) and the agents steps ask for;
:mod:`runner.load.checks_templates` the templates; :mod:`runner.load.checks_inputs` the
calls (``uses:``, ``workflow:``, ``with:``) and input schemas and defaults.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from runner.errors import Problem
from runner.load.checks_inputs import InputChecks, known_patterns, resolve_uses
from runner.load.checks_templates import TemplateChecks, _has_syntax, _templated
from runner.load.yaml import PathT, SourceMap
from runner.model import AgentSpec
from runner.model.problems import RANK_REFERENCE, RANK_STRUCTURE, Hinter, hint

__all__ = ["WorkflowChecks", "known_patterns", "resolve_uses"]

# After every other reference problem (a workflow without agents is often a draft: its own
# problems come first), before input values.
RANK_NO_AGENTS = RANK_REFERENCE + 5


class WorkflowChecks(TemplateChecks, InputChecks):
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
