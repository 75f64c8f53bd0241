"""The template language itself: the sandboxed Jinja environment and the plain-path grammar.

Both halves of the template layer build on this module: :mod:`runner.template` compiles
and renders values, :mod:`runner.template.analysis` checks them without rendering. Keeping
the environment and the fast path's grammar here lets each of them import it without
importing the other.

Templates run in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`, where ``*`` and ``**`` are capped against memory bombs.
Three deliberate departures from stock Jinja: ``a.name`` on a mapping prefers the key
``name`` over a dict method of that name (workflow data is JSON, where ``items`` or
``values`` are ordinary field names); trailing newlines of a template are kept (a
prompt written as a YAML block scalar keeps its text); and every value a template
yields or prints must be JSON data (:func:`to_data`): a method named by mistake
(``x.title`` for ``x['title']``), a set or ``NaN`` is an error, not ``<built-in method
title of str object>`` sent to an agent or a value the store cannot hold.

A *plain path* is ``root.a['b'][0]``: a root name followed by attribute names, integer
indices and quoted keys, none starting with ``_``. :func:`fast_form` recognises text made
only of literals and plain paths, which the engine then evaluates without Jinja.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Final

from jinja2 import StrictUndefined
from jinja2 import TemplateError as _JinjaTemplateError
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from markupsafe import Markup

from runner.model.data import NOT_HANDLED, NotData, as_data
from runner.template import budget
from runner.template import regex as _regex

__all__ = [
    "ENV",
    "GLOBALS",
    "MAX_POWER_DIGITS",
    "MAX_REPEAT",
    "PlainPath",
    "TemplateError",
    "error_from",
    "fast_form",
    "finalize",
    "has_syntax",
    "snippet",
    "to_data",
]

MAX_REPEAT: Final = 1_000_000
"""Largest string or list that ``*`` may build (items or characters)."""

MAX_POWER_DIGITS: Final = 4_000
"""Largest integer, in decimal digits, that ``**`` or ``*`` may build (below Python's 4,300-digit
limit for printing an integer, so every result can be written out)."""

_MAX_INT_BITS: Final = int(MAX_POWER_DIGITS * math.log2(10))


class TemplateError(Exception):
    """A template could not be compiled or rendered.

    ``message`` is the full text (reason and the template, truncated to ~80 characters);
    ``reason`` is what Jinja, the sandbox or the fast path said; ``kind`` is ``syntax``,
    ``undefined``, ``security``, ``data`` (the value is not JSON data) or ``error``, so
    callers can tell a sandbox refusal apart. ``path`` is where the failing template sits
    in the value compiled with it (``("query", 0)`` for ``{query: ["{{ x }}"]}``), so the
    engine can point at its line in the workflow file.
    """

    def __init__(self, reason: str, template: str | None = None, kind: str = "error") -> None:
        self.reason = reason
        self.template = template
        self.kind = kind
        self.message = f"{reason} (in template {snippet(template)})" if template else reason
        self._rpath: list[str | int] = []  # innermost first, filled while rendering unwinds
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def path(self) -> tuple[str | int, ...]:
        """Keys and indices from the compiled value down to the template that failed."""
        return tuple(reversed(self._rpath))

    def within(self, key: str | int) -> TemplateError:
        """Note that the failing template sits under ``key`` (called from the inside out)."""
        self._rpath.append(key)
        return self


def snippet(text: str | None, limit: int = 80) -> str:
    """``text`` as a repr, cut to ``limit`` characters, for messages naming a template."""
    text = text or ""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --------------------------------------------------------------------------- sandbox


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with operators and calls budgeted and mappings read key-first.

    Every render has a time and size budget (:mod:`runner.template.budget`): ``*``,
    ``**``, ``+`` and ``%``, every call and every ``str.format`` field are checked
    against it before they build their result.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse repetitions, powers, concatenations and formats that would exhaust memory or CPU."""
        budget.tick()
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                b = budget.current()
                if b is not None:
                    b.need(len(left) + len(right), "'+'")
        elif isinstance(left, str):
            budget.check_percent(left, right)
        rv = super().call_binop(context, operator, left, right)
        budget.charge(rv)
        return rv

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Tick the render's clock and refuse calls that would build too much (``'x'.ljust(10**9)``)."""
        budget.check_call(__obj, args, kwargs)
        rv = super().call(__context, __obj, *args, **kwargs)
        budget.charge(rv)
        return rv

    def wrap_str_format(self, value: Any) -> Any:
        """``str.format`` as the sandbox has it, with every field's width and precision bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None or isinstance(value.__self__, Markup):
            return wrapped
        text: str = value.__self__
        is_map = value.__name__ == "format_map"
        formatter = _BoundedFormatter(self)

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                kwargs, args = args[0], ()
            rv = formatter.vformat(text, args, kwargs)
            budget.charge(rv)
            return rv

        return bounded

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


class _BoundedFormatter(SandboxedFormatter):
    """The sandbox's ``str.format`` formatter, refusing huge widths and precisions."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget.check_format_spec(format_spec)
        return super().format_field(value, format_spec)


