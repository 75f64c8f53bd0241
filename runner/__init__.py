"""runner: declarative YAML workflows for multi-agent systems over MCP.

The Python API, with the CLI's defaults (store: ``RUNNER_STORE`` or
``sqlite:///.runner/runner.db``)::

    import runner

    result = runner.run_file("workflows/hello.yaml", {"text": "..."})
    print(result.status, result.outputs)

    service = runner.RunService(runner.open_store())   # the run lifecycle
    run_id, _ = service.start(runner.load_workflow("workflows/hello.yaml"), {}, queued=True)

Names are imported on first use, so ``import runner`` stays cheap (``runner validate``
never loads the MCP SDK).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "run_file": "runner.api",
    "arun": "runner.api",
    "load_workflow": "runner.api",
    "load_registry": "runner.api",
    "load_secrets": "runner.api",
    "parse_cli_inputs": "runner.api",
    "open_store": "runner.store",
    "store_url": "runner.store",
    "DEFAULT_STORE_URL": "runner.store",
    "RunService": "runner.service",
    "RunResult": "runner.model.outcomes",
    "RunnerError": "runner.errors",
    "WorkflowInvalid": "runner.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
