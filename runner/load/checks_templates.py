"""The template checks of a workflow: every template string of its steps, outputs and agents.

Each template is analysed statically (:mod:`runner.template.analysis`, imported on first
use together with Jinja; nothing is rendered): syntax and sandbox abuse, the names it may
read where it stands (``item`` only under ``for_each``, ``timeout``/``retry`` only what is
fixed before the run, agents only inputs, secrets, workflow and run), the steps it reads
(known, ancestors, not itself, not a ``finally`` step from the DAG), their attributes, and
the inputs it reads (declared). A mixin of :class:`runner.load.checks.WorkflowChecks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runner.errors import Problem
from runner.load.yaml import PathT
from runner.model.problems import RANK_REFERENCE, hint
from runner.model.spec import STEP_ATTRIBUTES

if TYPE_CHECKING:
    from runner.core.dag import AncestorMap

__all__ = ["TemplateChecks"]

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


class TemplateChecks:
    """Template checks, mixed into :class:`~runner.load.checks.WorkflowChecks` (its state below)."""

    data: dict[str, Any]
    steps: list[tuple[PathT, dict[str, Any]]]
    ids: dict[str, PathT]
    finally_ids: set[str]
    ancestors: AncestorMap
    inputs: dict[str, Any]
    inputs_known: bool
    problems: list[Problem]
    _analysis: ModuleType | None

    if TYPE_CHECKING:

        def add(
            self, message: str, path: PathT, *, key: bool = False, rank: int = RANK_REFERENCE, severity: str = "error"
        ) -> None: ...

        def id_hint(self, word: str) -> str: ...

    def attr_hint(self, word: str) -> str:
        """Did-you-mean among a step's attributes; ``outputs`` (a pattern's word) is ``result``."""
        if word in ("output", "outputs", "results", "value", "data"):
            return " (did you mean 'result'?)"
        return hint(word, STEP_ATTRIBUTES)

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
