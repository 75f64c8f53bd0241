"""An agent's ``max_concurrency`` across every process that shares the store.

A call to an agent with ``max_concurrency: N`` first waits for room in this process (an
``asyncio.Semaphore(N)`` shared by the runs of the process, so it never asks the store
for more than it could hold), then takes one of the agent's N slots in the store (one
short transaction, ``Store.take_agent_slot``), held by its run's lease, and gives it back
when the call ends. While every slot is taken it retries with a bounded, jittered backoff,
and wakes at once when a slot comes back: in this process, or in another one whose
release PostgreSQL notifies (``wake``). Agents without ``max_concurrency`` never get here:
their calls cost no store round trip.
"""

from __future__ import annotations

import asyncio
import logging
import random
from types import TracebackType
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.store.base import Lease, Store

log = logging.getLogger("runner.slots")

FIRST_WAIT_S = 0.01  # the first retry when every slot is taken; doubles each time
MAX_WAIT_S = 0.5  # the bound of the backoff (a slot freed by another process unnoticed: at most this late)


class AgentSlots:
    """The slots of one process: the local gates, and the wake-up of calls waiting for a slot."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._gates: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._changed = asyncio.Event()
        self.waited = 0  # retries of takes that found every slot held (for benchmarks and tests)

    def wake(self) -> None:
        """A slot came back somewhere: every call waiting for one tries again now."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def limit(self, agent_id: str, n: int, *, run_id: str, lease: Lease) -> SlotLimit:
        """The limit of ``agent_id`` for the calls of one run (``async with``)."""
        gate = self._gates.get((agent_id, n))
        if gate is None:
            gate = self._gates[(agent_id, n)] = asyncio.Semaphore(n)
        return SlotLimit(self, agent_id, n, gate, run_id, lease)

    async def take(self, agent_id: str, n: int, run_id: str, lease: Lease) -> int:
        delay = FIRST_WAIT_S
        while True:
            changed = self._changed  # before the take: a release during it still wakes us
            slot = self.store.take_agent_slot(agent_id, n, run_id, lease)
            if slot is not None:
                return slot
            self.waited += 1
            try:
                await asyncio.wait_for(changed.wait(), delay * random.uniform(0.5, 1.0))
            except TimeoutError:
                delay = min(delay * 2, MAX_WAIT_S)


class SlotLimit:
    """``async with`` around one call: a store slot of the agent, held by the run's lease.

    The calls of one run share this object; its slots are interchangeable (each is held by
    the same run and lease), so a call that ends gives back any one of them.
    """

    def __init__(
        self, slots: AgentSlots, agent_id: str, n: int, gate: asyncio.Semaphore, run_id: str, lease: Lease
    ) -> None:
        self.slots = slots
        self.agent_id = agent_id
        self.n = n
        self.gate = gate
        self.run_id = run_id
        self.lease = lease
        self.held: list[int] = []

    async def __aenter__(self) -> None:
        await self.gate.acquire()
        try:
            self.held.append(await self.slots.take(self.agent_id, self.n, self.run_id, self.lease))
        except BaseException:
            self.gate.release()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        slot = self.held.pop()
        try:
            self.slots.store.release_agent_slot(self.agent_id, slot, self.run_id, self.lease)
        except RunnerError as err:  # the slot comes back with the lease anyway
            log.warning("could not give back slot %d of agent %s: %s", slot, self.agent_id, err)
        finally:
            self.gate.release()
            self.slots.wake()
