"""The regex filters and tests of templates — ``match``, ``search``, ``regex_replace`` — on RE2.

A listing filtered by name needs a regular expression, but Python's ``re`` backtracks:
``'x' is match('^(a+)+$')`` against a long run of ``a`` would hold the render (and the run)
for minutes, past any budget tick. These run on :mod:`runner.model.regex` (RE2, linear
time in the text), so a pattern from a workflow or from an agent's output cannot hang the
runner. An invalid or unsupported pattern (backreferences, lookaround) is a render error
naming the pattern; where the pattern is a literal, ``runner validate`` reports it first
(:func:`literal_pattern_problem`).
"""

from __future__ import annotations

from typing import Any, Final

from jinja2.exceptions import FilterArgumentError

from runner.model.regex import RegexError, compile_regex

__all__ = ["FILTERS", "PATTERN_ARG", "TESTS", "literal_pattern_problem"]


def _compiled(name: str, pattern: Any) -> Any:
    if not isinstance(pattern, str):
        raise FilterArgumentError(f"{name}: the pattern must be a string, not {type(pattern).__name__}")
    try:
        return compile_regex(pattern)
    except RegexError as exc:
        raise FilterArgumentError(f"{name}: {exc}") from None


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    raise FilterArgumentError(f"{name}: applies to a string, not {type(value).__name__}")


def match(value: Any, pattern: Any) -> bool:
    """Whether ``pattern`` matches at the start of ``value`` (like ``re.match``)."""
    return _compiled("match", pattern).match(_text("match", value)) is not None


def search(value: Any, pattern: Any) -> bool:
    """Whether ``pattern`` matches anywhere in ``value`` (like ``re.search``)."""
    return _compiled("search", pattern).search(_text("search", value)) is not None


def regex_replace(value: Any, pattern: Any, replacement: Any = "", count: Any = 0) -> str:
    r"""``value`` with the first ``count`` matches (0: all) replaced; ``\1``/``\g<name>`` refer to groups."""
    if not isinstance(replacement, str):
        raise FilterArgumentError(f"regex_replace: the replacement must be a string, not {type(replacement).__name__}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FilterArgumentError(f"regex_replace: count must be a non-negative integer, not {count!r}")
    rx = _compiled("regex_replace", pattern)
    try:
        return str(rx.sub(replacement, _text("regex_replace", value), count=count))
    except Exception as exc:  # re2 raises re.error-like errors for a bad group reference
        raise FilterArgumentError(f"regex_replace: invalid replacement {replacement[:80]!r}: {exc}") from None


FILTERS: Final = {"match": match, "search": search, "regex_replace": regex_replace}
TESTS: Final = {"match": match, "search": search}
PATTERN_ARG: Final = frozenset(FILTERS)
"""Filters and tests whose first argument is a pattern (checked when it is a literal)."""


def literal_pattern_problem(name: str, pattern: Any) -> str | None:
    """The validation problem of a literal pattern given to a regex filter or test, if any."""
    if not isinstance(pattern, str):
        return f"{name}: the pattern must be a string, not {type(pattern).__name__}"
    try:
        compile_regex(pattern)
    except RegexError as exc:
        return f"{name}: {exc}"
    return None
