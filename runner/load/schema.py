"""runner's JSON Schemas: the files, cached jsonschema validators, and a fast exact check.

jsonschema is the one source of schema error messages, but it is slow on big documents
(a 10,000-step workflow takes seconds) and costly to import. Most documents are valid,
so a small compiler turns the subset of JSON Schema that runner's own schemas use into
plain closures that answer exactly "valid" or "don't know" (:func:`fast_valid`,
:func:`fast_schema_valid` for users' input schemas). Only when the answer is not "valid"
is jsonschema imported and run, and then it explains what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.model.regex import RegexError, compile_regex

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = [
    "fast_schema_valid",
    "fast_valid",
    "schema",
    "schema_dir",
    "schema_validator",
]


def schema_dir() -> Path:
    """Where the JSON Schemas live: shipped inside the package, else the repository's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "schemas", here / "_schemas", here.parent / "schemas"):
        if (candidate / "workflow.schema.json").is_file():
            return candidate
    raise FileNotFoundError("runner's JSON Schemas are missing (schemas/workflow.schema.json)")


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    d = schema_dir()
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(d.glob("*.schema.json"))}


def schema(name: str) -> dict[str, Any]:
    """One schema by file name, e.g. ``schema("workflow.schema.json")`` (do not mutate)."""
    return _schemas()[name]


@cache
def schema_validator(name: str) -> Draft202012Validator:
    """A compiled, cached validator for one of runner's schemas.

    The schemas reference each other by relative ``$ref``; they are registered under
    their ``$id``s (and the metaschemas jsonschema ships), so nothing is fetched.
    ``step.schema.json`` is inlined where it is referenced as a whole: validating
    10,000 steps through a ``$ref`` lookup each costs about a second here.
    """
    from jsonschema import Draft202012Validator
    from jsonschema_specifications import REGISTRY as SPECS
    from referencing import Resource

    docs = _schemas()
    registry = SPECS.with_resources((s["$id"], Resource.from_contents(s)) for s in docs.values()).crawl()
    root = docs[name]
    step = docs["step.schema.json"]
    if name != "step.schema.json":
        root = _inline_step(root, step)
    return Draft202012Validator(root, registry=registry)


def _inline_step(node: Any, step: dict[str, Any]) -> Any:
    """Copy of ``node`` with ``{"$ref": "step.schema.json"}`` replaced by the step schema."""
    if isinstance(node, dict):
        if node.get("$ref") == "step.schema.json" and len(node) == 1:
            return step
        return {k: _inline_step(v, step) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_step(v, step) for v in node]
    return node


class _Unsure(Exception):
    """The fast check cannot decide; jsonschema must."""


class _Uncompilable(Exception):
    """A schema uses a keyword the fast check does not implement."""


_Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_TYPES: dict[str, _Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "integer": _is_integer,
    "number": _is_number,
}