def _jinja_value(value: Any) -> Any:
    """The conversions only templates need (an :func:`~runner.model.data.as_data` hook).

    Undefined fails as undefined; the lazy sequences Jinja's filters and methods return
    (``map``, ``select``, ``range(3)``, ``d.keys()``) become lists, so ``{{ xs | map('upper')
    }}`` yields a list, not a generator; a Jinja global named without a call is named as such.
    """
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, (Iterator, range, KeysView, ValuesView, ItemsView)):
        return list(value)
    name = _GLOBAL_NAMES.get(id(value))
    if name is not None:
        raise NotData(f"Jinja's `{name}`", f"did you mean `{name}(...)`?")
    return NOT_HANDLED


def to_data(value: Any) -> Any:
    """What a template yields, as JSON data (see :mod:`runner.model.data`); NotData if it is not.

    Tuples and lazy sequences become lists; methods, functions, classes, sets, bytes, NaN,
    Infinity, non-string keys and other objects are refused, with a hint where a likely
    mistake explains them. Data is returned as is, without a copy.
    """
    return as_data(value, _jinja_value)


def finalize(value: Any) -> Any:
    """How a value prints inside text: JSON for containers and booleans, nothing for None.

    As in GitHub Actions expressions: ``"ok: {{ steps.x.result.passed }}"`` reads
    ``ok: true``, not Python's ``True``. A lone ``{{ expr }}`` keeps its native type.
    What is printed must be data too (:func:`to_data`): ``"x {{ s.title }}"`` fails
    rather than printing ``<built-in method title ...>``.
    """
    kind = type(value)
    if kind is str or kind is int:
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    value = to_data(value)  # a float, a string, a list or a dict from here on
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _budgeted_finalize(value: Any) -> Any:
    """:func:`finalize` for Jinja's own output: containers measured first, text charged."""
    if isinstance(value, (list, tuple, dict, Mapping)):
        budget.check_size(value, "a printed value")
    out = finalize(value)
    if type(out) is str:
        budget.charge(out)
    return out


ENV: Final = _Sandbox(
    undefined=StrictUndefined,
    autoescape=False,
    finalize=_budgeted_finalize,
    keep_trailing_newline=True,
)
"""The one sandboxed environment every template of every workflow is compiled in."""
ENV.filters.update(_regex.FILTERS)
ENV.tests.update(_regex.TESTS)
budget.guard_filters(ENV.filters)

GLOBALS: Final = frozenset(ENV.globals)
"""Names Jinja defines for every template (``range``, ``dict``, ``namespace``...)."""

_GLOBAL_NAMES: Final = {id(v): k for k, v in ENV.globals.items()}


