"""The checks of what goes into a workflow: ``uses:``/``workflow:`` callees and their inputs.

A ``uses:`` names a pattern or a file that must exist; the ``with:`` of a call (``uses:``
or an inline ``workflow:``) must match the callee's inputs: no unknown key, every input
without a default given, literal values valid against their schemas. A workflow's own
input schemas must be safe (no remote references, patterns that compile) and their
defaults valid. jsonschema is imported only when a value is not certainly valid. A mixin
of :class:`runner.load.checks.WorkflowChecks`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import WorkflowInvalid
from runner.load.checks_templates import _has_syntax, _templated
from runner.load.schema import fast_schema_valid
from runner.load.yaml import PathT, SourceMap, load_yaml, read_text
from runner.model import AgentSpec
from runner.model.problems import RANK_INPUTS, RANK_REFERENCE, RANK_STRUCTURE, hint
from runner.model.user_schema import schema_problems as user_schema_problems
from runner.model.user_schema import validation_messages

__all__ = ["InputChecks", "known_patterns", "resolve_uses"]


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


class InputChecks:
    """Call and input checks, mixed into :class:`~runner.load.checks.WorkflowChecks` (its state below)."""

    data: dict[str, Any]
    smap: SourceMap
    steps: list[tuple[PathT, dict[str, Any]]]
    inputs: dict[str, Any]
    check_inputs: bool

    if TYPE_CHECKING:

        def add(
            self, message: str, path: PathT, *, key: bool = False, rank: int = RANK_REFERENCE, severity: str = "error"
        ) -> None: ...

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
