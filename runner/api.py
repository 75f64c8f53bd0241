"""The one service API that the CLI, the MCP server and Python users call.

Thin by design: it wires the loader, the store, the engine and the agent registry
together, so ``runner run`` in a terminal, ``execute_workflow`` over MCP and
``runner.api.run_file`` in a script do exactly the same thing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import InputInvalid, NotFound, RunnerError, WorkflowInvalid
from runner.events import EventSink
from runner.model import AgentSpec, StepOutcome, StepStatus, Workflow

if TYPE_CHECKING:
    from runner.engine import RunResult
    from runner.store.base import Store

DEFAULT_STORE = "sqlite:///.runner/runner.db"
SECRET_ENV_PREFIX = "RUNNER_SECRET_"


def store_url(explicit: str | None = None) -> str:
    """``--store``, else ``RUNNER_STORE``, else the default SQLite file under ``.runner/``."""
    return explicit or os.environ.get("RUNNER_STORE") or DEFAULT_STORE


def open_store(url: str | None = None) -> Store:
    from runner.store.base import open_store as _open

    return _open(store_url(url))


def load_registry(agents_file: str | None) -> list[AgentSpec]:
    """Agents from ``--agents FILE`` (empty when no file is given)."""
    if not agents_file:
        return []
    from runner.loader import load_agents_file

    return load_agents_file(agents_file)


def load_secrets(secrets_file: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``RUNNER_SECRET_<NAME>`` variables, overridden by a ``--secrets`` YAML mapping."""
    env = os.environ if environ is None else environ
    out = {k[len(SECRET_ENV_PREFIX) :]: v for k, v in env.items() if k.startswith(SECRET_ENV_PREFIX) and v}
    if secrets_file:
        import yaml

        try:
            data = yaml.safe_load(Path(secrets_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputInvalid(f"--secrets: cannot read {secrets_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InputInvalid(f"--secrets: {secrets_file} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise InputInvalid(f"--secrets: {secrets_file} must be a YAML mapping of NAME: value")
        out.update({str(k): str(v) for k, v in data.items() if v is not None})
    return out


def load_workflow(path: str, registry: Sequence[AgentSpec] = ()) -> Workflow:
    """A workflow file named on the command line: always a path, never inline YAML text."""
    from runner.loader import load_workflow as _load

    return _load(Path(path), registry=registry)


def parse_cli_inputs(wf: Workflow, pairs: Sequence[str], inputs_file: str | None) -> dict[str, Any]:
    """``--inputs F`` (YAML/JSON mapping) then ``-i k=v`` pairs, coerced by each input's type."""
    values: dict[str, Any] = {}
    if inputs_file:
        import yaml

        try:
            data = yaml.safe_load(Path(inputs_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputInvalid(f"--inputs: cannot read {inputs_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InputInvalid(f"--inputs: {inputs_file} is not valid YAML/JSON: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputInvalid(f"--inputs: {inputs_file} must hold a mapping of input names to values")
        values.update(data)
    for pair in pairs:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise InputInvalid(f"-i/--input: expected NAME=VALUE, got {pair!r}")
        name, raw = pair.split("=", 1)
        name = name.strip()
        schema = wf.inputs.get(name)
        values[name] = _coerce(name, raw, schema if isinstance(schema, dict) else {})
    return values


def _coerce(name: str, raw: str, schema: Mapping[str, Any]) -> Any:
    t = schema.get("type")
    types = t if isinstance(t, list) else [t]
    try:
        if "integer" in types and raw.lstrip("-").isdigit():
            return int(raw)
        if "number" in types:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        if "boolean" in types:
            low = raw.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise InputInvalid(f"input '{name}': expected a boolean (true/false), got {raw!r}")
        if "array" in types or "object" in types:
            return json.loads(raw)
        if "null" in types and raw == "null":
            return None
    except ValueError:
        raise InputInvalid(f"input '{name}': cannot read {raw!r} as {'/'.join(str(x) for x in types)}") from None
    return raw


async def arun(
    wf: Workflow,
    inputs: Mapping[str, Any],
    *,
    store: Store | None,
    registry: Sequence[AgentSpec] = (),
    secrets: Mapping[str, str] | None = None,
    sinks: Sequence[EventSink] = (),
    on_progress: Callable[[str, float, float | None, str | None], None] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Run ``wf`` to completion (async)."""
    from runner.engine import Engine

    engine = Engine(wf, store=store, sinks=sinks, registry=registry, secrets=secrets, on_progress=on_progress)
    return await engine.run(inputs, run_id=run_id)


def run_file(
    path: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    store: str | Store | None = "memory://",
    agents_file: str | None = None,
    secrets_file: str | None = None,
    sinks: Sequence[EventSink] = (),
) -> RunResult:
    """Load, validate and run a workflow file; the synchronous entry point for scripts."""
    registry = load_registry(agents_file)
    wf = load_workflow(path, registry)
    st = open_store(store) if isinstance(store, str) or store is None else store
    try:
        return asyncio.run(
            arun(wf, inputs or {}, store=st, registry=registry, secrets=load_secrets(secrets_file), sinks=sinks)
        )
    finally:
        if isinstance(store, str) or store is None:
            st.close()


def resume_state(store: Store, run_id: str, wf: Workflow, reset: Sequence[str] = (), new_attempt: bool = False) -> Any:
    """Read a run's progress back from the store, as the engine's ``ResumeState``.

    Steps in ``reset`` (and, for ``retry --from``, their descendants) start again; every
    other completed step keeps its stored result and is not re-run.
    """
    from runner.engine import ResumeState

    run = store.get_run(run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id!r} in {store.url}")
    state = ResumeState(run_id=run_id, inputs=dict(run.inputs), attempt=run.attempt, new_attempt=new_attempt)
    known = {s.step_id: s for s in wf.all_steps}
    for rec in store.get_steps(run_id):
        if rec.step_id not in known:
            continue
        state.attempts[rec.step_id] = rec.attempts
        if rec.step_id in reset:
            continue
        if rec.status == StepStatus.COMPLETED.value and not known[rec.step_id].is_finally:
            state.completed[rec.step_id] = StepOutcome(
                status=StepStatus.COMPLETED,
                result=rec.result,
                text=rec.text,
                content=rec.content,
                attempts=rec.attempts,
                agent_id=rec.agent_id,
            )
        elif rec.items:
            state.items[rec.step_id] = {int(k): v for k, v in rec.items.items()}
    return state


def descendants(wf: Workflow, step_id: str) -> set[str]:
    """``step_id`` and every step that depends on it, directly or not."""
    children: dict[str, list[str]] = {}
    for s in wf.steps:
        for d in s.depends_on:
            children.setdefault(d, []).append(s.step_id)
    out = {step_id}
    stack = [step_id]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


__all__ = [
    "DEFAULT_STORE",
    "RunnerError",
    "WorkflowInvalid",
    "arun",
    "descendants",
    "load_registry",
    "load_secrets",
    "load_workflow",
    "open_store",
    "parse_cli_inputs",
    "resume_state",
    "run_file",
    "store_url",
]
