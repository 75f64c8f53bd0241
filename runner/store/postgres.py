"""The PostgreSQL store (extra ``postgres``): the SQL of ``sql.py`` over psycopg 3.

For several runner processes, possibly on several machines. Autocommit is off: each
store method is one transaction, committed before it returns. Rows written by ``append``
are locked ``FOR UPDATE`` so concurrent writers to one run take turns, and schema
migrations and workflow versioning are serialized by transaction-scoped advisory locks.
psycopg prepares a statement on the server once it has been run a few times. (Pipeline
mode was measured for ``append`` and cost more client CPU than the round trips it saved.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from runner.errors import StoreError, StoreUnavailable
from runner.model.events import Event
from runner.store.base import Lease
from runner.store.pg_notify import RUNS_CHANNEL, SLOTS_CHANNEL, RunNotifications
from runner.store.sql import SqlStore
from runner.store.sql_rows import one_line

_PASSWORD_IN_NETLOC = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit to print in messages and logs."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_NETLOC.sub(r"\1***@", url))


class PostgresStore(SqlStore):
    """A store in one PostgreSQL database (tables created on first open)."""

    placeholder = "%s"
    seq_pk = "BIGSERIAL PRIMARY KEY"
    for_update = " FOR UPDATE"
    for_update_run = " FOR UPDATE OF r"
    labels_match = "(runs_on IS NULL OR CAST(runs_on AS jsonb) <@ CAST(? AS jsonb))"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    fence_in_insert = False  # rowcount is -1 in a pipeline: the fence is a SELECT ... FOR UPDATE of the run row

    def __init__(self, url: str, connect_timeout: float = 5.0, *, create: bool = True) -> None:
        try:
            import psycopg  # only here: the postgres extra is optional
        except ImportError:
            raise StoreUnavailable(
                f"cannot open store {mask_url(url)}: PostgreSQL support is not installed; "
                "install it with: pip install 'mcp-workflow-runner[postgres]'"
            ) from None

        super().__init__(mask_url(url))
        self.create_schema = create
        self._dsn = url  # unmasked: the notification listener opens its own connection with it
        self.db_errors = (psycopg.Error,)
        self.integrity_errors = (psycopg.IntegrityError,)
        try:
            conn = psycopg.connect(url, autocommit=False, connect_timeout=max(1, round(connect_timeout)))
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot open store {self.url}: {one_line(exc)}") from None
        try:
            # Commits return without waiting for the WAL flush (~0.65 ms each here). A killed
            # runner loses nothing (the server has the commit); only a crash of the database
            # server itself can lose the last ~0.2 s of events, which resume treats like a
            # step still in flight — the same trade-off as SQLite's synchronous=NORMAL.
            conn.execute("SET synchronous_commit = off")
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot open store {self.url}: {one_line(exc)}") from None
        self._open(conn)

    def append_many(self, events: Sequence[Event], fence: Lease | None = None) -> None:
        """The engine's group commit in libpq's pipeline mode: one round trip, not one a statement.

        Statements are sent without waiting for each answer; a read (a step row the store
        has not cached) or the commit waits for what is queued. On loopback a statement's
        round trip is most of its cost, so a chain step drops from ~6 round trips to ~1.
        """
        if not events:
            return
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            try:
                with self._conn.pipeline():
                    super().append_many(events, fence)
            except self.db_errors as exc:  # raised when the pipeline syncs, after the rollback
                raise self._error(exc) from exc

    def _commit(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        self._conn.rollback()

    def _insert_id(self, stmt: str, params: Sequence[Any], id_col: str) -> int:
        self._cur.execute(f"{stmt} RETURNING {id_col}", params)
        row = self._cur.fetchone()
        return int(row[0])

    def _stored_version(self, cur: Any) -> int | None:
        cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(cur.fetchone()[0])

    def _serialize(self, key: str) -> None:
        self._cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))

    def _notify(self) -> None:
        # Delivered at commit, once per transaction however often it is called.
        self._cur.execute(f"NOTIFY {RUNS_CHANNEL}")

    def _notify_slots(self) -> None:
        self._cur.execute(f"NOTIFY {SLOTS_CHANNEL}")

    def run_notifications(self) -> RunNotifications:
        """A listener that wakes idle workers when a run is queued or handed back (and slot waiters)."""
        return RunNotifications(self._dsn, self.url)
