"""Static checks of template strings: what a template is wrong about and what it reads.

Validation asks, without rendering, what a string is wrong about (:func:`find_problems`:
syntax, statically visible sandbox abuse) and what it refers to
(:func:`referenced_steps`, :func:`referenced_roots`, :func:`referenced_result_fields`).
Each distinct string is analysed once per process (cached by its text); plain paths are
read off the fast path's grammar, anything else off Jinja's parse tree. Nothing here
compiles or renders a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, Final, NamedTuple

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from runner.template.regex import PATTERN_ARG, literal_pattern_problem
from runner.template.syntax import ENV, GLOBALS, PlainPath, fast_form, has_syntax

__all__ = [
    "find_problems",
    "lone_constant",
    "referenced_result_fields",
    "referenced_step_attributes",
    "referenced_roots",
    "referenced_steps",
]

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


_FORMAT_FIELD_RE: Final = re.compile(r"\{([^{}]*)\}")


class _Analysis(NamedTuple):
    """What validation needs to know about one template string (cached per text)."""

    problems: tuple[str, ...]
    roots: frozenset[str]
    steps: frozenset[str]
    fields: frozenset[tuple[str, str]]
    attrs: frozenset[tuple[str, str]] = frozenset()  # (step id, attribute) read as steps.X.ATTR


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


NESTING_MAX: Final = 100  # brackets a template may nest: Jinja's parser recurses per level


def _nesting(text: str) -> int:
    """The deepest nesting of ``(``, ``[`` and ``{`` in ``text`` (quotes not considered:
    an upper bound is what protects the parser)."""
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif ch in ")]}" and depth:
            depth -= 1
    return deepest


def _failed(message: str) -> _Analysis:
    return _Analysis((message,), frozenset(), frozenset(), frozenset())


@lru_cache(maxsize=131072)
def _analyze(text: str) -> _Analysis:
    if not has_syntax(text):
        return _NOTHING
    form = fast_form(text)
    if form is not None:
        paths = [form] if isinstance(form, PlainPath) else [p for p in form if isinstance(p, PlainPath)]
        return _analyze_paths(paths)
    if _nesting(text) > NESTING_MAX + 2:  # + the template's own {{ }}
        return _failed(f"template nested too deeply (more than {NESTING_MAX} levels of brackets)")
    try:
        ast = ENV.parse(text)
        return _analyze_ast(ast)
    except TemplateSyntaxError as exc:
        return _failed(f"template syntax error: {exc.message} (line {exc.lineno})")
    except RecursionError:  # deep nesting of another kind (operators, filters)
        return _failed("template nested too deeply for the parser")


def _analyze_paths(paths: list[PlainPath]) -> _Analysis:
    problems = _Problems()
    roots: set[str] = set()
    steps: set[str] = set()
    fields: set[tuple[str, str]] = set()
    attrs: set[tuple[str, str]] = set()
    for path in paths:
        for key in path.keys:
            if type(key) is str:
                problems.name(key)
        if path.root not in GLOBALS:
            roots.add(path.root)
        _note_step_chain((path.root, *path.keys), steps, fields, attrs)
    return _Analysis(tuple(problems.items), frozenset(roots), frozenset(steps), frozenset(fields), frozenset(attrs))


def _note_step_chain(
    chain: tuple[Any, ...], steps: set[str], fields: set[tuple[str, str]], attrs: set[tuple[str, str]]
) -> None:
    """Record ``steps.X``, ``steps.X.ATTR`` and ``steps.X.result.FIELD`` from a static lookup chain."""
    if len(chain) >= 2 and chain[0] == "steps" and type(chain[1]) is str:
        steps.add(chain[1])
        if len(chain) >= 3 and type(chain[2]) is str:
            attrs.add((chain[1], chain[2]))
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
    attrs: set[tuple[str, str]] = set()
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
                _note_step_chain(chain, steps, fields, attrs)
        elif isinstance(node, nodes.NSRef):
            problems.name(node.attr)
        elif isinstance(node, nodes.Filter):
            _check_filter(node, problems)
        elif isinstance(node, nodes.Test):
            if node.name not in ENV.tests:
                problems.add(f"template uses unknown test {node.name!r}")
            else:
                _check_pattern(node, problems)
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
    roots = frozenset(loads - stores - GLOBALS)
    return _Analysis(tuple(problems.items), roots, frozenset(steps), frozenset(fields), frozenset(attrs))


def _check_pattern(node: nodes.Filter | nodes.Test, problems: _Problems) -> None:
    """A literal pattern given to ``match``/``search``/``regex_replace`` must compile on RE2."""
    if node.name in PATTERN_ARG and node.args and isinstance(node.args[0], nodes.Const):
        problem = literal_pattern_problem(node.name, node.args[0].value)
        if problem is not None:
            problems.add(f"template {problem}")


def _check_filter(node: nodes.Filter, problems: _Problems) -> None:
    if node.name not in ENV.filters:
        problems.add(f"template uses unknown filter {node.name!r}")
        return
    _check_pattern(node, problems)
    if node.name in _ATTRIBUTE_FILTERS:
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
        if has_syntax(value):
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


def referenced_step_attributes(value: Any) -> set[tuple[str, str]]:
    """``(step_id, attribute)`` pairs read as ``steps.X.ATTR`` (``result``, ``status``...)."""
    found: set[tuple[str, str]] = set()
    for text in _template_strings(value):
        found |= _analyze(text).attrs
    return found


_NOT_CONSTANT: Final = object()


@lru_cache(maxsize=4096)
def _lone_constant(text: str) -> Any:
    try:
        body = ENV.parse(text).body
    except (TemplateSyntaxError, RecursionError):
        return _NOT_CONSTANT
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return _NOT_CONSTANT
    expr = body[0].nodes[0]
    if isinstance(expr, nodes.TemplateData):
        return _NOT_CONSTANT
    if isinstance(expr, (nodes.Const, nodes.List, nodes.Tuple, nodes.Dict)):
        try:
            return expr.as_const(nodes.EvalContext(ENV))
        except Exception:  # noqa: BLE001 - jinja's Impossible, or an error evaluating the literal
            return _NOT_CONSTANT
    return _NOT_CONSTANT


def lone_constant(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is one ``{{ literal }}`` (``{{ 42 }}``,
    ``{{ {'a': 1} }}``): its value is known before the run. Else ``(False, None)``."""
    if not has_syntax(text) or text.count("{{") != 1:
        return False, None
    value = _lone_constant(text.strip())
    return (False, None) if value is _NOT_CONSTANT else (True, value)


def referenced_result_fields(value: Any) -> set[tuple[str, str]]:
    """``(step_id, field)`` pairs read as ``steps.X.result.FIELD`` (for ``--deep`` checks)."""
    found: set[tuple[str, str]] = set()
    for text in _template_strings(value):
        found |= _analyze(text).fields
    return found