class _FastCompiler:
    """Compiles the subset of JSON Schema runner's own schemas use into plain closures.

    A compiled check answers exactly "valid or not" or raises ``_Unsure``; a schema
    with any other keyword raises ``_Uncompilable`` and is left to jsonschema. Only
    "valid" is acted upon (jsonschema is skipped); anything else runs jsonschema, which
    stays the one source of error messages.
    """

    def __init__(self, docs: dict[str, dict[str, Any]], *, user: bool = False) -> None:
        self.user = user  # a user's schema: its patterns run on RE2, never on backtracking `re`
        self.docs = docs
        self.by_id = {d["$id"]: d for d in docs.values()}
        self.cache: dict[int, _Check] = {}

    def compile(self, node: Any, base: str) -> _Check:
        if node is True or node == {}:
            return lambda x: True
        if node is False:
            return lambda x: False
        if not isinstance(node, dict):
            raise _Uncompilable(repr(node))
        hit = self.cache.get(id(node))
        if hit is not None:
            return hit
        checks: list[_Check] = []

        def check(x: Any) -> bool:
            for c in checks:
                if not c(x):
                    return False
            return True

        # Cached before its keywords are compiled: the schemas are recursive (a step's
        # ``workflow:`` holds steps), and a ``$ref`` back to this node must find it.
        self.cache[id(node)] = check
        compiled = (self._keyword(k, v, node, base) for k, v in node.items() if k not in _ANNOTATIONS)
        checks += [c for c in compiled if c is not None]
        return check

    def _ref(self, ref: str, base: str) -> _Check:
        uri, _, pointer = ref.partition("#")
        if not uri:
            uri = base
        elif "://" not in uri:
            uri = base.rsplit("/", 1)[0] + "/" + uri
        doc = self.by_id.get(uri)
        if doc is None:
            if uri.rstrip("/") == _META_URI and not pointer.strip("/"):
                return _meta_valid
            raise _Uncompilable(ref)  # user schemas' own $refs are left to jsonschema
        node: Any = doc
        for part in filter(None, pointer.split("/")):
            node = node[part]
        return self.compile(node, uri)

    def _keyword(self, k: str, v: Any, node: dict[str, Any], base: str) -> _Check | None:  # noqa: C901, PLR0911, PLR0912
        if k == "type":
            preds = [_TYPES[t] for t in (v if isinstance(v, list) else [v])]
            return lambda x: any(p(x) for p in preds)
        if k == "$ref":
            return self._ref(v, base)
        if k == "properties":
            props = [(name, self.compile(sub, base)) for name, sub in v.items()]

            def properties(x: Any) -> bool:
                if isinstance(x, dict):
                    for name, c in props:
                        if name in x and not c(x[name]):
                            return False
                return True

            return properties
        if k == "additionalProperties":
            if "patternProperties" in node:
                raise _Uncompilable(k)
            known = frozenset(node.get("properties", ()))
            sub = self.compile(v, base)

            def additional(x: Any) -> bool:
                if isinstance(x, dict):
                    for name, val in x.items():
                        if name not in known and not sub(val):
                            return False
                return True

            return additional
        if k == "required":
            names = tuple(v)
            return lambda x: not isinstance(x, dict) or all(n in x for n in names)
        if k == "items":
            sub = self.compile(v, base)
            return lambda x: not isinstance(x, list) or all(sub(i) for i in x)
        if k == "minItems":
            return lambda x: not isinstance(x, list) or len(x) >= v
        if k == "uniqueItems":
            if not v:
                return None

            def unique(x: Any) -> bool:
                if not isinstance(x, list):
                    return True
                if all(type(i) is str for i in x):
                    return len(set(x)) == len(x)
                raise _Unsure

            return unique
        if k == "pattern":
            if self.user:
                try:
                    urx = compile_regex(v)
                except RegexError:
                    raise _Uncompilable(k) from None
                return lambda x: not isinstance(x, str) or urx.search(x) is not None
            rx = re.compile(v)
            return lambda x: not isinstance(x, str) or rx.search(x) is not None
        if k == "minLength":
            return lambda x: not isinstance(x, str) or len(x) >= v
        if k == "minimum":
            return lambda x: not _is_number(x) or x >= v
        if k == "maximum":
            return lambda x: not _is_number(x) or x <= v
        if k in ("enum", "const"):
            values = v if k == "enum" else [v]
            if all(isinstance(e, str) for e in values):
                allowed = frozenset(values)
                return lambda x: isinstance(x, str) and x in allowed
            return lambda x: any(_json_equal(x, e) for e in values)
        if k in ("maxLength", "maxItems"):
            kind = str if k == "maxLength" else list
            return lambda x: not isinstance(x, kind) or len(x) <= v
        if k == "exclusiveMinimum":
            return lambda x: not _is_number(x) or x > v
        if k == "exclusiveMaximum":
            return lambda x: not _is_number(x) or x < v
        if k in ("format", "deprecated", "readOnly", "writeOnly"):
            return None  # annotations in draft 2020-12 (format is not asserted by default)
        if k == "anyOf":
            subs = [self.compile(s, base) for s in v]
            return lambda x: any(c(x) for c in subs)
        if k == "allOf":
            subs = [self.compile(s, base) for s in v]
            return lambda x: all(c(x) for c in subs)
        if k == "not":
            if v != {}:
                raise _Uncompilable(k)
            return lambda x: False
        if k == "propertyNames":
            sub = self.compile(v, base)
            return lambda x: not isinstance(x, dict) or all(sub(n) for n in x)
        if k == "if":
            cond = self.compile(v, base)
            then = self.compile(node.get("then", True), base)
            other = self.compile(node.get("else", True), base)
            return lambda x: then(x) if cond(x) else other(x)
        if k in ("then", "else"):
            return None  # evaluated by "if"
        raise _Uncompilable(k)


