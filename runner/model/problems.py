"""Problems as runner reports them: ranks, order, "did you mean" hints, output formats.

A :class:`~runner.errors.Problem` carries a rank; lower is more fundamental and is shown
first, so the first line of ``runner validate`` is the thing to fix first. The ranks are
the layers of validation, in the order they run: YAML < JSON Schema < structure <
references < inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from runner.errors import Problem

__all__ = [
    "RANK_INPUTS",
    "RANK_REFERENCE",
    "RANK_SCHEMA",
    "RANK_STRUCTURE",
    "RANK_YAML",
    "format_problems",
    "has_errors",
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


def hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else empty."""
    options = [c for c in choices if isinstance(c, str)]
    norm = word.replace("-", "_").lower()
    for c in options:
        if c.replace("-", "_").lower() == norm:
            return f" (did you mean {c!r}?)"
    import difflib  # only when there is something to hint at: the loader imports this module

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


_GH_LEVEL = {"error": "error", "warning": "warning"}


def format_problems(problems: Sequence[Problem], fmt: str = "text") -> str:
    """Render problems as ``text`` lines, a ``json`` list, or ``github`` annotations.

    text: ``file:line:col: message [json.path]`` per line (warnings and notes say so);
    json: a list of {file, line, col, message, path, severity};
    github: ``::error file=F,line=L,col=C::message [path]`` (GitHub's workflow-command syntax).
    """
    if fmt == "json":
        return json.dumps([p.to_json() for p in problems], indent=2, ensure_ascii=False)
    if fmt == "github":
        lines = []
        for p in problems:
            props = [f"file={_gh_prop(p.file)}"]
            if p.line:
                props += [f"line={p.line}", f"col={p.col}"]
            level = _GH_LEVEL.get(p.severity, "notice")
            lines.append(f"::{level} {','.join(props)}::{_gh_data(f'{p.message} [{p.path}]')}")
        return "\n".join(lines)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: use text, json or github")
    return "\n".join(
        p.format() if p.severity == "error" else f"{p.file}:{p.line}:{p.col}: {p.severity}: {p.message} [{p.path}]"
        for p in problems
    )
