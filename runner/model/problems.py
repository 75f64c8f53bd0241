"""Problems as runner reports them: ranks, order, "did you mean" hints, output formats.

A :class:`~runner.errors.Problem` carries a rank; lower is more fundamental and is shown
first, so the first line of ``runner validate`` is the thing to fix first. The ranks are
the layers of validation, in the order they run: YAML < JSON Schema < structure <
references < inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from runner.errors import Problem

__all__ = [
    "RANK_INPUTS",
    "RANK_REFERENCE",
    "RANK_SCHEMA",
    "RANK_STRUCTURE",
    "RANK_YAML",
    "format_problems",
    "has_errors",
    "Hinter",
    "hint",
    "sort_problems",
]

# Problem.rank: lower is more relevant and is reported first.
RANK_YAML = 0
RANK_SCHEMA = 10
RANK_STRUCTURE = 20
RANK_REFERENCE = 30
RANK_INPUTS = 40


def has_errors(problems: Iterable[Problem]) -> bool:
    """Whether any problem is an error (warnings and notes do not make a file invalid)."""
    return any(p.severity == "error" for p in problems)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Most relevant first: by rank; within a rank in file order, except schema problems,
    which keep their relevance order (shallowest first)."""
    return sorted(problems, key=lambda p: (p.rank, (0, 0) if p.rank == RANK_SCHEMA else (p.line, p.col)))


_HINT_WORD_MAX = 80  # difflib is quadratic in a word's length: no hint for longer words
_HINT_CHOICES_MAX = 10_000  # nor a fuzzy search among more choices than this (exact match only)
_HINT_WORK = 200_000  # word x choice comparisons one Hinter may spend on fuzzy searches


def hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else empty.

    Bounded: a very long word or a very long list of choices gets only the exact match
    modulo case and ``-``/``_`` (see :class:`Hinter` for many words against one list).
    """
    return Hinter(choices)(word)


class Hinter:
    """Did-you-mean for many words against one list of choices, in bounded time.

    The normalised exact match is a dict lookup; the fuzzy (difflib) search runs for the
    first ``budget`` words only: a generated file with 80,000 unknown keys or 3,000
    unknown ``depends_on`` ids must not cost a difflib search each (that took minutes),
    and the report shows only the first problems anyway.
    """

    __slots__ = ("_exact", "_options", "_synonyms", "budget")

    def __init__(self, choices: Iterable[str], budget: int = 200, synonyms: Mapping[str, str] | None = None) -> None:
        self._options = [c for c in choices if isinstance(c, str)]
        # another system's word for a choice ("needs" -> "depends_on"), used when that choice exists
        self._synonyms = {k: v for k, v in (synonyms or {}).items() if v in self._options}
        self._exact: dict[str, str] = {}
        for c in self._options:
            self._exact.setdefault(c.replace("-", "_").lower(), c)
        self.budget = min(budget, _HINT_WORK // max(1, len(self._options)))

    def __call__(self, word: str) -> str:
        if not isinstance(word, str):
            return ""
        exact = self._exact.get(word.replace("-", "_").lower()) or self._synonyms.get(word)
        if exact is not None:
            return f" (did you mean {exact!r}?)"
        if self.budget <= 0 or len(word) > _HINT_WORD_MAX or len(self._options) > _HINT_CHOICES_MAX:
            return ""
        self.budget -= 1
        import difflib  # only when there is something to hint at: the loader imports this module

        options = [c for c in self._options if len(c) <= 3 * _HINT_WORD_MAX]
        close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""


def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


_GH_LEVEL = {"error": "error", "warning": "warning"}


def format_problems(problems: Sequence[Problem], fmt: str = "text", limit: int = 0) -> str:
    """Render problems as ``text`` lines, a ``json`` list, or ``github`` annotations.

    text: ``file:line:col: message [json.path]`` per line (warnings and notes say so);
    json: a list of {file, line, col, message, path, severity};
    github: ``::error file=F,line=L,col=C::message [path]`` (GitHub's workflow-command syntax).
    ``limit`` > 0 shows the first ``limit`` problems and then one ``info`` entry saying how
    many more there are: a generated or hostile file must not flood a CI log.
    """
    shown = list(problems)
    if limit > 0 and len(shown) > limit:
        rest = shown[limit:]
        n_err = sum(1 for p in rest if p.severity == "error")
        first = rest[0]
        shown = shown[:limit] + [
            Problem(
                f"and {len(rest):,} more problem(s) ({n_err:,} error(s)) not shown; --max-problems 0 shows all",
                "$",
                first.file,
                0,
                0,
                severity="info",
            )
        ]
    if fmt == "json":
        return json.dumps([p.to_json() for p in shown], indent=2, ensure_ascii=False)
    if fmt == "github":
        lines = []
        for p in shown:
            props = [f"file={_gh_prop(p.file)}"]
            if p.line:
                props += [f"line={p.line}", f"col={p.col}"]
            level = _GH_LEVEL.get(p.severity, "notice")
            lines.append(f"::{level} {','.join(props)}::{_gh_data(f'{p.message} [{p.path}]')}")
        return "\n".join(lines)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: use text, json or github")
    return "\n".join(_text_line(p) for p in shown)


def _text_line(p: Problem) -> str:
    if p.severity == "error":
        return p.format()
    if not p.line:
        return f"{p.file}: {p.severity}: {p.message}" + ("" if p.path == "$" else f" [{p.path}]")
    return f"{p.file}:{p.line}:{p.col}: {p.severity}: {p.message} [{p.path}]"
