"""runner from Python: load a workflow, its inputs, agents and secrets, and run it.

A face like the CLI: it reads what a user gives (files, ``-i`` pairs, environment) and
hands the run to the one service API (``runner.service.RunService``), so ``runner run``
in a terminal, ``execute_workflow`` over MCP and ``run_file`` in a script do exactly the
same thing. Its defaults are the CLI's (the store: ``RUNNER_STORE`` or
``sqlite:///.runner/runner.db``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import InputInvalid, RunnerError, WorkflowInvalid
from runner.model import AgentSpec, Workflow
from runner.model.events import EventSink
from runner.model.outcomes import RunResult
from runner.store import DEFAULT_STORE_URL, open_store, store_url
from runner.store.base import Store

DEFAULT_STORE = DEFAULT_STORE_URL
SECRET_ENV_PREFIX = "RUNNER_SECRET_"


def load_registry(agents_file: str | None) -> list[AgentSpec]:
    """Agents from ``--agents FILE`` (empty when no file is given)."""
    if not agents_file:
        return []
    from runner.load import load_agents_file

    return load_agents_file(agents_file)


def load_secrets(secrets_file: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``RUNNER_SECRET_<NAME>`` variables, overridden by a ``--secrets`` YAML mapping."""
    env = os.environ if environ is None else environ
    out = {k[len(SECRET_ENV_PREFIX) :]: v for k, v in env.items() if k.startswith(SECRET_ENV_PREFIX) and v}
    if secrets_file:
        from runner.load.data import load_data_file

        data = load_data_file(secrets_file, "--secrets")
        if not isinstance(data, dict):
            raise InputInvalid(f"--secrets: {secrets_file} must be a YAML mapping of NAME: value")
        for k, v in data.items():
            if isinstance(v, (dict, list)):
                raise InputInvalid(f"--secrets: {secrets_file}: secret {k!r} must be a string, not a {type(v).__name__}")
            if v is not None:
                out[str(k)] = str(v)
    return out


def load_workflow(path: str, registry: Sequence[AgentSpec] = ()) -> Workflow:
    """A workflow file named on the command line: always a path, never inline YAML text."""
    from runner.load import load_workflow as _load

    return _load(Path(path), registry=registry)


def parse_cli_inputs(wf: Workflow, pairs: Sequence[str], inputs_file: str | None) -> dict[str, Any]:
    """``--inputs F`` (YAML/JSON mapping) then ``-i k=v`` pairs, coerced by each input's type."""
    values: dict[str, Any] = {}
    if inputs_file:
        from runner.load.data import load_data_file

        data = load_data_file(inputs_file, "--inputs")
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
            number = float(raw) if any(c in raw for c in ".eEnN") else int(raw)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError("not a finite number")
            return number
        if "boolean" in types:
            low = raw.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise InputInvalid(f"input '{name}': expected a boolean (true/false), got {raw!r}")
        if "array" in types or "object" in types:
            return json.loads(raw, parse_constant=_no_constant)
        if "null" in types and raw == "null":
            return None
    except RecursionError:
        raise InputInvalid(f"input '{name}': value nested too deeply") from None
    except ValueError:
        raise InputInvalid(f"input '{name}': cannot read {_short(raw)} as {'/'.join(str(x) for x in types)}") from None
    return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(raw: str, limit: int = 60) -> str:
    return repr(raw if len(raw) <= limit else raw[: limit - 3] + "...")


async def arun(
    wf: Workflow,
    inputs: Mapping[str, Any],
    *,
    store: Store | None = None,
    registry: Sequence[AgentSpec] = (),
    secrets: Mapping[str, str] | None = None,
    sinks: Sequence[EventSink] = (),
) -> RunResult:
    """Create and run ``wf`` to completion in ``store`` (async): ``RunService.run``.

    ``store`` None is the CLI's store (``RUNNER_STORE`` or ``sqlite:///.runner/runner.db``),
    opened and closed here; pass ``open_store("memory://")`` for a run that keeps nothing.
    """
    from runner.service import RunService

    st = store if store is not None else open_store()
    try:
        service = RunService(st, registry=registry, secrets=secrets, local_pull=True)
        return await service.run(wf, inputs, sinks=sinks)
    finally:
        if store is None:
            st.close()


def run_file(
    path: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    store: str | Store | None = None,
    agents_file: str | None = None,
    secrets_file: str | None = None,
    sinks: Sequence[EventSink] = (),
) -> RunResult:
    """Load, validate and run a workflow file; the synchronous entry point for scripts.

    The defaults are the CLI's: ``store`` None means ``RUNNER_STORE`` or
    ``sqlite:///.runner/runner.db``, so ``runner runs list`` shows the run afterwards.
    """
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


__all__ = [
    "DEFAULT_STORE",
    "RunnerError",
    "WorkflowInvalid",
    "arun",
    "load_registry",
    "load_secrets",
    "load_workflow",
    "open_store",
    "DEFAULT_STORE_URL",
    "parse_cli_inputs",
    "run_file",
    "store_url",
]
