"""The order a workflow's files write its steps in, nested calls included.

``runner runs show`` lists a stored run's steps; the store keeps them in the order they
first appeared (starts, skips), which interleaves parallel branches and concurrent nested
runs. ``runner run --output json`` lists them in workflow order: each step where its file
writes it (``steps``, then ``finally``), the steps of a nested run (``team/decompose``,
``teams[2]/decompose``) right after the step that called it, calls in item order, each
callee's steps in its own file's order. This module gives that order for any step id.

It reads YAML only, nothing is validated: the history of a run must show even when its
workflow would no longer load (an agent gone from the registry, a changed callee). Ids
the text does not know (a step since removed, a callee that cannot be read) sort after
the ones it knows, among themselves in the order the caller gave them (the sort is stable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from runner.errors import WorkflowInvalid
from runner.load.calls import MAX_CALL_DEPTH
from runner.load.yaml import load_yaml, read_text
from runner.model.nesting import SEP, split_call

__all__ = ["written_order"]

UNKNOWN: Final = 1 << 40
"""The position of an id the text does not know: after every known one."""


class _Body:
    """One workflow's text (a file, or an inline ``workflow:`` body): its steps by id."""

    __slots__ = ("file", "positions", "steps")

    def __init__(self, data: Any, file: str | None) -> None:
        self.file = file
        self.steps: dict[str, Mapping[str, Any]] = {}
        self.positions: dict[str, int] = {}
        seqs = [data.get(k) for k in ("steps", "finally")] if isinstance(data, Mapping) else []
        for step in (s for seq in seqs if isinstance(seq, list) for s in seq):
            sid = step.get("step_id") if isinstance(step, Mapping) else None
            if isinstance(sid, str) and sid not in self.positions:
                self.positions[sid] = len(self.positions)
                self.steps[sid] = step


def written_order(text: str, file: str | None) -> Callable[[str], tuple[int, ...]]:
    """A sort key putting step ids (``a``, ``team/decompose``, ``teams[2]/work``) in the
    order ``text`` (the workflow read from ``file``) and its callees write them.

    Raises WorkflowInvalid when ``text`` is not YAML; a callee that cannot be read only
    leaves its steps unknown.
    """
    top = _Body(load_yaml(text, file or "<string>")[0], file)
    files: dict[str, _Body | None] = {}  # callee files, each read once
    callees: dict[int, _Body | None] = {}  # by id() of the calling step's mapping

    def callee(body: _Body, step: Mapping[str, Any]) -> _Body | None:
        if id(step) not in callees:
            callees[id(step)] = _callee(body, step, files)
        return callees[id(step)]

    def key(step_id: str) -> tuple[int, ...]:
        out: list[int] = []
        body: _Body | None = top
        parts = step_id.split(SEP)
        for depth, part in enumerate(parts):
            name, index = split_call(part) if depth < len(parts) - 1 else (part, None)
            pos = None if body is None or depth > MAX_CALL_DEPTH else body.positions.get(name)
            if body is None or pos is None:
                out.append(UNKNOWN)
                break
            out.append(pos)
            if depth < len(parts) - 1:  # a call: its item, then the callee's own order
                out.append(0 if index is None else index + 1)
                body = callee(body, body.steps[name])
        return tuple(out)

    return key


def _callee(body: _Body, step: Mapping[str, Any], files: dict[str, _Body | None]) -> _Body | None:
    """The body ``step`` calls: its inline ``workflow:``, or the file its ``uses:`` names."""
    inline = step.get("workflow")
    if isinstance(inline, Mapping):
        return _Body(inline, body.file)
    uses = step.get("uses")
    if not isinstance(uses, str):
        return None
    from runner.load.patterns import resolve_uses

    try:
        path = str(resolve_uses(uses, body.file))
    except WorkflowInvalid:
        return None
    if path not in files:
        try:
            files[path] = _Body(load_yaml(read_text(path), path)[0], path)
        except WorkflowInvalid:
            files[path] = None
    return files[path]
