"""Jinja2 templates of a workflow: sandbox, static checks, references, native rendering.

Every template string of a workflow (``tool_arguments``, ``with``, ``outputs``,
``for_each``, ``if``, agent ``args``) goes through this module, on two paths:

* **validation** asks, without rendering, what a string is wrong about
  (:func:`find_problems`: syntax, statically visible sandbox abuse) and what it refers to
  (:func:`referenced_steps`, :func:`referenced_roots`, :func:`referenced_result_fields`);
* **the engine** compiles a step's values once (:func:`compile_value`) and renders them
  per step or per ``for_each`` item (:meth:`Compiled.render`), so it is on the hot path.

Compiling one Jinja template costs 240-480 µs here, parsing ~100 µs (SPEC §7), while the
engine's whole budget per step is 50 µs. Hence two layers of thrift. Each distinct string
is compiled at most once per process (a cache keyed by the text). And plain paths such as
``{{ steps.prev.result }}``, ``{{ a.b[0] }}`` or ``{{ a['key'] }}`` (alone or mixed with
text) never reach the Jinja compiler at all: a regex recognises them and they are
evaluated by dict-key and list-index lookups. The fast path keeps the sandbox's
guarantees by construction: it refuses any segment starting with ``_`` (those go to Jinja
and its sandbox), never calls ``getattr``, and hands anything that is not plain data
(objects, attribute names of dict/list/str such as ``items`` or ``upper``, Jinja
globals) to the compiled Jinja expression, so both paths give the same result.

Everything else runs in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`, where ``*`` and ``**`` are capped against memory bombs.
Two deliberate departures from stock Jinja: ``a.name`` on a mapping prefers the key
``name`` over a dict method of that name (workflow data is JSON, where ``items`` or
``values`` are ordinary field names), and trailing newlines of a template are kept (a
prompt written as a YAML block scalar keeps its text).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, MappingView
from functools import lru_cache
from typing import Any, Final, NamedTuple

from jinja2 import StrictUndefined, nodes
from jinja2 import TemplateError as _JinjaTemplateError
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "MAX_POWER_DIGITS",
    "MAX_REPEAT",
    "Compiled",
    "Masker",
    "TemplateError",
    "compile_value",
    "find_problems",
    "is_templated",
    "jinja_compile_count",
    "referenced_result_fields",
    "referenced_roots",
    "referenced_steps",
    "render_condition",
]

MAX_REPEAT: Final = 1_000_000
"""Largest string or list that ``*`` may build (items or characters)."""

MAX_POWER_DIGITS: Final = 10_000
"""Largest integer, in decimal digits, that ``**`` or ``*`` may build."""

_MAX_INT_BITS: Final = int(MAX_POWER_DIGITS * math.log2(10))

# Attribute names that reach interpreter internals without a leading underscore.
_INTERNALS: Final = frozenset(
    {
        "mro", "func_globals", "func_code", "func_closure", "func_defaults", "func_dict",
        "f_globals", "f_locals", "f_builtins", "f_code", "f_back", "f_trace",
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await",
        "ag_frame", "ag_code", "ag_await", "tb_frame", "tb_next", "co_code",
        "im_func", "im_self", "im_class",
    }
)  # fmt: skip

# Filters whose string arguments name attributes to read (``attr('__class__')``).
_ATTRIBUTE_FILTERS: Final = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "groupby", "sort", "sum", "unique",
     "min", "max", "join"}
)  # fmt: skip

_FALSY_STRINGS: Final = frozenset({"false", "False", "0", "", "null"})


class TemplateError(Exception):
    """A template could not be compiled or rendered.

    ``message`` is the full text (reason and the template, truncated to ~80 characters);
    ``reason`` is what Jinja, the sandbox or the fast path said; ``kind`` is ``syntax``,
    ``undefined``, ``security`` or ``error``, so callers can tell a sandbox refusal apart.
    """

    def __init__(self, reason: str, template: str | None = None, kind: str = "error") -> None:
        self.reason = reason
        self.template = template
        self.kind = kind
        self.message = f"{reason} (in template {_snippet(template)})" if template else reason
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _snippet(text: str | None, limit: int = 80) -> str:
    text = text or ""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --------------------------------------------------------------------------- sandbox


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` capped and mappings read key-first."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse repetitions and powers whose result would exhaust memory or CPU."""
        if operator == "*":
            _check_product(left, right)
        else:
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``a.name`` on a mapping is the key ``name`` when present, else stock sandbox."""
        if not attribute.startswith("_") and isinstance(obj, Mapping):
            try:
                if attribute in obj:
                    return obj[attribute]
            except TypeError:
                pass
        return super().getattr(obj, attribute)


def _check_product(left: Any, right: Any) -> None:
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and n > 0:
            if len(seq) * n > MAX_REPEAT:
                raise SecurityError(f"repetition would build {len(seq) * n} items, more than {MAX_REPEAT}")
    if isinstance(left, int) and isinstance(right, int):
        if abs(left).bit_length() + abs(right).bit_length() > _MAX_INT_BITS:
            raise SecurityError(f"product would exceed {MAX_POWER_DIGITS} digits")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log10(abs(base)) > MAX_POWER_DIGITS:
            raise SecurityError(f"power would exceed {MAX_POWER_DIGITS} digits")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return str(obj)  # StrictUndefined raises here, which is what we want


def _finalize(value: Any) -> Any:
    """How a value prints inside text: JSON for containers, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple, Mapping)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


