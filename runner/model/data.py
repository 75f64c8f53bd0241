"""JSON data: what every value the runner sends, stores or shows must be.

Arguments go to agents as JSON, results and events go to the store as JSON text, and
``--output json`` prints them: a value JSON cannot hold (a Python method a template
yielded by mistake, a set, ``NaN``, bytes) must be caught where it appears, with a message
that names it, instead of failing later in a place that cannot say why (the store's
encoder, at the end of a run). :func:`as_data` is that check, shared by every producer of
values: templates, tool results, pull reports, workflow inputs, and the journal.

JSON data is ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list`` and ``dict``
with ``str`` keys, nested at most :data:`MAX_DEPTH` levels. Two conversions are plainly
safe and made silently: a tuple becomes a list, and an instance of a subclass of
``str``/``int``/``float`` (an ``IntEnum``, Jinja's ``Markup``) becomes the plain value.
Everything else raises :class:`NotData`, which says what was found, where, and (when a
likely mistake explains it) what was probably meant.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any, Final

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "NOT_HANDLED", "NotData", "as_data", "describe", "json_path", "scrub"]

MAX_DEPTH: Final = 128
"""Deepest nesting of lists and mappings accepted. The MCP SDK's JSON parser stops at ~200
levels (the JSON-RPC envelope takes a few), and deeper data would also run the recursive
encoders and decoders of the store near Python's recursion limit."""

MAX_INT_DIGITS: Final = 4300
"""Largest integer accepted, in decimal digits: what Python converts to text by default
(``sys.get_int_max_str_digits``), so what the store's JSON encoder can write."""

_INT_BITS: Final = int(MAX_INT_DIGITS * math.log2(10)) - 4  # every int this wide has < MAX_INT_DIGITS digits
_INT_LIMIT: Final = 10**MAX_INT_DIGITS

NOT_HANDLED: Final = object()
"""What a ``convert`` hook of :func:`as_data` returns for a value it has no rule for."""

Convert = Callable[[Any], Any]


class NotData(ValueError):
    """A value is not JSON data. ``found`` says what it is, ``path`` where, ``hint`` what was meant."""

    def __init__(self, found: str, hint: str | None = None) -> None:
        super().__init__(found)
        self.found = found
        self.hint = hint
        self._rpath: list[str | int] = []  # innermost first, filled while the walk unwinds

    @property
    def path(self) -> tuple[str | int, ...]:
        """Keys and indices from the checked value down to the offending one."""
        return tuple(reversed(self._rpath))

    def within(self, key: str | int) -> NotData:
        """Note that the offending value sits under ``key`` (called from the inside out)."""
        self._rpath.append(key)
        return self

    @property
    def where(self) -> str:
        """The JSON path of the offending value (``$`` for the value itself), cut after 12 steps."""
        path = self.path
        return json_path(path[:12]) + ("..." if len(path) > 12 else "")

    def __str__(self) -> str:
        at = f" at {self.where}" if self._rpath else ""
        return f"{self.found}{at}, not JSON data" + (f": {self.hint}" if self.hint else "")


def json_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    """``$.a[0]['b c']``: a JSON path as validation messages print it."""
    out = ["$"]
    for p in path:
        if isinstance(p, int):
            out.append(f"[{p}]")
        elif p.isidentifier():
            out.append(f".{p}")
        else:
            out.append(f"[{p!r}]")
    return "".join(out)


def as_data(value: Any, convert: Convert | None = None) -> Any:
    """``value`` as JSON data: itself when it already is (no copy), else a converted copy.

    ``convert`` is asked about any value that has no rule here (a template layer drains
    Jinja's lazy sequences with it); it returns a replacement, which is checked in turn,
    or :data:`NOT_HANDLED`. Raises :class:`NotData` for anything else.
    """
    t = type(value)
    if t is str or value is None or t is bool or (t is int and value.bit_length() <= _INT_BITS):
        return value  # the common case (a tool's text, an id, a count) without a second call
    return _walk(value, convert, 0)


def _walk(v: Any, convert: Convert | None, depth: int) -> Any:
    t = type(v)
    if t is str or v is None or t is bool:
        return v
    if t is int:
        if v.bit_length() > _INT_BITS:
            _check_int(v)
        return v
    if t is float:
        if v - v == 0.0:  # False for NaN and the infinities
            return v
        raise NotData(_float_name(v), "JSON has no NaN or Infinity")
    if t is dict:
        if depth >= MAX_DEPTH:
            raise NotData(_too_deep(t))
        out: dict[str, Any] | None = None
        for k, x in v.items():
            key = k if type(k) is str else _key(k)
            try:
                y = _walk(x, convert, depth + 1)
            except NotData as exc:
                raise exc.within(key) from None
            if out is not None:
                out[key] = y
            elif y is not x or key is not k:
                out = _prefix(v, k)
                out[key] = y
        return v if out is None else out
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise NotData(_too_deep(t))
        items: list[Any] | None = None
        for i, x in enumerate(v):
            try:
                y = _walk(x, convert, depth + 1)
            except NotData as exc:
                raise exc.within(i) from None
            if items is not None:
                items.append(y)
            elif y is not x:
                items = list(v[:i])
                items.append(y)
        if items is not None:
            return items
        return v if t is list else list(v)
    return _other(v, convert, depth)


