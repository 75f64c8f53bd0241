"""How the runner talks to agents: MCP sessions over stdio, streamable HTTP or in-process.

    AgentPool            every agent of a run, connected in parallel before the first step
    AgentConnection      one agent's session: tools listed once, calls sent at most once,
                         bounded restarts, a circuit breaker
    CircuitBreaker       the breaker itself (pure: time is passed in)
    connect_agent(spec)  the connection for an AgentSpec (transport chosen by spec.transport)
    CallResult, ToolInfo what a call returns / what a tool looks like (no SDK needed)

Importing this package does not import the MCP SDK (~0.4 s); the names that need it are
loaded on first use, so ``runner validate`` and selection code stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.agents.breaker import CircuitBreaker, CircuitState
from runner.agents.results import CallResult, ProgressFn, ToolInfo

if TYPE_CHECKING:
    from runner.agents.connection import AgentConnection, connect_agent
    from runner.agents.pool import AgentPool

__all__ = [
    "AgentConnection",
    "AgentPool",
    "CallResult",
    "CircuitBreaker",
    "CircuitState",
    "ProgressFn",
    "ToolInfo",
    "connect_agent",
]

_LAZY = {
    "AgentConnection": "runner.agents.connection",
    "connect_agent": "runner.agents.connection",
    "AgentPool": "runner.agents.pool",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.agents' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
