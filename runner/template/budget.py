"""A budget for each Jinja render: bounded time and bounded size, even for hostile templates.

The sandbox stops attribute abuse; it does not stop a template from working forever or
building gigabytes: ``{% for i in range(100000) %}{% for j in range(100000) %}...``,
``'x'|center(1500000000)``, ``'%.999999999f'|format(1.0)``, ``{% set s = s ~ s %}`` forty
times. Rendering is synchronous, so such a template would also block the event loop, and
with it the step's and the run's timeouts.

Design: each render through Jinja (the fast path for plain ``{{ a.b }}`` paths never gets
here and pays nothing) opens a :class:`Budget` with a deadline and a size allowance, kept
in a thread-local while the render runs; the template checks it cooperatively, in pure
Python, at the points where work and memory can grow:

* every ``{% for %}`` iteration (the compiled template is instrumented: each loop's
  iterable goes through the ``runner_loop`` filter, which also charges the literal text
  that one pass of the body writes), every filter, every call, and the ``+ * % ~``
  operators check the deadline;
* every value those build is charged against the size allowance, and operations whose
  output can dwarf their input (``center``, ``indent``, ``wordwrap``, ``replace``,
  ``join``, ``format``/``%`` widths and precisions, ``str.format`` specs, ``ljust``,
  ``lipsum``, repetition, concatenation) are checked *before* they allocate;
* containers are measured before they are printed or returned (a list that holds the
  same big list a thousand times prints as a thousand copies), by a walk that stops as
  soon as the allowance is spent.

Why not a thread the event loop could abandon: a thread cannot be killed in Python, so a
runaway render would keep a core busy after its step had timed out, and every ordinary
render would pay a thread hop (~50-100 µs, twice the engine's whole per-step budget).
Checking in the render keeps the common path inline and lets the deadline actually stop
the work. The engine sets the time limit (:func:`set_time_limit`) from the step's
``timeout`` and what is left of the run's, capped at :data:`MAX_RENDER_SECONDS`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, Final

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.visitor import NodeTransformer

__all__ = [
    "MAX_RENDER_SECONDS",
    "MAX_RENDER_SIZE",
    "Budget",
    "RenderLimit",
    "charge",
    "check_size",
    "current",
    "enter",
    "guard_filters",
    "instrument",
    "leave",
    "limit_renders",
    "set_time_limit",
    "tick",
]

MAX_RENDER_SECONDS: Final = 10.0
"""Longest any one template may render, whatever the timeouts (a legit one takes ms)."""

MAX_RENDER_SIZE: Final = 1 << 24
"""Characters and items one render may build in total (~16.8 million)."""

_LOOP_CHECK_EVERY: Final = 64  # loop iterations between two clock reads


class RenderLimit(SecurityError):
    """A render ran out of time or of size allowance."""


class Budget:
    """What is left to one render: a deadline (``time.monotonic``) and a size allowance."""

    __slots__ = ("deadline", "left", "seconds", "laps")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.left = MAX_RENDER_SIZE
        self.laps = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"template took longer than {self.seconds:g}s to render")

    def need(self, n: int, what: str) -> None:
        """Refuse, before building it, a value of ``n`` characters/items that will not fit."""
        if n > self.left:
            raise RenderLimit(
                f"{what} would build {n:,} characters or items, more than a template may ({MAX_RENDER_SIZE:,})"
            )

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise RenderLimit(f"template built more than {MAX_RENDER_SIZE:,} characters or items")


class _Local(threading.local):
    budget: Budget | None = None
    limit: float = MAX_RENDER_SECONDS


_local = _Local()


def set_time_limit(seconds: float | None) -> None:
    """Time limit of the renders that follow in this thread (None: the default cap)."""
    _local.limit = MAX_RENDER_SECONDS if seconds is None else max(0.0, min(seconds, MAX_RENDER_SECONDS))


def limit_renders(timeout: float | None, deadline: float | None) -> None:
    """Bound the renders that follow by a step's ``timeout`` and the run's ``deadline``.

    ``deadline`` is in ``time.monotonic()`` terms (asyncio's ``loop.time()``); None for
    ``finally`` steps, which run after the run's deadline. Rendering is synchronous, so
    without this a hostile template would hold the event loop past both timeouts.
    """
    if deadline is None:
        if timeout is None:  # the common case (twice a step): the default cap, without a call
            _local.limit = MAX_RENDER_SECONDS
            return
    else:
        left = deadline - time.monotonic()
        timeout = left if timeout is None or left < timeout else timeout
    set_time_limit(timeout)


def enter() -> Budget | None:
    """Open a budget for a render, unless one is open (a render within a render shares it)."""
    outer = _local.budget
    if outer is None:
        _local.budget = Budget(_local.limit)
    return outer


def leave(outer: Budget | None) -> None:
    if outer is None:
        _local.budget = None


def current() -> Budget | None:
    """The budget of the render in progress in this thread, if any."""
    return _local.budget


def tick() -> None:
    b = _local.budget
    if b is not None:
        b.tick()


def charge(value: Any) -> None:
    """Charge a built value's length (strings, lists, dicts) to the open budget."""
    b = _local.budget
    if b is not None and isinstance(value, (str, list, tuple, dict)):
        b.charge(len(value))


def check_size(value: Any, what: str = "the value") -> None:
    """Refuse a container whose printed form would exceed the allowance (shared parts count each time)."""
    if not isinstance(value, (list, tuple, dict)):
        return
    b = _local.budget
    limit = b.left if b is not None else MAX_RENDER_SIZE
    if _measure(value, limit) > limit:
        raise RenderLimit(f"{what} is larger than {MAX_RENDER_SIZE:,} characters or items")


def _measure(value: Any, limit: int) -> int:
    """Items plus characters of a nested value, stopping once over ``limit``."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        total += 1
        kind = type(v)
        if kind is str:
            total += len(v)
        elif kind is list or kind is tuple:
            stack.extend(v)
        elif kind is dict or isinstance(v, Mapping):
            for k, item in v.items():
                total += len(k) if type(k) is str else 1
                stack.append(item)
        if total > limit or len(stack) > limit:
            return limit + 1
    return total


# --------------------------------------------------------------------------- instrumenting


class _Instrument(NodeTransformer):
    """Route every loop and every ``~`` of a parsed template through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        literal = sum(len(d.data) for out in node.body if isinstance(out, nodes.Output)
                      for d in out.nodes if isinstance(d, nodes.TemplateData))  # fmt: skip
        node.iter = nodes.Filter(
            node.iter, "runner_loop", [nodes.Const(literal + 1)], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, "runner_concat", [], [], None, None, lineno=node.lineno)


def instrument(ast: nodes.Template) -> nodes.Template:
    """The parsed template with its loops and concatenations budgeted (in place)."""
    out = _Instrument().visit(ast)
    assert isinstance(out, nodes.Template)
    return out


def _loop(iterable: Any, cost: int) -> Any:
    b = _local.budget
    if b is None:
        yield from iterable
        return
    every = _LOOP_CHECK_EVERY
    for item in iterable:
        b.laps += 1
        if b.laps % every == 0:
            b.tick()
            b.charge(cost * every)
        yield item


def _concat(parts: list[Any]) -> str:
    b = _local.budget
    texts = []
    for p in parts:
        check_size(p, "a '~' operand")
        texts.append(p if type(p) is str else str(p))
    if b is not None:
        b.tick()
        n = sum(len(t) for t in texts)
        b.need(n, "'~'")
        b.charge(n)
    return "".join(texts)


# --------------------------------------------------------------------------- amplifiers

_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")


def check_percent(fmt: str, args: Any) -> None:
    """Refuse ``fmt % args`` whose widths or precisions would build more than allowed."""
    b = _local.budget
    left = b.left if b is not None else MAX_RENDER_SIZE
    seq = args if isinstance(args, tuple) else (args,)
    i = 0
    total = len(fmt)
    for m in _PERCENT.finditer(fmt):
        for part in (m.group(1), m.group(2)):
            if part == "*":
                n = seq[i] if i < len(seq) else 0
                i += 1
            else:
                n = int(part) if part and len(part) < 12 else (left + 1 if part else 0)
            if isinstance(n, int) and not isinstance(n, bool):
                total += abs(n)
        if m.group(3) != "%":
            i += 1
    if total > left:
        raise RenderLimit(
            f"'%' formatting would build {total:,} characters, more than a template may ({MAX_RENDER_SIZE:,})"
        )


def check_format_spec(spec: str) -> None:
    """Refuse a ``str.format`` field whose width or precision is larger than the allowance."""
    m = _SPEC.match(spec)
    if m is None:
        return
    b = _local.budget
    left = b.left if b is not None else MAX_RENDER_SIZE
    for part in m.groups():
        if part and (len(part) > 9 or int(part) > left):
            raise RenderLimit(f"format spec {spec[:40]!r} would build more than a template may ({MAX_RENDER_SIZE:,})")


def _int(x: Any, default: int = 0) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


def _lines(s: Any) -> int:
    return str(s).count("\n") + 1


def _pre_center(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    b.need(_int(a[0] if a else kw.get("width", 80)), "center")


def _pre_indent(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    w = a[0] if a else kw.get("width", 4)
    per = len(w) if isinstance(w, str) else _int(w)
    b.need(len(str(v)) + per * _lines(v), "indent")


def _pre_wordwrap(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    width = max(1, _int(a[0] if a else kw.get("width", 79), 79))
    wrap = a[2] if len(a) > 2 else kw.get("wrapstring")
    n = len(str(v))
    b.need(n + len(wrap if isinstance(wrap, str) else "\n") * (n // width + 1), "wordwrap")


def _pre_replace(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    if len(a) >= 2 and isinstance(v, str) and isinstance(a[0], str) and isinstance(a[1], str):
        count = v.count(a[0]) if a[0] else len(v) + 1
        if len(a) > 2 and isinstance(a[2], int) and a[2] >= 0:
            count = min(count, a[2])
        b.need(len(v) + count * len(a[1]), "replace")


def _pre_join(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    if isinstance(v, (list, tuple)):
        sep = a[0] if a else kw.get("d", "")
        n = sum(len(x) if type(x) is str else 1 for x in v) + len(str(sep)) * max(0, len(v) - 1)
        for x in v:
            check_size(x, "an item to join")
        b.need(n, "join")


def _pre_format(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    if isinstance(v, str):
        check_percent(v, kw or a)


def _pre_slice(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    b.need(_int(a[0] if a else kw.get("slices", 0)), "slice")


def _pre_printed(b: Budget, v: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
    check_size(v)


_PRE: Final[dict[str, Callable[[Budget, Any, tuple[Any, ...], dict[str, Any]], None]]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "replace": _pre_replace,
    "join": _pre_join,
    "format": _pre_format,
    "slice": _pre_slice,
    "string": _pre_printed,
    "tojson": _pre_printed,
    "pprint": _pre_printed,
    "urlencode": _pre_printed,
    "xmlattr": _pre_printed,
}


def _guard(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    pre = _PRE.get(name)
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0

    @wraps(fn)
    def filtered(*args: Any, **kwargs: Any) -> Any:
        b = _local.budget
        if b is None:  # Jinja folding constants at compile time: still bounded
            b = Budget(MAX_RENDER_SECONDS)
        b.tick()
        if pre is not None and len(args) > skip:
            value = args[skip]
            if name == "join" and not isinstance(value, (list, tuple, str)):
                value = list(value)  # a generator: measured once, then joined
                args = (*args[:skip], value, *args[skip + 1 :])
            pre(b, value, args[skip + 1 :], kwargs)
        rv = fn(*args, **kwargs)
        if isinstance(rv, (str, list, tuple, dict)):
            b.charge(len(rv))
        return rv

    return filtered


def guard_filters(filters: dict[str, Any]) -> None:
    """Wrap every filter (in place) so it ticks, pre-checks amplifiers and charges its output."""
    for name, fn in list(filters.items()):
        filters[name] = _guard(name, fn)
    filters["runner_loop"] = _loop
    filters["runner_concat"] = _concat


# --------------------------------------------------------------------------- calls

_WIDTH_METHODS: Final = frozenset({"center", "ljust", "rjust", "zfill"})


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a template calls ``obj``: tick, and refuse calls that would build too much."""
    b = _local.budget
    if b is None:
        b = Budget(MAX_RENDER_SECONDS)
    b.tick()
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name in _WIDTH_METHODS and args:
            b.need(_int(args[0]), f"str.{name}")
        elif name == "expandtabs":
            b.need(
                len(owner) + owner.count("\t") * _int(args[0] if args else kwargs.get("tabsize", 8), 8), "expandtabs"
            )
        elif name == "replace" and len(args) >= 2:
            _pre_replace(b, owner, args, {})
        elif name == "join" and args and isinstance(args[0], (list, tuple)):
            _pre_join(b, args[0], (owner,), {})
    elif name == "generate_lorem_ipsum":
        b.need(_int(args[0] if args else kwargs.get("n", 5), 5) * 1000, "lipsum")
