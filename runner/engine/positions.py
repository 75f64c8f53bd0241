"""Where in the workflow file a template that failed at run time was written.

A render error found while the run goes (a value that is not JSON data, an undefined
field) names its template; this module adds the ``file:line:col`` of that template and
the field it fills (``tool_arguments.query[0]``), as validation messages do. Positions
are found only when an error is reported — the workflow's text is parsed again then
(cached), so the run itself keeps no source map.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from runner.load.yaml import SourceMap, load_yaml
from runner.model import StepSpec, Workflow
from runner.model.data import json_path
from runner.template import TemplateError

__all__ = ["output_error", "step_error"]


def step_error(wf: Workflow, spec: StepSpec, field: str | None, exc: TemplateError) -> str:
    """``file:line:col: field.path: message`` for a template of step ``spec``.

    ``field`` is the YAML key the template is under; None for the step's arguments
    (``with`` of a ``uses:`` step, else ``tool_arguments``).
    """
    if field is None:
        field = "with" if spec.calls_workflow else "tool_arguments"
    steps, key = (wf.finally_steps, "finally") if spec.is_finally else (wf.steps, "steps")
    index = next((i for i, s in enumerate(steps) if s is spec or s.step_id == spec.step_id), None)
    where = _locate(wf, (key, index, field, *exc.path)) if index is not None else ""
    return f"{where}{_label(field, exc.path)}: {exc}"


def output_error(wf: Workflow, name: str, exc: TemplateError) -> str:
    """``file:line:col: outputs.name: message`` for a workflow output that failed to render."""
    return f"{_locate(wf, ('outputs', name, *exc.path))}{_label('outputs', (name, *exc.path))}: {exc}"


def _label(field: str, path: tuple[str | int, ...]) -> str:
    """``tool_arguments.query[0]``: the field, then the JSON path inside it."""
    return field + json_path(path)[1:]


def _locate(wf: Workflow, path: tuple[Any, ...]) -> str:
    """``file:line:col: `` of ``path`` in the workflow's text, or ``""`` when it has none."""
    if not wf.source_text:
        return ""
    smap = _source_map(wf.source_text, wf.source or "<string>")
    if smap is None:
        return ""
    line, col = smap.position(path)
    return f"{smap.file}:{line}:{col}: "


@lru_cache(maxsize=8)
def _source_map(text: str, file: str) -> SourceMap | None:
    try:
        return load_yaml(text, file)[1]
    except Exception:  # noqa: BLE001 - the text ran already; a position is only a nicety
        return None