_ENV: Final = _Sandbox(
    undefined=StrictUndefined,
    autoescape=False,
    finalize=_finalize,
    keep_trailing_newline=True,
)
_GLOBALS: Final = frozenset(_ENV.globals)
_jinja_compiles = 0


def jinja_compile_count() -> int:
    """How many times this process has run the Jinja compiler (for tests and benchmarks)."""
    return _jinja_compiles


def _error_from(exc: BaseException, text: str) -> TemplateError:
    """Turn whatever a render raised into a :class:`TemplateError` naming the template."""
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(f"syntax error: {exc.message} (line {exc.lineno})", text, "syntax")
    if isinstance(exc, SecurityError):
        return TemplateError(str(exc.message or exc), text, "security")
    if isinstance(exc, UndefinedError):
        return TemplateError(str(exc.message or exc), text, "undefined")
    if isinstance(exc, _JinjaTemplateError):
        return TemplateError(str(exc.message or exc), text)
    return TemplateError(f"{type(exc).__name__}: {exc}", text)


# --------------------------------------------------------------------------- fast path

_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_INT = r"(?:0|[1-9][0-9]*)"
_SEGMENT = rf"""\.(?:{_NAME}|{_INT})|\[(?:-?{_INT}|'[^'\\\r\n]*'|"[^"\\\r\n]*")\]"""
_PATH_RE: Final = re.compile(rf"\s*({_NAME})((?:{_SEGMENT})*)\s*", re.ASCII)
_SEGMENT_RE: Final = re.compile(_SEGMENT, re.ASCII)
_LONE_RE: Final = re.compile(r"\s*\{\{(.*?)\}\}\s*", re.DOTALL)
_VAR_RE: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# Names Jinja itself gives a meaning to: literals, operators, and template specials.
_RESERVED: Final = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
     "if", "else", "self", "loop", "caller", "varargs", "kwargs", "super"}
)  # fmt: skip


class _Path:
    """A plain path ``root.a['b'][0]``: a root name and dict keys / list indices."""

    __slots__ = ("root", "keys", "texts")

    def __init__(self, root: str, keys: tuple[str | int, ...], texts: tuple[str, ...]) -> None:
        self.root = root
        self.keys = keys
        self.texts = texts

    def show(self, upto: int) -> str:
        """The path as written, up to and including segment ``upto`` (-1: the root)."""
        return self.root + "".join(self.texts[: upto + 1])


class _Delegate(Exception):
    """The fast path met something only Jinja's own lookup rules can answer."""


def _parse_path(expr: str) -> _Path | None:
    """Parse the inside of ``{{ }}`` as a plain path, or None if it is anything more."""
    m = _PATH_RE.fullmatch(expr)
    if m is None or m.group(1) in _RESERVED:
        return None
    keys: list[str | int] = []
    texts: list[str] = []
    for seg in _SEGMENT_RE.findall(m.group(2)):
        if seg[0] == ".":
            key: str | int = int(seg[1:]) if seg[1].isdigit() else seg[1:]
            if key in _RESERVED:
                return None
        elif seg[1] in "'\"":
            key = seg[2:-2]
            if key.startswith("_"):
                return None
        else:
            key = int(seg[1:-1])
        keys.append(key)
        texts.append(seg)
    return _Path(m.group(1), tuple(keys), tuple(texts))


