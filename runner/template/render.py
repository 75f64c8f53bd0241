"""Jinja2 templates of a workflow: compile once, render natively, many times.

Every template string of a workflow (``tool_arguments``, ``with``, ``outputs``,
``for_each``, ``if``, agent ``args``) goes through the template layer, on two paths:

* **validation** asks, without rendering, what a string is wrong about
  (:func:`find_problems`: syntax, statically visible sandbox abuse) and what it refers to
  (:func:`referenced_steps`, :func:`referenced_roots`, :func:`referenced_result_fields`);
  those live in :mod:`runner.template.analysis`;
* **the engine** compiles a step's values once (:func:`compile_value`) and renders them
  per step or per ``for_each`` item (:meth:`Compiled.render`), so it is on the hot path.
  That is this module.

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

What a template yields is JSON data (:func:`runner.template.syntax.to_data`): a Jinja
expression's value is checked (tuples and lazy sequences become lists; a method, a set,
``NaN``... fail with a ``data`` error naming what was found). A plain path needs no check:
it yields a part of the context, and everything the engine puts there (inputs, results,
items) is data already — so the common case pays nothing for the guarantee.

The sandbox itself and the plain-path grammar are in :mod:`runner.template.syntax`;
secret masking is :class:`~runner.template.masking.Masker`. Their public names are re-exported
here, where the rest of runner has always imported them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from jinja2 import nodes
from jinja2.environment import Template, TemplateExpression

from runner.template import budget as _budget
from runner.template.analysis import find_problems, referenced_result_fields, referenced_roots, referenced_steps
from runner.template.masking import Masker
from runner.template.syntax import ENV as _ENV
from runner.template.syntax import GLOBALS as _GLOBALS
from runner.template.syntax import MAX_POWER_DIGITS, MAX_REPEAT, TemplateError
from runner.template.syntax import PlainPath as _Path
from runner.template.syntax import error_from as _error_from
from runner.template.syntax import fast_form as _fast_form
from runner.template.syntax import finalize as _finalize
from runner.template.syntax import has_syntax as _has_syntax
from runner.template.syntax import snippet as _snippet
from runner.template.syntax import to_data as _to_data

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

_FALSY_STRINGS: Final = frozenset({"false", "False", "0", "", "null"})
_jinja_compiles = 0


def jinja_compile_count() -> int:
    """How many times this process has run the Jinja compiler (for tests and benchmarks)."""
    return _jinja_compiles


class _Delegate(Exception):
    """The fast path met something only Jinja's own lookup rules can answer."""


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
        self.source = source
        self._path = path

    def render(self, ctx: Mapping[str, Any]) -> Any:
        path = self._path
        try:
            # The common case written out (once a step): dicts all the way, every key there.
            # Anything else goes through ``_lookup`` from the root, with its full rules.
            try:
                obj = ctx[path.root]
            except KeyError:
                return _lookup(path, ctx, self.source)
            for key in path.keys:
                if type(obj) is not dict or key not in obj:
                    return _lookup(path, ctx, self.source)
                obj = obj[key]
            return obj
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
        self.source = source
        self._parts = parts

    def render(self, ctx: Mapping[str, Any]) -> Any:
        text = self.source
        try:
            return "".join([p if isinstance(p, str) else _to_text(_lookup(p, ctx, text)) for p in self._parts])
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
        self.source = source
        self._expr = expr

    def render(self, ctx: Mapping[str, Any]) -> Any:
        outer = _budget.enter()
        try:
            value = self._expr(ctx)
            _budget.check_size(value)
            return _to_data(value)
        except Exception as exc:
            raise _error_from(exc, self.source) from exc
        finally:
            _budget.leave(outer)


class _JinjaText(Compiled):
    """A template with text, several expressions or statements; renders to a string."""

    __slots__ = ("_template",)

    def __init__(self, source: str, template: Template) -> None:
        self.source = source
        self._template = template

    def render(self, ctx: Mapping[str, Any]) -> Any:
        outer = _budget.enter()
        try:
            return self._template.render(ctx)
        except Exception as exc:
            raise _error_from(exc, self.source) from exc
        finally:
            _budget.leave(outer)


class _DictNode(Compiled):
    __slots__ = ("_items",)

    def __init__(self, source: Any, items: tuple[tuple[Any, Compiled], ...]) -> None:
        self.source = source
        self._items = items

    def render(self, ctx: Mapping[str, Any]) -> Any:
        out = {}
        for key, value in self._items:
            try:
                out[key] = value.render(ctx)
            except TemplateError as exc:
                raise exc.within(key) from exc.__cause__
        return out


class _ListNode(Compiled):
    __slots__ = ("_items",)

    def __init__(self, source: Any, items: tuple[Compiled, ...]) -> None:
        self.source = source
        self._items = items

    def render(self, ctx: Mapping[str, Any]) -> Any:
        out = []
        for i, item in enumerate(self._items):
            try:
                out.append(item.render(ctx))
            except TemplateError as exc:
                raise exc.within(i) from exc.__cause__
        return out


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
    t = type(value)  # exact types first: ``isinstance(x, Mapping)`` is a Python-level ABC check
    if t is str or (t is not dict and isinstance(value, str)):
        return _compile_str(value) if _has_syntax(value) else _Const(value)
    if t is dict or isinstance(value, Mapping):
        pairs: list[tuple[Any, Compiled]] = []
        constant = True
        for k, v in value.items():
            c = compile_value(v)
            pairs.append((k, c))
            if not c.is_constant:
                constant = False
        return _Const(value) if constant else _DictNode(value, tuple(pairs))
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
        ast = _budget.instrument(_ENV.parse(text))  # loops and `~` checked against the render budget
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
