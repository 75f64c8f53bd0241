"""All the agents of one run, connected in parallel before the first step (SPEC §2).

``AgentPool.open`` starts every agent at once and reports, per agent, what went wrong
instead of stopping at the first failure: the engine then fails the run (exit 3) for a
``required`` agent and carries on without an optional one. ``close`` ends every session
in parallel, so a run with ten stdio agents pays one shutdown (~90 ms), not ten.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from types import TracebackType

from runner.agents.connection import AgentConnection, connect_agent
from runner.model import AgentSpec, TransportKind

_CLOSE_TIMEOUT = 12.0
_NONE: frozenset[str] = frozenset()


class AgentPool:
    """The open ``AgentConnection`` of each agent a run may use, by agent id.

    ``log_dir``, when given, keeps each stdio agent's stderr in ``<log_dir>/<id>.stderr.log``.
    """

    def __init__(self, *, log_dir: str | None = None) -> None:
        self.log_dir = log_dir
        self._conns: dict[str, AgentConnection] = {}

    async def __aenter__(self) -> AgentPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(
        self,
        specs: Sequence[AgentSpec],
        *,
        base_dir: str | None = None,
        connect_timeout: float = 30.0,
    ) -> dict[str, BaseException | None]:
        """Connect every agent in ``specs`` at once; return each agent's error (None = ok).

        Never raises for one bad agent. Pull agents have no connection and are left out of
        the result; agents already connected in this pool are kept and reported ok.
        """
        todo: list[AgentSpec] = []
        errors: dict[str, BaseException | None] = {}
        for spec in specs:
            if TransportKind(spec.transport) is TransportKind.PULL:
                continue
            if spec.id in errors:
                raise ValueError(f"agent '{spec.id}' is listed twice")
            errors[spec.id] = None
            if spec.id not in self._conns:
                todo.append(spec)
        outcomes = await asyncio.gather(
            *(self._connect(spec, base_dir, connect_timeout) for spec in todo), return_exceptions=True
        )
        for spec, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, AgentConnection):
                self._conns[spec.id] = outcome
            else:
                errors[spec.id] = outcome
                if isinstance(outcome, (KeyboardInterrupt, SystemExit)):
                    raise outcome
        return errors

    async def _connect(self, spec: AgentSpec, base_dir: str | None, connect_timeout: float) -> AgentConnection:
        if spec.source and os.path.isfile(spec.source):
            # A relative cwd/module path is relative to the file that declared the agent
            # (a workflow, or an --agents registry file), wherever the runner was started.
            base_dir = os.path.dirname(os.path.abspath(spec.source))
        stderr_path = os.path.join(self.log_dir, f"{spec.id}.stderr.log") if self.log_dir else None
        conn = connect_agent(spec, base_dir=base_dir, connect_timeout=connect_timeout, stderr_path=stderr_path)
        try:
            await conn.start()
        except BaseException:
            await conn.close()
            raise
        return conn

    def get(self, agent_id: str) -> AgentConnection:
        """The connection of a connected agent; KeyError naming the agent otherwise."""
        try:
            return self._conns[agent_id]
        except KeyError:
            raise KeyError(f"agent '{agent_id}' is not connected") from None

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._conns

    def connected(self) -> dict[str, AgentConnection]:
        """The connected agents by id (a copy)."""
        return dict(self._conns)

    def open_circuits(self) -> frozenset[str]:
        """Agents selection must skip now: circuit open, or half open with its trial call out.

        Called once per step: with every circuit closed it is one attribute test per agent.
        """
        skip = [aid for aid, conn in self._conns.items() if conn.circuit_open]
        return frozenset(skip) if skip else _NONE

    def circuits(self) -> dict[str, str]:
        """Each connected agent's circuit state (closed, open, half_open), for reports."""
        return {aid: str(conn.circuit) for aid, conn in self._conns.items()}

    async def close(self) -> None:
        """Close every session in parallel, within a bounded time."""
        conns, self._conns = list(self._conns.values()), {}
        if not conns:
            return
        tasks = [asyncio.ensure_future(c.close()) for c in conns]
        done, pending = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled():
                t.exception()  # retrieved; a failed close must not stop the others
