"""Fakes for tests — ours and our users': agents without MCP, event capture.

Like httpx's ``MockTransport``: a ``FakePool`` of ``FakeAgent`` objects plugs into
``Engine(pool=...)`` in place of real MCP sessions, so a workflow's logic (conditions,
retries, fan-out, data flow) can be tested in microseconds. Use real agents (in-process
``MCPServer`` or stdio) when the wire matters; these fakes never pretend to be MCP.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.agents.results import CallResult, ToolInfo
from runner.errors import ToolFailure
from runner.model import AgentSpec, TransportKind
from runner.model.events import Event

Handler = Callable[..., Any]


@dataclass
class FakeCall:
    tool: str
    arguments: dict[str, Any]
    meta: dict[str, Any] | None


class FakeAgent:
    """An agent whose tools are Python callables (sync or async) taking keyword arguments.

    A handler's return value becomes the step result; raising ``ToolFailure`` or any
    exception makes an ``isError``-like failure with the exception's message.
    """

    def __init__(
        self, agent_id: str, tools: Mapping[str, Handler], *, role: str | None = None, capabilities: Sequence[str] = ()
    ) -> None:
        self.spec = AgentSpec(
            id=agent_id, transport=TransportKind.INPROCESS, module="<fake>", role=role, capabilities=tuple(capabilities)
        )
        self._handlers = dict(tools)
        self.tools = {name: ToolInfo(name=name) for name in tools}
        self.calls: list[FakeCall] = []
        self.alive = True

    async def start(self, timeout: float | None = None) -> None:
        return None

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
        on_progress: Any = None,
    ) -> CallResult:
        if tool not in self._handlers:
            raise ToolFailure(
                f"agent '{self.spec.id}' has no tool '{tool}'; it offers: {', '.join(sorted(self._handlers))}",
                retryable=False,
                agent_id=self.spec.id,
            )
        self.calls.append(FakeCall(tool, dict(arguments or {}), meta))
        try:
            out = self._handlers[tool](**(arguments or {}))
            if inspect.isawaitable(out):
                out = await (asyncio.wait_for(out, timeout) if timeout else out)
        except ToolFailure:
            raise
        except asyncio.TimeoutError:
            raise ToolFailure(
                f"tool '{tool}' on agent '{self.spec.id}' timed out after {timeout:g}s", agent_id=self.spec.id
            ) from None
        except Exception as exc:  # the tool's own failure: isError with its message
            return CallResult(is_error=True, result=None, text=str(exc))
        text = out if isinstance(out, str) else ""
        return CallResult(is_error=False, result=out, text=text)

    async def close(self) -> None:
        self.alive = False


class FakePool:
    """A pool of ``FakeAgent``; ``open`` reports the ids in ``broken`` as failed to connect."""

    def __init__(self, agents: Sequence[FakeAgent], broken: Mapping[str, str] | None = None) -> None:
        self._agents = {a.spec.id: a for a in agents}
        self._broken = dict(broken or {})
        self._open: dict[str, FakeAgent] = {}

    @property
    def specs(self) -> list[AgentSpec]:
        return [a.spec for a in self._agents.values()]

    async def open(self, specs: Sequence[AgentSpec], **_: Any) -> dict[str, BaseException | None]:
        out: dict[str, BaseException | None] = {}
        for s in specs:
            if s.id in self._broken:
                out[s.id] = RuntimeError(self._broken[s.id])
            elif s.id in self._agents:
                self._open[s.id] = self._agents[s.id]
                out[s.id] = None
            else:
                out[s.id] = RuntimeError(f"no fake agent '{s.id}'")
        return out

    def get(self, agent_id: str) -> FakeAgent:
        return self._open[agent_id]

    def connected(self) -> dict[str, FakeAgent]:
        return self._open

    def open_circuits(self) -> frozenset[str]:
        """Fake agents have no circuit breaker: none is ever skipped for one."""
        return frozenset()

    async def close(self) -> None:
        self._open.clear()


@dataclass
class EventCapture:
    """An event sink that keeps every event (like structlog's ``capture_logs``)."""

    events: list[Event] = field(default_factory=list)

    def __call__(self, e: Event) -> None:
        self.events.append(e)

    def types(self, step_id: str | None = None) -> list[str]:
        return [e.type for e in self.events if step_id is None or e.step_id == step_id]


__all__ = ["EventCapture", "FakeAgent", "FakeCall", "FakePool"]
