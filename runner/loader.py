"""YAML → plain values with positions → the frozen workflow model.

``load_yaml`` composes the YAML into a node tree (libyaml when present), converts it to
JSON-like values itself and keeps the tree, so every problem found later — by the JSON
Schema, the DAG checks or the template checks — can point at the exact key or value at
fault (``SourceMap.position``). Positions are looked up lazily by walking the node tree
along the problem's path, so a clean 10,000-step file pays nothing for them.

The conversion is deliberately strict where PyYAML is permissive: only the core tags
(str, int, float, bool, null, seq, map) are accepted, so ``!!python/object/apply`` is an
error rather than code execution; duplicate keys are errors; alias expansion is bounded
(billion laughs fails in milliseconds); implicit timestamps stay strings, because the
workflow model is JSON and a date is text there.

``load_workflow`` = validate (``runner.validation``) + build the model; it raises
``WorkflowInvalid`` carrying every problem at once.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver, Resolver

from runner.errors import Problem, WorkflowInvalid
from runner.model import AgentSpec, RetryPolicy, StepSpec, TransportKind, Workflow, parse_duration

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = [
    "RANK_INPUTS",
    "RANK_REFERENCE",
    "RANK_SCHEMA",
    "RANK_STRUCTURE",
    "RANK_YAML",
    "SourceMap",
    "build_agent",
    "build_workflow",
    "fast_schema_valid",
    "fast_valid",
    "gc_paused",
    "json_path",
    "load_agents_file",
    "load_workflow",
    "load_yaml",
    "read_text",
    "schema",
    "schema_dir",
    "schema_validator",
    "workflow_hash",
]

# Problem.rank: lower is more relevant and is reported first.
RANK_YAML = 0
RANK_SCHEMA = 10
RANK_STRUCTURE = 20
RANK_REFERENCE = 30
RANK_INPUTS = 40

PathT = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = _TAG + "seq", _TAG + "map", _TAG + "merge"
_ALIAS_FLOOR = 100_000  # nodes an alias expansion may produce, at least


class _Resolver(BaseResolver):
    """PyYAML's implicit resolution minus timestamps and ``=``: those stay strings."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in pairs if tag not in (_TAG + "timestamp", _TAG + "value")]
    for first, pairs in Resolver.yaml_implicit_resolvers.items()
}

try:
    from yaml.cyaml import CParser as _Parser

    class _Loader(_Parser, SafeConstructor, _Resolver):  # type: ignore[misc,valid-type]
        """libyaml parser and composer with the strict resolver."""

        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            SafeConstructor.__init__(self)
            _Resolver.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, _Resolver):  # type: ignore[no-redef,misc]
        """Pure-Python parser and composer with the strict resolver."""

        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            _Resolver.__init__(self)


_SCALARS = SafeConstructor()  # only its int/float parsers are used, on scalar nodes


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def json_path(path: Sequence[str | int]) -> str:
    """``("steps", 2, "depends_on", 0)`` → ``$.steps[2].depends_on[0]``."""
    out = ["$"]
    for p in path:
        if isinstance(p, int):
            out.append(f"[{p}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", p):
            out.append("." + p)
        else:
            out.append("[" + json.dumps(p) + "]")
    return "".join(out)


def _mark(node: Node) -> tuple[int, int]:
    m = node.start_mark
    return m.line + 1, m.column + 1


class _AliasBomb(Exception):
    pass


