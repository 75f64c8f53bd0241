"""Data files named on the command line (``--inputs``, ``--secrets``): the workflow loader's equal.

They go through the same strict, bounded YAML loader as workflow files
(:func:`runner.load.yaml.load_yaml`): at most ``MAX_FILE_BYTES`` read (``/dev/zero`` is
refused, not read until memory runs out), UTF-8 checked, nesting depth and alias
expansion bounded, recursive aliases refused, integers that could not be printed and
NaN/Infinity refused (JSON holds neither). Every problem becomes :class:`InputInvalid`
(exit 2) naming the option and the position at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import InputInvalid, WorkflowInvalid
from runner.load.yaml import load_yaml, read_text

__all__ = ["load_data_file"]


def load_data_file(path: str | Path, option: str) -> Any:
    """The plain value of a YAML/JSON file given to ``option``; InputInvalid when it is bad."""
    try:
        text = read_text(path, what="file")
        data, _ = load_yaml(text, str(path))
    except WorkflowInvalid as exc:
        raise InputInvalid(f"{option}: " + _describe(exc)) from None
    return data


def _describe(exc: WorkflowInvalid) -> str:
    problems = exc.problems
    if not problems:
        return str(exc)
    first = problems[0]
    text = first.format() if first.line else first.message
    return text + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
