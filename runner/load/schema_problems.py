"""jsonschema's errors → positioned problems with messages written for people.

A fast exact check (:func:`runner.load.schema.fast_valid`) answers for valid documents;
jsonschema is imported and run only when something is wrong, and then, in long step
lists, only over the steps that fail the fast check. Each error is explained in the
workflow's terms ("unknown key 'dependson' (did you mean 'depends_on'?)", "agent 'x' with
transport 'stdio' needs 'command'") and positioned on the YAML node at fault.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from runner.errors import Problem
from runner.load.schema import fast_valid, schema_validator
from runner.load.yaml import PathT, SourceMap
from runner.model.problems import RANK_SCHEMA, Hinter, hint

__all__ = ["UNKNOWN_KEYS_MAX", "schema_problems", "type_name"]

UNKNOWN_KEYS_MAX = 1000  # unknown keys of one mapping reported one by one; the rest as a count


def schema_problems(name: str, data: Any, smap: SourceMap) -> list[Problem]:
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
        # at one depth: what is missing or wrong before what is extra (a file of 20,000
        # unknown keys must still say "missing 'name'" first)
        return (len(path), e.validator in WEAK_MATCHES, e.validator == "additionalProperties", smap.position(path))

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


def type_name(value: Any) -> str:
    """The JSON name of a value's type, as schema messages say it."""
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


# Keys of other workflow systems (GitHub Actions, Argo, Prefect...) and what runner calls them.
_SYNONYMS = {
    "needs": "depends_on", "dependencies": "depends_on", "depends": "depends_on", "after": "depends_on",
    "id": "step_id", "name": "step_id", "tool": "tool_to_call", "call": "tool_to_call", "run": "tool_to_call",
    "args": "tool_arguments", "arguments": "tool_arguments", "params": "tool_arguments", "when": "if",
    "condition": "if", "agent": "assigned_agent_id", "agent_id": "assigned_agent_id", "role": "assigned_role",
    "capabilities": "required_capabilities", "loop": "for_each", "foreach": "for_each", "matrix": "for_each",
    "retries": "retry", "continue-on-error": "continue_on_error", "ignore_errors": "continue_on_error",
    "parallelism": "max_parallel", "fallback": "fallback_agents", "jobs": "steps", "tasks": "steps",
    "on_exit": "finally", "always": "finally", "params_schema": "inputs", "parameters": "inputs",
}  # fmt: skip


def _preview_key(key: str) -> str:
    """A key as a message quotes it, cut short: a 300,000-character key is not a message."""
    return repr(key) if len(key) <= 80 else repr(key[:77] + "...")


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
    "step_id": "use letters, digits, '_' and '-', starting with a letter",
    "id": "use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
    "module": "use 'package.module:attribute'",
}


def _explain(e: Any, smap: SourceMap, root: Any, remap: Callable[[PathT], PathT]) -> list[Problem]:
    """One jsonschema error → positioned problems with messages for people."""
    path: PathT = remap(tuple(e.absolute_path))
    v = e.validator
    inst = e.instance
    if v == "additionalProperties" and e.validator_value is False and isinstance(inst, dict):
        allowed = e.schema.get("properties", {})
        hinter = Hinter(allowed, synonyms=_SYNONYMS)
        unknown = [k for k in inst if k not in allowed]
        out = [
            smap.problem(f"unknown key {_preview_key(k)}{hinter(k)}", (*path, k), key=True, rank=RANK_SCHEMA)
            for k in unknown[:UNKNOWN_KEYS_MAX]
        ]
        if len(unknown) > UNKNOWN_KEYS_MAX:  # a generated file: say how many, not each
            k = unknown[UNKNOWN_KEYS_MAX]
            msg = f"and {len(unknown) - UNKNOWN_KEYS_MAX:,} more unknown keys in this mapping, from {_preview_key(k)} on"
            out.append(smap.problem(msg, (*path, k), key=True, rank=RANK_SCHEMA))
        return out
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
    if v == "anyOf" and e.context and {"$ref": "#/$defs/template"} in e.validator_value:
        # A field that may also be a template: explain the literal form, then say so.
        alt = e.validator_value.index({"$ref": "#/$defs/template"})
        literal = [c for c in e.context if c.relative_schema_path and c.relative_schema_path[0] != alt]
        if literal:
            from jsonschema.exceptions import best_match

            # One failing literal branch is explained as itself (its own anyOf, a
            # duration, keeps its message); best_match would dive into its parts.
            out = _explain(literal[0] if len(literal) == 1 else best_match(literal), smap, root, remap)
            return [dataclasses.replace(p, message=f"{p.message} (or a template: \"{{{{ ... }}}}\")") for p in out]
    if v in ("anyOf", "oneOf") and e.schema.get("title") == "duration":
        msg = f"invalid duration {_preview(inst)}: use e.g. 500ms, 30s, 10m, 1h or a number of seconds"
        return [smap.problem(msg, path, rank=RANK_SCHEMA)]
    if v in ("anyOf", "oneOf") and e.context:
        from jsonschema.exceptions import best_match

        return _explain(best_match(e.context), smap, root, remap)
    if v == "type":
        types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        msg = f"expected {' or '.join(types)}, got {type_name(inst)} {_preview(inst)}"
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
