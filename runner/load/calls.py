"""What a workflow's calls (``uses:``, ``workflow:``) can only be judged across files.

``runner validate`` must say what ``runner run`` would refuse at load time, so these checks
follow every call through its callees before anything runs:
- a chain of ``uses:`` that comes back to a file already on it (recursion, also through
  inline ``workflow:`` bodies) would never end;
- a pull step (no ``tool_to_call``, no call) inside a called workflow would wait for a
  report that can never reach it: a nested run has no place in the store a report could
  name, so it would hang until its timeout.
Every problem is placed on the calling file's ``uses:``/``workflow:`` key, naming the chain.
Callee files that cannot be read or are invalid are left to the checks that own them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import Problem, WorkflowInvalid
from runner.load.yaml import PathT, SourceMap, load_yaml, read_text

MAX_CALL_DEPTH = 32  # a deeper chain of distinct files is refused, not followed


def call_problems(data: dict[str, Any], smap: SourceMap) -> list[Problem]:
    """Recursion and pull steps anywhere below ``data``'s calls; each problem is placed at
    the ``uses:``/``workflow:`` key that makes the offending call, in the file that holds it."""
    return list(_in_file(data, (), smap, (_identity(smap.file),), set()))


def _in_file(data: Any, prefix: PathT, smap: SourceMap, stack: tuple[str, ...], seen: set[str]) -> Iterator[Problem]:
    """``seen``: callee files already followed; each is followed once (a file called from many
    places, at many depths, costs one visit, so a generated tree of calls stays linear)."""
    if len(stack) > MAX_CALL_DEPTH:
        yield smap.problem(f"calls nest more than {MAX_CALL_DEPTH} files deep", prefix)
        return
    for path, step in _steps(data, prefix):
        sid = str(step.get("step_id", "?"))
        if "uses" in step:
            yield from _uses(step, sid, (*path, "uses"), smap, stack, seen)
            continue
        body = step.get("workflow")
        if not isinstance(body, dict):
            continue
        pull = _pull_steps(body)
        if pull:
            yield smap.problem(f"step '{sid}': {_pull_message(pull)}", (*path, "workflow"))
        else:  # an inline body is this file: its own calls are placed where they are written
            yield from _in_file(body, (*path, "workflow"), smap, stack, seen)


def _uses(
    step: dict[str, Any], sid: str, at: PathT, smap: SourceMap, stack: tuple[str, ...], seen: set[str]
) -> Iterator[Problem]:
    uses = step.get("uses")
    if not isinstance(uses, str) or "{" in uses:
        return
    from runner.load.patterns import resolve_uses

    try:
        target = resolve_uses(uses, smap.file)
    except WorkflowInvalid:
        return  # reported by the check of `uses:` itself
    key = str(target.resolve())
    if key in stack:
        names = " -> ".join(Path(p).name for p in (*stack, key))
        yield smap.problem(f"step '{sid}': uses: recursion ({names})", at)
        return
    if key in seen:
        return
    seen.add(key)
    try:
        body, callee = load_yaml(read_text(target), str(target))
    except WorkflowInvalid:
        return  # an unreadable or invalid callee is reported as such
    if not isinstance(body, dict):
        return
    pull = _pull_steps(body)
    if pull:
        yield smap.problem(f"step '{sid}': {_pull_message(pull)}", at)
        return
    yield from _in_file(body, (), callee, (*stack, key), seen)


def _pull_message(pull: list[str]) -> str:
    return (
        f"the called workflow has pull step(s) {', '.join(map(repr, pull))} (no tool_to_call); "
        "a nested run cannot receive reports, so pull steps belong in the top-level workflow"
    )


def _identity(file: str) -> str:
    p = Path(file)
    try:
        return str(p.resolve()) if p.is_file() else file
    except (OSError, ValueError):
        return file


def _steps(data: Any, prefix: PathT) -> Iterator[tuple[PathT, dict[str, Any]]]:
    """Each step of ``data`` that calls a workflow, with its path."""
    if not isinstance(data, dict):
        return
    for section in ("steps", "finally"):
        seq = data.get(section)
        if not isinstance(seq, list):
            continue
        for i, step in enumerate(seq):
            if isinstance(step, dict) and ("uses" in step or "workflow" in step):
                yield (*prefix, section, i), step


def _pull_steps(data: dict[str, Any]) -> list[str]:
    out = []
    for section in ("steps", "finally"):
        seq = data.get(section)
        for step in seq if isinstance(seq, list) else ():
            if isinstance(step, dict) and not ({"tool_to_call", "uses", "workflow"} & step.keys()):
                out.append(str(step.get("step_id", "?")))
    return out