_META_URI = "https://json-schema.org/draft/2020-12/schema"
_SIMPLE_TYPES = frozenset(_TYPES)
_META_STRINGS = frozenset({"title", "description", "format", "pattern", "contentEncoding", "contentMediaType"})
_META_COUNTS = frozenset(
    {"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
     "minContains", "maxContains"}
)  # fmt: skip
_META_NUMBERS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_META_BOOLS = frozenset({"uniqueItems", "deprecated", "readOnly", "writeOnly"})
_META_SCHEMA = frozenset(
    {"items", "additionalProperties", "not", "propertyNames", "contains", "if", "then", "else",
     "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
)  # fmt: skip
_META_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_META_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_META_ANY = frozenset({"default", "const"})


def _meta_valid(s: Any) -> bool:
    """Exactly whether ``s`` is a valid draft 2020-12 schema, for the common keywords.

    Raises ``_Unsure`` on keywords whose rules it does not implement (``$``-keywords,
    deprecated ones), so such schemas are checked by jsonschema's metaschema instead.
    """
    if isinstance(s, bool):
        return True
    if not isinstance(s, dict):
        return False
    for k, v in s.items():
        if k == "type":
            if isinstance(v, str):
                ok = v in _SIMPLE_TYPES
            else:
                ok = (
                    isinstance(v, list) and len(v) >= 1
                    and all(isinstance(t, str) and t in _SIMPLE_TYPES for t in v)
                    and len(set(v)) == len(v)
                )  # fmt: skip
        elif k in _META_ANY:
            ok = True
        elif k in _META_STRINGS:
            ok = isinstance(v, str)
        elif k in _META_COUNTS:
            ok = _is_integer(v) and v >= 0
        elif k in _META_NUMBERS:
            ok = _is_number(v)
        elif k == "multipleOf":
            ok = _is_number(v) and v > 0
        elif k in _META_BOOLS:
            ok = isinstance(v, bool)
        elif k in ("enum", "examples"):
            ok = isinstance(v, list)
        elif k == "required":
            ok = isinstance(v, list) and all(type(i) is str for i in v) and len(set(v)) == len(v)
        elif k == "dependentRequired":
            ok = isinstance(v, dict) and all(
                isinstance(r, list) and all(type(i) is str for i in r) and len(set(r)) == len(r) for r in v.values()
            )
        elif k in _META_SCHEMA:
            ok = _meta_valid(v)
        elif k in _META_SCHEMA_MAPS:
            ok = isinstance(v, dict) and all(_meta_valid(sub) for sub in v.values())
        elif k in _META_SCHEMA_LISTS:
            ok = isinstance(v, list) and len(v) >= 1 and all(_meta_valid(sub) for sub in v)
        elif k.startswith("$") or k in ("definitions", "dependencies"):
            raise _Unsure
        else:
            ok = True  # unknown keywords are allowed (and ignored) by draft 2020-12
        if not ok:
            return False
    return True


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality of scalars as jsonschema sees it (True is not 1); containers: unsure."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float, str)) and isinstance(b, (int, float, str)):
        return a == b and isinstance(a, str) == isinstance(b, str)
    if a is None or b is None:
        return a is b
    raise _Unsure


def fast_schema_valid(sch: Any, instance: Any) -> bool:
    """True only if ``instance`` is certainly valid against a (user's) JSON Schema.

    For input schemas: the common keywords are checked exactly here, and anything else
    (``$ref``, ``oneOf``, ``format`` assertions...) answers False, "ask jsonschema".
    """
    try:
        if not _meta_valid(sch):
            return False
        return _FastCompiler({}, user=True).compile(sch, "")(instance)
    except (_Unsure, _Uncompilable):
        return False


@cache
def _fast_check(name: str) -> _Check | None:
    docs = _schemas()
    try:
        return _FastCompiler(docs).compile(docs[name], docs[name]["$id"])
    except _Uncompilable:
        return None


def fast_valid(name: str, instance: Any) -> bool:
    """True only if ``instance`` is certainly valid against one of runner's schemas.

    About thirty times faster than jsonschema on a 10,000-step workflow; False means
    "ask jsonschema" (which then also explains what is wrong).
    """
    check = _fast_check(name)
    if check is None:
        return False
    try:
        return check(instance)
    except _Unsure:
        return False
