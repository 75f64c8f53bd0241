"""PostgreSQL ``LISTEN/NOTIFY``: idle workers wake when a run is queued or handed back.

A wake-up only, never the source of truth: a worker still polls the store (a lost
notification, or one sent while its listener was reconnecting, delays a run by at most
the poll interval; it never loses it). The listener has a connection of its own, driven
by the worker's event loop (psycopg's async connection), so waiting for a notification
costs no thread and no query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("runner.worker")

RUNS_CHANNEL = "runner_runs"  # NOTIFY'd by the store when a run is queued or a lease released
SLOTS_CHANNEL = "runner_slots"  # NOTIFY'd when an agent slot (max_concurrency) is given back


class RunNotifications:
    """``LISTEN runner_runs`` on its own connection; ``on_notify`` is called for each notification.

    With ``on_slot``, also ``LISTEN runner_slots``: a call waiting for an agent slot wakes
    when another process gives one back (its polling backoff stays the fallback).
    """

    def __init__(self, dsn: str, shown_url: str) -> None:
        self._dsn = dsn
        self.url = shown_url  # password masked, for messages
        self._task: asyncio.Task[None] | None = None
        self.received = 0
        self.listening = False

    def start(self, on_notify: Callable[[], None], on_slot: Callable[[], None] | None = None) -> None:
        """Listen in the background, reconnecting with backoff when the connection drops."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(on_notify, on_slot), name="listen runner_runs"
            )

    async def _listen(self, on_notify: Callable[[], None], on_slot: Callable[[], None] | None) -> None:
        import psycopg  # the postgres extra

        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=5)
                try:
                    await conn.execute(f"LISTEN {RUNS_CHANNEL}")
                    if on_slot is not None:
                        await conn.execute(f"LISTEN {SLOTS_CHANNEL}")
                    self.listening = True
                    delay = 0.5
                    on_notify()  # whatever was queued while not listening: look once now
                    async for note in conn.notifies():
                        self.received += 1
                        if note.channel == SLOTS_CHANNEL:
                            if on_slot is not None:
                                on_slot()
                        else:
                            on_notify()
                finally:
                    self.listening = False
                    await conn.close()
            except psycopg.Error as exc:
                log.warning("listening for queued runs on %s failed (polling meanwhile): %s", self.url, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