def error_from(exc: BaseException, text: str) -> TemplateError:
    """Turn whatever a render raised into a :class:`TemplateError` naming the template."""
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, NotData):
        return TemplateError(f"yields {exc}", text, "data")
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
_ASCII_SPACE: Final = " \t\n\r\f\v"  # what ``\s`` matches under re.ASCII
_VAR_RE: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# Names Jinja itself gives a meaning to: literals, operators, and template specials.
_RESERVED: Final = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
     "if", "else", "self", "loop", "caller", "varargs", "kwargs", "super"}
)  # fmt: skip


class PlainPath:
    """A plain path ``root.a['b'][0]``: a root name and dict keys / list indices."""

    __slots__ = ("root", "keys", "texts")

    def __init__(self, root: str, keys: tuple[str | int, ...], texts: tuple[str, ...]) -> None:
        self.root = root
        self.keys = keys
        self.texts = texts

    def show(self, upto: int) -> str:
        """The path as written, up to and including segment ``upto`` (-1: the root)."""
        return self.root + "".join(self.texts[: upto + 1])


def _parse_path(expr: str) -> PlainPath | None:
    """Parse the inside of ``{{ }}`` as a plain path, or None if it is anything more."""
    if "[" not in expr:
        return _dotted_path(expr)
    m = _PATH_RE.fullmatch(expr)
    if m is None or m.group(1) in _RESERVED:
        return None
    root, rest = m.groups()
    keys: list[str | int] = []
    texts: list[str] = []
    for seg in _SEGMENT_RE.findall(rest):
        if seg[0] == ".":
            key: str | int = int(seg[1:]) if seg[1].isdigit() else seg[1:]
            if key in _RESERVED:
                return None
        elif seg[1] in "'\"":
            quoted = seg[2:-2]
            if quoted.startswith("_"):
                return None
            key = quoted
        else:
            key = int(seg[1:-1])
        keys.append(key)
        texts.append(seg)
    return PlainPath(root, tuple(keys), tuple(texts))


def _dotted_path(expr: str) -> PlainPath | None:
    """``_parse_path`` of a path without brackets (``steps.prev.result``: a chain's every
    step), by string tests instead of the two regexes: what ``_PATH_RE`` accepts there
    is ASCII whitespace, then ``NAME`` and ``.NAME`` / ``.INT`` segments, then whitespace."""
    names = expr.strip(_ASCII_SPACE).split(".")
    root = names[0]
    if not (root.isascii() and root.isidentifier()) or root[0] == "_" or root in _RESERVED:
        return None
    keys: list[str | int] = []
    texts: list[str] = []
    for i in range(1, len(names)):
        name = names[i]
        if not name.isascii():
            return None
        if name.isdigit():  # INT: 0, or no leading zero
            if name[0] == "0" and name != "0":
                return None
            keys.append(int(name))
        elif name.isidentifier() and name[0] != "_" and name not in _RESERVED:
            keys.append(name)
        else:
            return None
        texts.append("." + name)
    return PlainPath(root, tuple(keys), tuple(texts))


def _fast_parts(text: str) -> tuple[str | PlainPath, ...] | None:
    """Split text mixing literals and plain paths, or None if it needs Jinja."""
    if "{%" in text or "{#" in text or "\r" in text:
        return None
    parts: list[str | PlainPath] = []
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


def fast_form(text: str) -> PlainPath | tuple[str | PlainPath, ...] | None:
    """A lone plain path, text with plain paths, or None when the text needs Jinja."""
    # A lone ``{{ … }}`` and whitespace, found by string tests: the regex that did it
    # (``\s*\{\{(.*?)\}\}\s*``, a lazy group) cost a fifth of a template's compilation.
    lone = text.strip()
    if lone[:2] == "{{" and lone[-2:] == "}}" and len(lone) >= 4:
        inner = lone[2:-2]
        if "{{" not in inner and "}}" not in inner:
            path = _parse_path(inner)
            if path is not None:
                return path
    return _fast_parts(text)


def has_syntax(text: str) -> bool:
    """Whether a string holds any template syntax (``{{``, ``{%`` or ``{#``)."""
    return "{" in text and ("{{" in text or "{%" in text or "{#" in text)