def _lookup(path: _Path, ctx: Mapping[str, Any], text: str) -> Any:
    """Evaluate a plain path by key and index lookups, as the sandbox would.

    Raises :class:`_Delegate` where Jinja's rules differ from plain data lookup (a Jinja
    global, a method of dict/list/str, an arbitrary object), so the caller can fall back.
    """
    try:
        obj = ctx[path.root]
    except KeyError:
        if path.root in _GLOBALS:
            raise _Delegate from None
        raise TemplateError(f"'{path.root}' is undefined", text, "undefined") from None
    for i, key in enumerate(path.keys):
        kind = type(obj)
        if kind is dict:
            try:
                obj = obj[key]
                continue
            except KeyError:
                pass
        elif kind is list or kind is tuple:
            if type(key) is int:
                try:
                    obj = obj[key]
                    continue
                except IndexError:
                    raise _missing(path, i, text, f"index {key} out of range") from None
        elif isinstance(obj, Mapping):
            try:
                obj = obj[key]
                continue
            except KeyError:
                pass
        elif not (obj is None or kind in (str, int, float, bool)):
            raise _Delegate
        if (type(key) is int and kind is str) or (type(key) is str and hasattr(obj, key)):
            raise _Delegate
        raise _missing(path, i, text, f"{type(obj).__name__} has no key {key!r}")
    return obj


def _missing(path: _Path, i: int, text: str, detail: str) -> TemplateError:
    return TemplateError(f"'{path.show(i)}' is undefined ({path.show(i - 1)}: {detail})", text, "undefined")


def _fast_parts(text: str) -> tuple[str | _Path, ...] | None:
    """Split text mixing literals and plain paths, or None if it needs Jinja."""
    if "{%" in text or "{#" in text or "\r" in text:
        return None
    parts: list[str | _Path] = []
    pos = 0
    for m in _VAR_RE.finditer(text):
        path = _parse_path(m.group(1))
        if path is None:
            return None
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(path)
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    if any(type(p) is str and "{{" in p for p in parts):
        return None  # an unclosed '{{': Jinja reports the syntax error
    return tuple(parts)


def _fast_form(text: str) -> _Path | tuple[str | _Path, ...] | None:
    """A lone plain path, text with plain paths, or None when the text needs Jinja."""
    m = _LONE_RE.fullmatch(text)
    if m is not None and "{{" not in m.group(1) and "}}" not in m.group(1):
        path = _parse_path(m.group(1))
        if path is not None:
            return path
    return _fast_parts(text)


def _to_text(value: Any) -> str:
    return str(_finalize(value))


# --------------------------------------------------------------------------- compiled values