class _Converter:
    """Node tree → plain values; collects tag and duplicate-key problems as it goes."""

    def __init__(self, smap: SourceMap, limit: int) -> None:
        self.smap = smap
        self.problems: list[Problem] = []
        self.stack: list[str | int] = []
        self.seen: set[int] = set()  # collection nodes already converted once
        self.active: set[int] = set()  # collection nodes being converted (recursion check)
        self.aliasing = 0  # > 0 while converting a node reached a second time (an alias)
        self.expanded = 0
        self.limit = limit
        self.alias_path: PathT = ()  # where the outermost alias being expanded is used

    def _bad(self, node: Node, message: str) -> None:
        line, col = _mark(node)
        self.problems.append(Problem(message, json_path(self.stack), self.smap.file, line, col, rank=RANK_YAML))

    def value(self, node: Node) -> Any:
        if self.aliasing:
            self.expanded += 1
            if self.expanded > self.limit:
                raise _AliasBomb
        tag = node.tag
        if isinstance(node, ScalarNode):
            if tag == _STR:
                return node.value
            return self._scalar(node, tag)
        key = id(node)
        if key in self.seen:
            if key in self.active:
                self._bad(node, "recursive YAML alias (a node contains itself)")
                return None
            if not self.aliasing:
                self.alias_path = tuple(self.stack)
            self.aliasing += 1
            try:
                return self._collection(node, key, tag)
            finally:
                self.aliasing -= 1
        self.seen.add(key)
        return self._collection(node, key, tag)

    def _collection(self, node: Node, key: int, tag: str) -> Any:
        self.active.add(key)
        try:
            if isinstance(node, SequenceNode):
                if tag != _SEQ:
                    self._bad(node, f"unsupported YAML tag {_short_tag(tag)!r}")
                    return None
                out: list[Any] = []
                stack = self.stack
                for i, child in enumerate(node.value):
                    stack.append(i)
                    out.append(self.value(child))
                    stack.pop()
                return out
            if tag != _MAP:
                self._bad(node, f"unsupported YAML tag {_short_tag(tag)!r}")
                return None
            return self._mapping(node)
        finally:
            self.active.discard(key)

    def _mapping(self, node: MappingNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[Node] = []
        stack = self.stack
        for k, v in node.value:
            if not isinstance(k, ScalarNode):
                self._bad(k, "mapping keys must be strings, not a nested mapping or list")
                continue
            if k.tag == _MERGE:
                merges.append(v)
                continue
            if k.tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
                self._bad(k, f"unsupported YAML tag {_short_tag(k.tag)!r}")
                continue
            name = k.value  # keys are text in JSON: `1:`, `on:` and `null:` are the strings
            if name in out:
                stack.append(name)
                self._bad(k, f"duplicate key {name!r} (already defined in this mapping)")
                stack.pop()
                continue
            stack.append(name)
            out[name] = self.value(v)
            stack.pop()
        for m in merges:
            for src in self._merge_sources(m):
                converted = self.value(src)
                if isinstance(converted, dict):
                    for name, val in converted.items():
                        out.setdefault(name, val)
        return out

    def _merge_sources(self, node: Node) -> list[Node]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        self._bad(node, "a merge key '<<' needs a mapping or a list of mappings")
        return []

    def _scalar(self, node: ScalarNode, tag: str) -> Any:
        try:
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return SafeConstructor.bool_values[node.value.lower()]
            if tag == _INT:
                return _SCALARS.construct_yaml_int(node)
            if tag == _FLOAT:
                return _SCALARS.construct_yaml_float(node)
        except (KeyError, ValueError):
            self._bad(node, f"invalid {_short_tag(tag)} value {node.value!r}")
            return None
        self._bad(node, f"unsupported YAML tag {_short_tag(tag)!r}")
        return None


class SourceMap:
    """Positions of a loaded document's keys and values, found by walking its node tree."""

    __slots__ = ("_root", "file")

    def __init__(self, file: str, root: Node | None) -> None:
        self.file = file
        self._root = root

    def position(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the most specific node along ``path``.

        With ``key=True`` and a path ending in a mapping key that exists, the key's own
        position (for "unknown key" problems); else the value's. A path that leaves the
        document (a missing key) stops at the deepest node that exists.
        """
        node = self._root
        if node is None:
            return 1, 1
        key_node: Node | None = None
        for p in path:
            child = self._child(node, p)
            if child is None:
                return _mark(node)
            key_node, node = child
        if key and key_node is not None:
            return _mark(key_node)
        return _mark(node)

    @staticmethod
    def _child(node: Node, p: str | int) -> tuple[Node | None, Node] | None:
        if isinstance(node, SequenceNode):
            if isinstance(p, int) and 0 <= p < len(node.value):
                return None, node.value[p]
            return None
        if not isinstance(node, MappingNode):
            return None
        merges: list[Node] = []
        for k, v in node.value:
            if isinstance(k, ScalarNode):
                if k.tag == _MERGE:
                    merges.append(v)
                elif k.value == p:
                    return k, v
        for m in merges:
            sources = m.value if isinstance(m, SequenceNode) else [m]
            for src in sources:
                found = SourceMap._child(src, p)
                if found is not None:
                    return found
        return None

    def problem(
        self,
        message: str,
        path: Sequence[str | int] = (),
        *,
        key: bool = False,
        rank: int = RANK_STRUCTURE,
        severity: str = "error",
    ) -> Problem:
        """A Problem at ``path``, positioned on its key (``key=True``) or value."""
        line, col = self.position(path, key=key)
        return Problem(message, json_path(path), self.file, line, col, severity, rank)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Composing a 1.5 MB file makes ~400,000 node and mark objects; the collector's
    repeated full scans of that growing heap cost more than the parsing itself (here
    2-3 s of a 10,000-step validation, against ~0.5 s with it paused).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_yaml(text: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain values plus its SourceMap.

    Raises WorkflowInvalid with every YAML-level problem (syntax, tags, duplicate keys,
    alias bombs), each positioned.
    """
    with gc_paused():
        return _load_yaml(text, file)


def _load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or "malformed YAML").removeprefix("but ")
        if exc.context:
            started = exc.context_mark
            where = f" started on line {started.line + 1}" if started and started.line + 1 != line else ""
            what += f" ({exc.context}{where})"
        raise WorkflowInvalid([Problem(f"invalid YAML: {what}", "$", file, line, col, rank=RANK_YAML)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid([Problem(f"invalid YAML: {exc}", "$", file, 1, 1, rank=RANK_YAML)]) from None
    smap = SourceMap(file, root)
    if root is None:
        return None, smap
    conv = _Converter(smap, max(_ALIAS_FLOOR, len(text)))
    try:
        value = conv.value(root)
    except _AliasBomb:
        raise WorkflowInvalid(
            [
                Problem(
                    f"YAML aliases expand to too many nodes (more than {conv.limit:,})",
                    json_path(conv.alias_path),
                    file,
                    *smap.position(conv.alias_path),
                    rank=RANK_YAML,
                )
            ]
        ) from None
    except RecursionError:
        raise WorkflowInvalid(
            [Problem("YAML nesting too deep", json_path(conv.stack[:50]), file, 1, 1, rank=RANK_YAML)]
        ) from None
    if conv.problems:  # a problem inside an anchored node is met again at every alias
        unique: dict[tuple[int, int, str], Problem] = {}
        for p in conv.problems:
            unique.setdefault((p.line, p.col, p.message), p)
        raise WorkflowInvalid(list(unique.values()))
    return value, smap


def read_text(path: str | Path) -> str:
    """A workflow file's text; a missing or unreadable file is WorkflowInvalid (exit 2)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WorkflowInvalid(
            [Problem(f"cannot read workflow file: {path}: {reason}", "$", str(path), 0, 0, rank=RANK_YAML)],
        ) from None


def workflow_hash(text: str) -> str:
    """Content hash of a workflow's exact text (sha256, hex), for versions and resume."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- schemas


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

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
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
        checks = [self._keyword(k, v, node, base) for k, v in node.items() if k not in _ANNOTATIONS]
        checks = [c for c in checks if c is not None]

        def check(x: Any) -> bool:
            for c in checks:
                if not c(x):
                    return False
            return True

        self.cache[id(node)] = check
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
        return _FastCompiler({}).compile(sch, "")(instance)
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


# --------------------------------------------------------------------------- model


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _duration(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def build_agent(data: Mapping[str, Any], source: str | None = None) -> AgentSpec:
    """AgentSpec from one validated agent mapping."""
    return AgentSpec(
        id=data["id"],
        transport=TransportKind(data.get("transport", "stdio")),
        name=data.get("name"),
        role=data.get("role"),
        capabilities=_tuple(data.get("capabilities")),
        description=data.get("description"),
        command=data.get("command"),
        args=_tuple(data.get("args")),
        env=dict(data.get("env") or {}),
        cwd=data.get("cwd"),
        url=data.get("url"),
        headers=dict(data.get("headers") or {}),
        module=data.get("module"),
        max_concurrency=data.get("max_concurrency"),
        required=data.get("required", True),
        timeout=_duration(data.get("timeout")),
        model_type=data.get("model_type"),
        model_version=data.get("model_version"),
        group=data.get("group"),
        source=source,
    )


def _build_step(data: Mapping[str, Any], is_finally: bool) -> StepSpec:
    retry = data.get("retry") or {}
    max_delay = retry.get("max_delay")
    return StepSpec(
        step_id=data["step_id"],
        description=data.get("description"),
        assigned_role=data.get("assigned_role"),
        assigned_agent_id=data.get("assigned_agent_id"),
        required_capabilities=_tuple(data.get("required_capabilities")),
        depends_on=_tuple(data.get("depends_on")),
        tool_to_call=data.get("tool_to_call"),
        tool_arguments=data.get("tool_arguments"),
        condition=_condition(data.get("if")),
        retry=RetryPolicy(
            max_attempts=retry.get("max_attempts", 1),
            delay=parse_duration(retry.get("delay", 0)),
            backoff=float(retry.get("backoff", 1.0)),
            max_delay=None if max_delay is None else parse_duration(max_delay),
            jitter=float(retry.get("jitter", 0.0)),
        ),
        timeout=_duration(data.get("timeout")),
        continue_on_error=data.get("continue_on_error", False),
        for_each=data.get("for_each"),
        max_parallel=data.get("max_parallel"),
        fallback_agents=_tuple(data.get("fallback_agents")),
        uses=data.get("uses"),
        with_=dict(data.get("with") or {}),
        is_finally=is_finally,
    )


def _condition(value: Any) -> str | None:
    """``if:`` as the template text the engine evaluates; a YAML boolean becomes one."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "{{ true }}" if value else "{{ false }}"
    return str(value)


def build_workflow(data: Mapping[str, Any], *, source: str | None = None, text: str | None = None) -> Workflow:
    """The frozen Workflow from a mapping that passed validation."""
    return Workflow(
        name=data["name"],
        description=data.get("description"),
        inputs=dict(data.get("inputs") or {}),
        agents=tuple(build_agent(a, source) for a in data.get("agents") or ()),
        concurrency=data.get("concurrency", 16),
        timeout=_duration(data.get("timeout")),
        steps=tuple(_build_step(s, False) for s in data["steps"]),
        finally_steps=tuple(_build_step(s, True) for s in data.get("finally") or ()),
        outputs=dict(data.get("outputs") or {}),
        agent_modifiable=data.get("agent_modifiable", False),
        source=source,
        source_text=text,
    )


def load_workflow(
    path_or_text: str | Path,
    *,
    file: str | None = None,
    registry: Sequence[AgentSpec] = (),
    check_inputs: bool = True,
) -> Workflow:
    """Read, validate and build a workflow; raises WorkflowInvalid with every problem.

    ``path_or_text`` is a path (a ``Path``, or a string naming an existing file without
    newlines) or the YAML text itself; ``file`` names the text in messages.
    ``check_inputs=False`` skips checking input defaults against their schemas.
    """
    # validation builds on this module, so it is imported here, not at the top
    from runner.validation import analyze

    text, source = _source(path_or_text, file)
    data, problems = analyze(text, source, registry, check_inputs=check_inputs)
    if problems:
        raise WorkflowInvalid(problems)
    return build_workflow(data, source=source, text=text)


def _source(path_or_text: str | Path, file: str | None) -> tuple[str, str]:
    if isinstance(path_or_text, Path):
        return read_text(path_or_text), file or str(path_or_text)
    if "\n" not in path_or_text and (path_or_text.endswith((".yaml", ".yml")) or Path(path_or_text).is_file()):
        return read_text(path_or_text), file or path_or_text
    return path_or_text, file or "<string>"


def load_agents_file(path: str | Path) -> list[AgentSpec]:
    """Agents of a registry file (top-level ``agents:`` list); raises WorkflowInvalid."""
    from runner.validation import analyze_agents

    source = str(path)
    text = read_text(path)
    data, problems = analyze_agents(text, source)
    if problems:
        raise WorkflowInvalid(problems)
    return [build_agent(a, source) for a in data["agents"]]
