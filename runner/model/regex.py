"""Regular expressions on a linear-time engine (RE2), for patterns users and agents write.

Python's ``re`` backtracks: ``'^(a+)+$'`` against forty ``a``s and a ``!`` runs for
minutes. Every pattern that comes from a workflow — an input schema's ``pattern``, the
``match``/``search``/``regex_replace`` template filters — is compiled here instead, on
RE2 (the ``google-re2`` package), whose matching time is linear in the text. RE2 has no
backreferences and no lookaround; a pattern using them is refused with a message
saying so, at validate time where the pattern is literal.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["PATTERN_MAX", "RegexError", "compile_regex"]

PATTERN_MAX = 4096  # characters of one pattern
_MAX_MEM = 8 << 20  # bytes RE2 may use for one compiled pattern


class RegexError(ValueError):
    """A pattern RE2 cannot compile (syntax, or a feature it does not have)."""


@lru_cache(maxsize=512)
def compile_regex(pattern: str) -> Any:
    """The compiled RE2 pattern; :class:`RegexError` with the reason if it is invalid."""
    if not isinstance(pattern, str):
        raise RegexError(f"a pattern must be a string, not {type(pattern).__name__}")
    if len(pattern) > PATTERN_MAX:
        raise RegexError(f"pattern too long ({len(pattern):,} characters; at most {PATTERN_MAX:,})")
    import re2  # a compiled extension: imported on first use, not by `runner validate` of a plain file

    options = re2.Options()
    options.log_errors = False  # RE2 would write its own copy of the error to stderr
    options.max_mem = _MAX_MEM
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if "invalid perl operator" in str(reason) or "invalid escape" in str(reason):
            reason = f"{reason} (backreferences and lookaround are not supported: patterns run on RE2)"
        raise RegexError(f"invalid regular expression {pattern[:80]!r}: {reason}") from None
