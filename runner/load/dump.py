"""The frozen model → plain data → YAML: the inverse of :mod:`runner.load.build`.

``runner expand`` prints a workflow with every ``uses:`` replaced by the ``workflow:`` it
calls; that output must validate and run exactly like the original, so it is made from
the loaded model (what runs), never by editing the text. Values a file may leave out
(defaults) are left out, keys come in the order people write them, and templates are
printed as written (nothing is rendered, no secret is read).

The model normalizes some literals (``if: false`` is the template ``{{ false }}``, a
duration is seconds, ``backoff: 2`` is ``2.0``, ``depends_on: a`` is ``(a,)``). Where the
file's own spelling of such a value builds to exactly the model's value, that spelling is
printed, so an author reads back what they wrote; elsewhere (a value the text does not
hold, e.g. a model built in code) the model's canonical form is.

Inlining moves a callee's text into the calling file, and a few things in an agent are
relative to the file that declares it: a relative stdio ``cwd`` is rewritten to stay the
same directory; a templated relative ``cwd`` or an in-process ``module`` (imported from
the declaring file's directory) cannot be, and is refused with its position.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from runner.errors import Problem, WorkflowInvalid
from runner.load.build import condition_text
from runner.load.yaml import PathT, json_path, load_yaml
from runner.model import AgentSpec, RetryPolicy, StepSpec, TransportKind, Workflow, parse_duration

__all__ = ["expand_workflow", "to_yaml", "workflow_data"]

_AGENT_KEYS = (
    "id", "name", "role", "capabilities", "description", "transport", "command", "args", "env", "cwd", "url",
    "headers", "module", "max_concurrency", "required", "timeout", "model_type", "model_version", "group",
)  # fmt: skip


def workflow_data(wf: Workflow) -> dict[str, Any]:
    """``wf`` as the mapping a workflow file holds (its steps' callees left as written)."""
    return _Dumper(expand=False, home=None).workflow(wf, (wf, ()), inline_of=None, raw=_read(wf))


def expand_workflow(wf: Workflow, home: str | None = None) -> dict[str, Any]:
    """``wf`` with every ``uses:`` replaced by ``workflow:`` holding the callee, recursively.

    The result runs from the directory ``home`` (default: that of ``wf``'s file): where
    the output is written. WorkflowInvalid if an agent depends on the directory of the
    file that declares it in a way that cannot be rewritten.
    """
    if home is None and wf.source and os.path.isfile(wf.source):
        home = os.path.dirname(os.path.abspath(wf.source))
    home = None if home is None else os.path.abspath(home)
    return _Dumper(expand=True, home=home).workflow(wf, (wf, ()), inline_of=None, raw=_read(wf))


def to_yaml(data: Mapping[str, Any]) -> str:
    """YAML in the given key order: short lists and mappings of scalars on one line
    (``[a, b]``), the rest in blocks; multi-line strings as ``|`` blocks; no line folded."""
    return yaml.dump(dict(data), Dumper=_Dumper.Yaml, sort_keys=False, allow_unicode=True, width=_NO_WRAP)


def _duration_or_none(seconds: float | None) -> Any:
    return None if seconds is None else _duration(seconds)


def _tuple(value: Any) -> tuple[Any, ...]:
    """What :mod:`runner.load.build` makes of a list-or-one value (``depends_on: a``)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _duration(seconds: float) -> Any:
    """A duration as people write it (``30s``, ``500ms``), if that reads back exactly."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds and (seconds / size).is_integer() and parse_duration(f"{int(seconds / size)}{unit}") == seconds:
            return f"{int(seconds / size)}{unit}"
    text = f"{round(seconds * 1000)}ms"
    return text if parse_duration(text) == seconds else seconds


_Raw = Mapping[str, Any] | None  # the mapping a file holds for the thing being written, if known


def _read(wf: Workflow) -> _Raw:
    """The mapping ``wf``'s text holds (None without a text), to spell values as written."""
    if wf.source_text is None:
        return None
    try:
        data = load_yaml(wf.source_text, wf.source or "<string>")[0]
    except WorkflowInvalid:
        return None
    return data if isinstance(data, Mapping) else None


def _entry(raw: _Raw, section: str, index: int, key: str, ident: str) -> _Raw:
    """``raw[section][index]`` if it is the mapping whose ``key`` is ``ident`` (the model's
    step or agent at that index), else None."""
    seq = raw.get(section) if raw is not None else None
    if not isinstance(seq, list) or index >= len(seq):
        return None
    item = seq[index]
    return item if isinstance(item, Mapping) and item.get(key) == ident else None


def _as_written(raw: _Raw, key: str, value: Any, build: Callable[[Any], Any], shown: Any) -> Any:
    """``raw[key]`` when it builds to ``value`` (the model's), else ``shown`` (the model's
    canonical spelling of it): ``if: false``, ``timeout: 90``, ``backoff: 2`` read back as
    written, and the expansion still loads as the same model."""
    if raw is None or raw.get(key) is None:
        return shown
    try:
        same = bool(build(raw[key]) == value)
    except (TypeError, ValueError):
        same = False
    return raw[key] if same else shown


def _seconds(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def _put(out: dict[str, Any], key: str, value: Any, default: Any = None) -> None:
    if value is not None and value != default and not (isinstance(value, (tuple, list, Mapping)) and not value):
        out[key] = _plain(value)


def _plain(value: Any) -> Any:
    """Tuples → lists, mappings → dicts, all the way down (what YAML and JSON hold)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Dumper:
    """One serialization: whether to inline ``uses:``, and the directory the output runs from."""

    class Yaml(yaml.SafeDumper):
        """SafeDumper that indents lists under their key and writes multi-line strings as blocks."""

        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)

    def __init__(self, *, expand: bool, home: str | None) -> None:
        self.expand = expand
        self.home = home

    # where: the workflow whose text holds this one, and its path in that text (for problems)
    # raw: the mapping the text holds for this workflow (None if unknown), for spellings
    def workflow(self, wf: Workflow, where: tuple[Workflow, PathT], inline_of: str | None, raw: _Raw) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if inline_of is None or wf.name != inline_of:
            out["name"] = wf.name
        _put(out, "description", wf.description)
        _put(out, "inputs", wf.inputs)
        if wf.agents:
            out["agents"] = [
                self.agent(a, i, where, _entry(raw, "agents", i, "id", a.id)) for i, a in enumerate(wf.agents)
            ]
        _put(out, "concurrency", wf.concurrency, 16)
        _put(out, "timeout", _as_written(raw, "timeout", wf.timeout, _seconds, _duration_or_none(wf.timeout)))
        if inline_of is None:  # a nested run goes where its caller goes: not in a body
            _put(out, "runs_on", wf.runs_on)
        out["steps"] = [
            self.step(wf, s, where, ("steps", i), _entry(raw, "steps", i, "step_id", s.step_id))
            for i, s in enumerate(wf.steps)
        ]
        if wf.finally_steps:
            out["finally"] = [
                self.step(wf, s, where, ("finally", i), _entry(raw, "finally", i, "step_id", s.step_id))
                for i, s in enumerate(wf.finally_steps)
            ]
        _put(out, "outputs", wf.outputs)
        if inline_of is None:
            _put(out, "agent_modifiable", wf.agent_modifiable, False)
        return out

    def step(self, wf: Workflow, s: StepSpec, where: tuple[Workflow, PathT], at: PathT, raw: _Raw) -> dict[str, Any]:
        out: dict[str, Any] = {"step_id": s.step_id}
        _put(out, "description", s.description)
        _put(out, "assigned_agent_id", s.assigned_agent_id)
        _put(out, "assigned_role", s.assigned_role)
        for key in ("required_capabilities", "fallback_agents", "depends_on"):  # one template or id, or a list
            value = getattr(s, key)
            _put(out, key, _as_written(raw, key, value, _tuple, value))
        _put(out, "if", _as_written(raw, "if", s.condition, condition_text, s.condition))
        if s.for_each is not None:  # an empty literal list is meaningful: no items
            out["for_each"] = _plain(s.for_each)
        _put(out, "max_parallel", s.max_parallel)
        _put(out, "tool_to_call", s.tool_to_call)
        _put(out, "tool_arguments", s.tool_arguments)
        child = wf.children.get(s.step_id)
        inline = s.inline is not None or (self.expand and s.uses is not None and child is not None)
        if not inline:
            _put(out, "uses", s.uses)
        _put(out, "with", s.with_)
        templated = dict(wf.step_templates.get(s.step_id, ()))  # the fields hold defaults until a run
        raw_retry = raw.get("retry") if raw is not None else None
        retry = self.retry(s.retry, raw_retry if isinstance(raw_retry, Mapping) else None, templated)
        if retry:
            out["retry"] = retry
        timeout = _as_written(raw, "timeout", s.timeout, _seconds, _duration_or_none(s.timeout))
        _put(out, "timeout", templated.get("timeout", timeout))
        _put(out, "continue_on_error", s.continue_on_error, False)
        if inline:  # last: the body is long, the step's own keys read first
            if child is None:  # a model built without its callees: what was written
                out["workflow"] = _plain(s.inline)
            else:
                top, prefix = where
                body: _Raw = s.inline  # written in this file: its text is the step's own
                inner = (top, (*prefix, *at, "workflow"))
                if s.inline is None:
                    inner, body = (child, ()), _read(child)
                out["workflow"] = self.workflow(child, inner, inline_of=s.step_id, raw=body)
        return out

    @staticmethod
    def retry(r: RetryPolicy, raw: _Raw, templated: Mapping[str, str]) -> dict[str, Any]:
        """The policy's keys in the usual order; a templated one as written (it holds its
        default in the model until a run renders it)."""
        out: dict[str, Any] = {}
        _put(out, "max_attempts", templated.get("retry.max_attempts", r.max_attempts), 1)
        delay = _as_written(raw, "delay", r.delay, _seconds, _duration(r.delay) if r.delay else None)
        _put(out, "delay", templated.get("retry.delay", delay), 0)
        _put(out, "backoff", _as_written(raw, "backoff", r.backoff, float, r.backoff), 1.0)
        _put(out, "max_delay", _as_written(raw, "max_delay", r.max_delay, _seconds, _duration_or_none(r.max_delay)))
        _put(out, "jitter", _as_written(raw, "jitter", r.jitter, float, r.jitter), 0.0)
        return out

    def agent(self, a: AgentSpec, index: int, where: tuple[Workflow, PathT], raw: _Raw) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _AGENT_KEYS:
            value = getattr(a, key)
            if key == "transport":
                _put(out, key, str(value), "stdio")
            elif key == "timeout":
                _put(out, key, _as_written(raw, key, value, _seconds, _duration_or_none(value)))
            else:
                _put(out, key, value)
        moved = self._moved_from(a)
        if moved is not None:
            top, prefix = where
            if a.transport == TransportKind.INPROCESS:
                raise _refuse(
                    top,
                    (*prefix, "agents", index, "module"),
                    f"agent {a.id!r} is in-process: its module is imported from {moved}, and the expanded "
                    f"workflow runs from {self.home}; keep this callee a uses: (or write the output next to it)",
                )
            if a.cwd and not os.path.isabs(os.path.expanduser(a.cwd)):
                if "{" in a.cwd:
                    raise _refuse(
                        top,
                        (*prefix, "agents", index, "cwd"),
                        f"agent {a.id!r}: the templated cwd {a.cwd!r} is relative to {moved}, and the expanded "
                        f"workflow runs from {self.home}; a template cannot be rewritten: make it absolute "
                        "or keep this callee a uses:",
                    )
                assert self.home is not None
                out["cwd"] = os.path.relpath(os.path.join(moved, a.cwd), self.home)
        return out

    def _moved_from(self, a: AgentSpec) -> str | None:
        """The directory ``a`` was declared in, if inlining moves it to another one."""
        if not self.expand or self.home is None or not a.source or not os.path.isfile(a.source):
            return None
        src = os.path.dirname(os.path.abspath(a.source))
        return None if src == self.home else src


_NO_WRAP = 1 << 20  # a folded line is valid YAML, but a template split in two is hard to read
_FLOW_MAX = 72  # characters of a collection written on one line


def _one_line(value: Mapping[str, Any] | list[Any]) -> bool:
    items = list(value.items()) if isinstance(value, Mapping) else [(None, v) for v in value]
    if not items or any(isinstance(v, (Mapping, list)) or (isinstance(v, str) and "\n" in v) for _, v in items):
        return False
    return sum(len(str(k or "")) + len(str(v)) + 4 for k, v in items) <= _FLOW_MAX


def _mapping(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=_one_line(value))


def _sequence(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=_one_line(value))


_ODD_BREAKS = frozenset("\x85\u2028\u2029")  # line breaks to YAML, but not to str.splitlines' readers


def _literal_blocks(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted scalar when a block cannot hold the value exactly; but
    # it writes NEL raw inside single quotes, where YAML folds it to a space: only double
    # quotes (which escape it as \N) keep these exactly
    style = '"' if _ODD_BREAKS.intersection(value) else "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.Yaml.add_representer(str, _literal_blocks)
_Dumper.Yaml.add_representer(dict, _mapping)
_Dumper.Yaml.add_representer(list, _sequence)


def _refuse(top: Workflow, path: PathT, message: str) -> WorkflowInvalid:
    """A problem at ``path`` of the file ``top`` was read from (line:col when its text is known)."""
    file = top.source or "<string>"
    if top.source_text is not None:
        try:
            return WorkflowInvalid([load_yaml(top.source_text, file)[1].problem(message, path)])
        except WorkflowInvalid:
            pass
    return WorkflowInvalid([Problem(message, json_path(path), file)])