def scrub(value: Any, _depth: int = 0) -> Any:
    """``value`` with everything that is not JSON data replaced by a text describing it.

    Never raises: for keeping a record of a value that must not be lost nor stored as is
    (``"<not JSON data: a method (str.title)>"``), after :func:`as_data` refused it.
    """
    try:
        return _walk(value, None, _depth)
    except NotData:
        pass
    t = type(value)
    if (t is dict or t is list or t is tuple) and _depth >= MAX_DEPTH:
        return f"<not JSON data: {_too_deep(t)}>"
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _placeholder(k): scrub(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, _depth + 1) for v in value]
    return _placeholder(value)


def _placeholder(value: Any) -> str:
    try:
        as_data(value)
        return repr(value)  # a key that is data but not a string
    except NotData as exc:
        return f"<not JSON data: {exc.found}>"


def _prefix(d: dict[Any, Any], stop: Any) -> dict[str, Any]:
    """The items of ``d`` before key ``stop`` (all unchanged so far), in a new dict."""
    out: dict[str, Any] = {}
    for k, x in d.items():
        if k is stop:
            break
        out[k] = x
    return out


def _other(v: Any, convert: Convert | None, depth: int) -> Any:
    """Everything that is not exactly one of the JSON types: subclasses, the hook, or an error."""
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, int):
        return _walk(int.__int__(v), None, depth)
    if isinstance(v, float):
        return _walk(float.__float__(v), None, depth)
    if isinstance(v, (list, tuple)):
        return _walk(list(v), convert, depth)
    if isinstance(v, dict):
        return _walk(dict(v), convert, depth)
    if convert is not None:
        replaced = convert(v)
        if replaced is not NOT_HANDLED:
            return _walk(replaced, convert, depth)
    raise NotData(describe(v), _hint(v))


def _check_int(v: int) -> None:
    if -_INT_LIMIT < v < _INT_LIMIT:
        return
    digits = int(v.bit_length() * math.log10(2)) + 1  # within one of the exact count, without str()
    raise NotData(f"an integer of about {digits:,} digits", f"JSON data holds integers of at most {MAX_INT_DIGITS:,} digits")


def _too_deep(t: type) -> str:
    return f"{'a mapping' if t is dict else 'a list'} nested more than {MAX_DEPTH} levels deep"


def _float_name(v: float) -> str:
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return str.__str__(k)
    shown = describe(k) if not isinstance(k, (int, float)) or isinstance(k, bool) else f"{type(k).__name__} {k!r}"
    raise NotData(f"a mapping key that is not a string ({shown})", "JSON object keys are strings")


def describe(v: Any) -> str:
    """What ``v`` is, for a message: ``a method (str.title)``, ``a set``, ``NaN``..."""
    if isinstance(v, float) and not math.isfinite(v):
        return _float_name(v)
    if isinstance(v, (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)):
        owner = getattr(v, "__self__", None)
        name = getattr(v, "__name__", "?")
        if owner is None or isinstance(owner, types.ModuleType):
            return f"a function ({name})"
        return f"a method ({type(owner).__name__}.{name})"
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType)):
        return f"a function ({getattr(v, '__name__', '?')})"
    if isinstance(v, type):
        return f"a class ({v.__name__})"
    if isinstance(v, types.ModuleType):
        return f"a module ({v.__name__})"
    if isinstance(v, (set, frozenset)):
        return "a set"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(v, complex):
        return "a complex number"
    if isinstance(v, types.GeneratorType):
        return "a generator"
    if callable(v):
        return f"a callable {type(v).__name__} object"
    return f"a {type(v).__name__} object"


def _hint(v: Any) -> str | None:
    """What a template author most likely meant, for the values that are common mistakes."""
    if isinstance(v, (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)):
        owner = getattr(v, "__self__", None)
        name = getattr(v, "__name__", "?")
        if owner is not None and not isinstance(owner, types.ModuleType):
            return f"did you mean `.{name}()` or `['{name}']`?"
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type)):
        return f"did you mean to call it: `{getattr(v, '__name__', '?')}(...)`?"
    if isinstance(v, (set, frozenset)):
        return "JSON has no sets: make it a list (`| list`, or `| sort` for a stable order)"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "JSON has no bytes: use text"
    return None