class Compiled:
    """A value compiled once, rendered many times with :meth:`render`.

    ``source`` is the value it was compiled from; ``is_constant`` is true when rendering
    returns ``source`` itself whatever the context (no copy is made).
    """

    __slots__ = ("source",)
    is_constant: bool = False

    def __init__(self, source: Any) -> None:
        self.source = source

    def render(self, ctx: Mapping[str, Any]) -> Any:
        """Render with the template context (``inputs``, ``steps``, ``item``, ...)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_snippet(repr(self.source))})"


class _Const(Compiled):
    __slots__ = ()
    is_constant = True

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return self.source


class _PathExpr(Compiled):
    """A lone ``{{ path }}``: the value itself, by lookups."""

    __slots__ = ("_path",)

    def __init__(self, source: str, path: _Path) -> None:
        super().__init__(source)
        self._path = path

    def render(self, ctx: Mapping[str, Any]) -> Any:
        try:
            return _lookup(self._path, ctx, self.source)
        except _Delegate:
            return _compile_jinja(self.source).render(ctx)
        except TemplateError:
            raise
        except Exception as exc:  # a context object's own lookup failing
            raise _error_from(exc, self.source) from exc


class _FastText(Compiled):
    """Literal text with plain paths interpolated, rendered as Jinja would print it."""

    __slots__ = ("_parts",)

    def __init__(self, source: str, parts: tuple[str | _Path, ...]) -> None:
        super().__init__(source)
        self._parts = parts

    def render(self, ctx: Mapping[str, Any]) -> Any:
        text = self.source
        try:
            return "".join([p if type(p) is str else _to_text(_lookup(p, ctx, text)) for p in self._parts])
        except _Delegate:
            return _compile_jinja(text).render(ctx)
        except TemplateError:
            raise
        except Exception as exc:
            raise _error_from(exc, text) from exc


class _JinjaExpr(Compiled):
    """A lone ``{{ expression }}`` compiled by Jinja; keeps the native type."""

    __slots__ = ("_expr",)

    def __init__(self, source: str, expr: TemplateExpression) -> None:
        super().__init__(source)
        self._expr = expr

    def render(self, ctx: Mapping[str, Any]) -> Any:
        try:
            return _native(self._expr(ctx))
        except Exception as exc:
            raise _error_from(exc, self.source) from exc


class _JinjaText(Compiled):
    """A template with text, several expressions or statements; renders to a string."""

    __slots__ = ("_template",)

    def __init__(self, source: str, template: Template) -> None:
        super().__init__(source)
        self._template = template

    def render(self, ctx: Mapping[str, Any]) -> Any:
        try:
            return self._template.render(ctx)
        except Exception as exc:
            raise _error_from(exc, self.source) from exc


class _DictNode(Compiled):
    __slots__ = ("_items",)

    def __init__(self, source: Any, items: tuple[tuple[Any, Compiled], ...]) -> None:
        super().__init__(source)
        self._items = items

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return {key: value.render(ctx) for key, value in self._items}


class _ListNode(Compiled):
    __slots__ = ("_items",)

    def __init__(self, source: Any, items: tuple[Compiled, ...]) -> None:
        super().__init__(source)
        self._items = items

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return [item.render(ctx) for item in self._items]


def _native(value: Any) -> Any:
    """Make a Jinja expression's result plain data: fail on undefined, drain iterators.

    Filters like ``map`` return generators and may put undefined values inside lists;
    neither may leak into tool arguments. Containers are copied only when something in
    them changes.
    """
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, (Iterator, range, MappingView)):
        return [_native(v) for v in value]
    if type(value) is list or type(value) is tuple:
        items = [_native(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if type(value) is list else tuple(items)
    if type(value) is dict:
        pairs = {k: _native(v) for k, v in value.items()}
        return value if all(pairs[k] is v for k, v in value.items()) else pairs
    return value


def _has_syntax(text: str) -> bool:
    return "{" in text and ("{{" in text or "{%" in text or "{#" in text)


def is_templated(value: Any) -> bool:
    """Whether a (nested) value contains any template syntax, i.e. depends on the context."""
    if isinstance(value, str):
        return _has_syntax(value)
    if isinstance(value, Mapping):
        return any(is_templated(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_templated(v) for v in value)
    return False


def compile_value(value: Any) -> Compiled:
    """Compile a nested value (dicts, lists, strings, scalars) for repeated rendering.

    Strings holding one lone ``{{ expr }}`` render to the expression's native value;
    other template strings render to text; everything else, and every subtree without
    template syntax, renders to itself. Mapping keys are not templated. Raises
    :class:`TemplateError` for a syntax error.
    """
    if isinstance(value, str):
        return _compile_str(value) if _has_syntax(value) else _Const(value)
    if isinstance(value, Mapping):
        pairs = tuple((k, compile_value(v)) for k, v in value.items())
        if all(c.is_constant for _, c in pairs):
            return _Const(value)
        return _DictNode(value, pairs)
    if isinstance(value, (list, tuple)):
        items = tuple(compile_value(v) for v in value)
        if all(c.is_constant for c in items):
            return _Const(value)
        return _ListNode(value, items)
    return _Const(value)


def _compile_str(text: str) -> Compiled:
    """Compile one template string, by the fast path when it is plain paths."""
    compiled = _compile_fast(text)
    return compiled if compiled is not None else _compile_jinja(text)


@lru_cache(maxsize=131072)
def _compile_fast(text: str) -> Compiled | None:
    form = _fast_form(text)
    if isinstance(form, _Path):
        return _PathExpr(text, form)
    return None if form is None else _FastText(text, form)


@lru_cache(maxsize=8192)  # compiled templates weigh kilobytes each
def _compile_jinja(text: str) -> Compiled:
    """Compile with Jinja (at most once per distinct text while cached)."""
    global _jinja_compiles
    _jinja_compiles += 1
    try:
        ast = _ENV.parse(text)
        expr = _lone_expression(ast)
        if expr is None:
            return _JinjaText(text, _ENV.from_string(ast))
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        template = _ENV.from_string(nodes.Template(body, lineno=1))
        return _JinjaExpr(text, TemplateExpression(template, undefined_to_none=False))
    except Exception as exc:
        raise _error_from(exc, text) from exc


def _lone_expression(ast: nodes.Template) -> nodes.Expr | None:
    """The expression of a template that is one ``{{ expr }}`` and whitespace, if so."""
    found: list[nodes.Expr] = []
    for stmt in ast.body:
        if not isinstance(stmt, nodes.Output):
            return None
        for node in stmt.nodes:
            if isinstance(node, nodes.TemplateData):
                if node.data.strip():
                    return None
            else:
                found.append(node)
    return found[0] if len(found) == 1 else None


def render_condition(compiled: Compiled, ctx: Mapping[str, Any]) -> bool:
    """Evaluate an ``if:``: Python truth, except the strings false/False/0/null/'' are false."""
    value = compiled.render(ctx)
    if isinstance(value, str):
        return value.strip() not in _FALSY_STRINGS
    return bool(value)


# --------------------------------------------------------------------------- static analysis

_FORMAT_FIELD_RE: Final = re.compile(r"\{([^{}]*)\}")


class _Analysis(NamedTuple):
    """What validation needs to know about one template string (cached per text)."""

    problems: tuple[str, ...]
    roots: frozenset[str]
    steps: frozenset[str]
    fields: frozenset[tuple[str, str]]


_NOTHING: Final = _Analysis((), frozenset(), frozenset(), frozenset())


class _Problems:
    """An ordered, duplicate-free list of messages."""

    def __init__(self) -> None:
        self.items: dict[str, None] = {}

    def add(self, message: str) -> None:
        self.items[message] = None

    def name(self, name: str) -> None:
        """Flag a name, attribute or key that reaches Python internals."""
        if name.startswith("_"):
            self.add(f"template accesses {name!r}: names starting with '_' are not allowed")
        elif name in _INTERNALS:
            self.add(f"template accesses {name!r}: Python internals are not allowed")


@lru_cache(maxsize=131072)
def _analyze(text: str) -> _Analysis:
    if not _has_syntax(text):
        return _NOTHING
    form = _fast_form(text)
    if form is not None:
        paths = [form] if isinstance(form, _Path) else [p for p in form if type(p) is _Path]
        return _analyze_paths(paths)  # type: ignore[arg-type]
    try:
        ast = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        message = f"template syntax error: {exc.message} (line {exc.lineno})"
        return _Analysis((message,), frozenset(), frozenset(), frozenset())
    return _analyze_ast(ast)


def _analyze_paths(paths: list[_Path]) -> _Analysis:
    problems = _Problems()
    roots: set[str] = set()
    steps: set[str] = set()
    fields: set[tuple[str, str]] = set()
    for path in paths:
        for key in path.keys:
            if type(key) is str:
                problems.name(key)
        if path.root not in _GLOBALS:
            roots.add(path.root)
        _note_step_chain((path.root, *path.keys), steps, fields)
    return _Analysis(tuple(problems.items), frozenset(roots), frozenset(steps), frozenset(fields))


def _note_step_chain(chain: tuple[Any, ...], steps: set[str], fields: set[tuple[str, str]]) -> None:
    """Record ``steps.X`` and ``steps.X.result.FIELD`` from a static lookup chain."""
    if len(chain) >= 2 and chain[0] == "steps" and type(chain[1]) is str:
        steps.add(chain[1])
        if len(chain) >= 4 and chain[2] == "result" and type(chain[3]) is str:
            fields.add((chain[1], chain[3]))


def _chain(node: nodes.Node) -> tuple[Any, ...] | None:
    """``steps.a['b'].c`` as ``('steps', 'a', 'b', 'c')``; None if not a static chain."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        head = _chain(node.node)
        return None if head is None else (*head, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        head = _chain(node.node)
        return None if head is None else (*head, node.arg.value)
    return None


def _analyze_ast(ast: nodes.Template) -> _Analysis:
    problems = _Problems()
    loads: set[str] = set()
    stores: set[str] = {"self"}
    steps: set[str] = set()
    fields: set[tuple[str, str]] = set()
    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Name):
            problems.name(node.name)
            (loads if node.ctx == "load" else stores).add(node.name)
        elif isinstance(node, (nodes.Getattr, nodes.Getitem)):
            if isinstance(node, nodes.Getattr):
                problems.name(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                problems.name(node.arg.value)
            chain = _chain(node)
            if chain is not None:
                _note_step_chain(chain, steps, fields)
        elif isinstance(node, nodes.NSRef):
            problems.name(node.attr)
        elif isinstance(node, nodes.Filter):
            _check_filter(node, problems)
        elif isinstance(node, nodes.Test) and node.name not in _ENV.tests:
            problems.add(f"template uses unknown test {node.name!r}")
        elif isinstance(node, nodes.Call):
            _check_format_call(node, problems)
        elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            keyword = type(node).__name__.lower().replace("fromimport", "from")
            problems.add(f"template uses '{{% {keyword} %}}': other templates cannot be loaded")
        elif isinstance(node, nodes.For):
            stores.add("loop")
        elif isinstance(node, (nodes.Macro, nodes.CallBlock)):
            stores.update(("caller", "varargs", "kwargs"))
        elif isinstance(node, nodes.Block):
            stores.add("super")
    roots = frozenset(loads - stores - _GLOBALS)
    return _Analysis(tuple(problems.items), roots, frozenset(steps), frozenset(fields))


def _check_filter(node: nodes.Filter, problems: _Problems) -> None:
    if node.name not in _ENV.filters:
        problems.add(f"template uses unknown filter {node.name!r}")
    elif node.name in _ATTRIBUTE_FILTERS:
        for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                for part in arg.value.split("."):
                    problems.name(part)


def _check_format_call(node: nodes.Call, problems: _Problems) -> None:
    """``'{0.__class__}'.format(x)`` reaches attributes through the format string."""
    target = node.node
    if (
        isinstance(target, nodes.Getattr)
        and target.attr in ("format", "format_map")
        and isinstance(target.node, nodes.Const)
        and isinstance(target.node.value, str)
    ):
        for field in _FORMAT_FIELD_RE.findall(target.node.value):
            name = re.split(r"[!:]", field, maxsplit=1)[0]
            for part in re.split(r"[.\[\]]", name)[1:]:
                problems.name(part.strip())


def _template_strings(value: Any) -> Iterator[str]:
    """Every string with template syntax inside a nested value."""
    if isinstance(value, str):
        if _has_syntax(value):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _template_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _template_strings(item)


def find_problems(text: str) -> list[str]:
    """Syntax errors and statically visible sandbox abuse in one template string.

    Reports Jinja syntax errors (with the line within the template), names, attributes,
    keys and attribute-filter arguments starting with ``_`` or naming Python internals
    (``mro``, ``f_globals``, ``gi_frame``...), unknown filters and tests, and
    ``include``/``import``/``extends`` (there is nothing to load). Empty when clean.
    """
    return list(_analyze(text).problems)


def referenced_steps(value: Any) -> set[str]:
    """Step ids a nested value's templates read as ``steps.X`` or ``steps['X']``."""
    found: set[str] = set()
    for text in _template_strings(value):
        found |= _analyze(text).steps
    return found


def referenced_roots(value: Any) -> set[str]:
    """Top-level names a nested value's templates read from the context.

    Names the template defines itself (``set``, loop variables, macro arguments, ``loop``)
    and Jinja's globals (``range``, ``dict``, ``namespace``...) are not included.
    """
    found: set[str] = set()
    for text in _template_strings(value):
        found |= _analyze(text).roots
    return found


def referenced_result_fields(value: Any) -> set[tuple[str, str]]:
    """``(step_id, field)`` pairs read as ``steps.X.result.FIELD`` (for ``--deep`` checks)."""
    found: set[tuple[str, str]] = set()
    for text in _template_strings(value):
        found |= _analyze(text).fields
    return found


# --------------------------------------------------------------------------- secrets


class Masker:
    """Replaces every occurrence of any secret value with ``***``.

    Secrets are matched longest first, so a secret that contains another is masked
    whole. Each secret is also matched in its JSON-escaped spellings, since agents often
    echo arguments back inside JSON text. With no secrets, :meth:`mask` returns its
    argument untouched at no cost.
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if isinstance(s, str) and s}
        for secret in list(values):
            values.add(json.dumps(secret)[1:-1])
            values.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask_text(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        return text if self._pattern is None else self._pattern.sub("***", text)

    def mask(self, value: Any) -> Any:
        """A copy of a nested dict/list/str value with secrets masked in every string.

        Mapping keys are masked too; non-string scalars are kept as they are.
        """
        if self._pattern is None:
            return value
        return self._mask(value)

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._pattern.sub("***", value)  # type: ignore[union-attr]
        if isinstance(value, Mapping):
            return {self._mask(k): self._mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._mask(v) for v in value)
        return value
