"""JSON Schemas written by users (workflow inputs, pattern interfaces), checked safely.

A user's schema is data, and validating against it must not reach outside the file or
hang: ``$ref`` may only point inside the schema itself (``#/...``; never a file, a URL
or another registry entry — nothing is ever fetched or read), and ``pattern`` runs on
RE2 (:mod:`runner.model.regex`), so ``'^(a+)+$'`` cannot stall validation. jsonschema is
imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner.model.regex import RegexError, compile_regex

__all__ = ["schema_problems", "validation_messages"]

_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


Where = tuple[str | int, ...]


def _walk(node: Any, where: Where = ()) -> Iterator[tuple[Where, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            if k in ("enum", "const", "default", "examples"):
                continue
            yield from _walk(v, (*where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*where, i))


def schema_problems(sch: Any) -> list[tuple[Where, str]]:
    """What makes a user's schema unsafe or unusable — external or dangling references,
    patterns that do not compile — each with its path inside the schema. Empty when the
    schema can be used."""
    if not isinstance(sch, dict):
        return []
    out: list[tuple[Where, str]] = []
    for where, node in _walk(sch):
        for key in _REF_KEYS:
            ref = node.get(key)
            if isinstance(ref, str) and not ref.startswith("#"):
                msg = f"{key} {ref[:80]!r} points outside the schema (only '#...' references are allowed)"
                out.append(((*where, key), msg))
        pat = node.get("pattern")
        if isinstance(pat, str):
            try:
                compile_regex(pat)
            except RegexError as exc:
                out.append(((*where, "pattern"), str(exc)))
        props = node.get("patternProperties")
        if isinstance(props, dict):
            for p in props:
                try:
                    compile_regex(p)
                except RegexError as exc:
                    out.append(((*where, "patternProperties", p), str(exc)))
    if not out:
        out += _dangling(sch)
    return out


def _dangling(sch: dict[str, Any]) -> list[tuple[Where, str]]:
    """Internal references that resolve to nothing."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(sch))
    out: list[tuple[Where, str]] = []
    for where, node in _walk(sch):
        for key in _REF_KEYS:
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            try:
                if key == "$dynamicRef" and ref.startswith("#") and "/" not in ref:
                    if ref[1:] and not _has_anchor(sch, ref[1:]):
                        raise Unresolvable(ref)
                else:
                    resolver.lookup(ref)
            except Unresolvable:
                out.append(((*where, key), f"{key} {ref[:80]!r} resolves to nothing in this schema"))
            except Exception as exc:  # noqa: BLE001 - referencing raises several kinds for bad pointers
                out.append(((*where, key), f"{key} {ref[:80]!r}: {exc}"))
    return out


def _has_anchor(sch: dict[str, Any], name: str) -> bool:
    return any(node.get("$anchor") == name or node.get("$dynamicAnchor") == name for _, node in _walk(sch))


def validation_messages(sch: Any, value: Any) -> list[str]:
    """Why ``value`` fails the user's schema ``sch``, most relevant first (empty: valid).

    The schema must have passed :func:`schema_problems`; a schema that still cannot be
    applied (a reference cycle) gives one message instead of an exception.
    """
    import jsonschema
    from jsonschema.exceptions import relevance
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    cls = _validator_class()
    try:
        errors = sorted(cls(sch, registry=Registry()).iter_errors(value), key=relevance, reverse=True)
    except (Unresolvable, jsonschema.exceptions.SchemaError) as exc:
        return [f"the schema cannot be applied: {exc}"]
    except RecursionError:
        return ["the schema cannot be applied: its references loop without end"]
    return [_where(e.absolute_path) + e.message for e in errors]


def _where(path: Any) -> str:
    """``$.a[0]: `` for a problem inside the value, empty for one at its root."""
    if not path:
        return ""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) + ": "


_CLASS: list[Any] = []


def _validator_class() -> Any:
    """Draft 2020-12 with ``pattern`` and ``patternProperties`` on RE2."""
    if _CLASS:
        return _CLASS[0]
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import ValidationError

    base = Draft202012Validator.VALIDATORS

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and compile_regex(patrn).search(instance) is None:
            yield ValidationError(f"{instance[:80]!r} does not match {patrn[:80]!r}")

    def pattern_properties(validator: Any, props: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, sub in props.items():
            rx = compile_regex(patrn)
            for k, v in instance.items():
                if rx.search(k):
                    yield from validator.descend(v, sub, path=k, schema_path=patrn)

    assert "pattern" in base and "patternProperties" in base
    cls = validators.extend(Draft202012Validator, {"pattern": pattern, "patternProperties": pattern_properties})
    _CLASS.append(cls)
    return cls
