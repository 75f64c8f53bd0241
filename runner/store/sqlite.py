"""The SQLite store: the default, one file, safe for several runner processes at once.

WAL lets readers work while one process writes; ``synchronous=NORMAL`` makes a commit
cost microseconds instead of an fsync (a power cut may lose the last commits, never the
file's consistency); every write transaction starts with ``BEGIN IMMEDIATE`` so two
processes queue on the busy timeout instead of failing with "database is locked" when a
reader upgrades to a writer. Python's sqlite3 caches prepared statements per connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from runner.errors import InputInvalid, StoreError, StoreUnavailable
from runner.store.migrations import RUNNER_TABLES
from runner.store.sql import SqlStore

DEFAULT_URL = "sqlite:///.runner/runner.db"

# A checkpoint (the WAL copied back into the database) is the only place where NORMAL
# syncs: two fdatasyncs, milliseconds each on a shared disk, paid by whichever commit
# crosses the threshold. At SQLite's default of 1,000 pages a chain step (one commit of
# 4-5 pages) checkpointed every ~200 steps and those syncs were the largest part of a
# step's time on SQLite. 10,000 pages (~40 MB of WAL) checkpoints ten times less often,
# and each checkpoint writes a page rewritten by many commits once, not once per commit.
WAL_CHECKPOINT_PAGES = 10_000
# The WAL keeps its size after a checkpoint (rewriting it is cheaper than regrowing it);
# only one that grew past this (a reader held a checkpoint off) is cut back to it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


# Python 3.11's sqlite3 treats None as a value to adapt: unless an adapter is registered
# for its type, each bound None costs two failed attribute lookups (``__adapt__`` on the
# protocol, ``__conform__`` on None), each formatting an AttributeError message — a chain
# step binds a dozen Nones, ~28,000 instructions (5 % of its cost). An adapter that
# returns None is found first; what is stored is unchanged (NULL). It is the ``get`` of an
# empty dict, a C function (``get(None)`` is None): a Python function would cost a frame
# per bound None. sqlite3's adapters are process-wide, and this one changes nothing for
# other users of the module.
_NOTHING: dict[object, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:`` URL names: ``sqlite:///rel/x.db`` → ``rel/x.db``, ``sqlite:////abs`` → ``/abs``."""
    rest = url[len("sqlite:") :] if url.startswith("sqlite:") else url
    rest = rest.split("?", 1)[0]
    if rest in ("", "//", "///"):
        rest = DEFAULT_URL[len("sqlite:") :]
    if not rest.startswith("///") or rest == "///":
        raise InputInvalid(f"--store: {url!r} is not sqlite:///relative/path or sqlite:////absolute/path")
    return rest[3:]


def _ours(conn: sqlite3.Connection) -> bool:
    """Whether ``schema_version`` is runner's (another tool may use that name: Flyway did)."""
    cols = [row[1] for row in conn.execute("PRAGMA table_info(schema_version)")]
    return cols == ["version", "applied_at"]


def _set_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to WAL, waiting for a process doing the same on a new file.

    Changing the journal mode needs an exclusive lock and SQLite does not call the busy
    handler for it, so two runners opening a fresh store at once would see "database is
    locked" immediately; retry within the busy timeout instead.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class SQLiteStore(SqlStore):
    """A store in one SQLite file (created, with its directory, on open)."""

    # Without AUTOINCREMENT (one page less to write per commit) a rowid could be reused only
    # after deleting the newest row; events, messages and audit entries are never deleted.
    seq_pk = "INTEGER PRIMARY KEY"
    db_errors = (sqlite3.Error,)
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, url: str = DEFAULT_URL, busy_timeout: float = 5.0, *, create: bool = True) -> None:
        super().__init__(url)
        self.create_schema = create
        path = sqlite_path(url)
        self.path = path if path == ":memory:" else os.path.abspath(path)
        self._open(self._connect(busy_timeout))

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = os.path.dirname(self.path)
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot open store {self.url}: cannot create {parent}: {exc.strerror}"
                ) from None
            if os.path.isdir(self.path):
                raise StoreUnavailable(f"cannot open store {self.url}: {self.path} is a directory")
        conn: sqlite3.Connection | None = None
        # A store file we may read but not write (another user's, a CI artifact): open it
        # read-only, so `runs list` / `runs show` work; a write then fails in one line.
        self.read_only = self.path != ":memory:" and os.path.exists(self.path) and not os.access(self.path, os.W_OK)
        target = self.path
        if self.read_only:
            # Without write access a WAL database cannot get its -shm index; when there is
            # no -wal either (the last writer closed cleanly), the file is complete as it
            # is and can be read as immutable.
            clean = not os.path.exists(self.path + "-wal") and not os.path.exists(self.path + "-shm")
            target = f"file:{self.path}?mode=ro" + ("&immutable=1" if clean else "")
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; the lock makes sharing safe.
            conn = sqlite3.connect(
                target,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
                uri=self.read_only,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            names = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
                if not row[0].startswith("sqlite_")
            }
            foreign = names - RUNNER_TABLES
            if names and (foreign or "schema_version" not in names or not _ours(conn)):
                # Another application's database: never switch it to WAL or add our tables.
                shown = ", ".join(sorted(foreign or names)[:5])
                raise StoreUnavailable(
                    f"cannot open store {self.url}: {self.path} is not a runner store (it has {shown})"
                )
            if not self.read_only:
                _set_wal(conn, busy_timeout)
                # NORMAL, not FULL: in WAL mode a commit is then a write() into the OS's
                # page cache, never an fsync, and a killed runner loses nothing it
                # committed (SPEC §6 asks for exactly that: survive the process, resume).
                # Only a power cut or kernel crash may lose the last commits, never the
                # file's consistency. OFF would skip the checkpoint's syncs too and could
                # corrupt the file on a power cut: not for the default store.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except (sqlite3.Error, StoreError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, StoreError):
                raise
            raise self._error(exc) from exc
        return conn

    def _stored_version(self, cur: Any) -> int | None:
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if cur.fetchone() is None:
            return None
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(cur.fetchone()[0])

    def _begin(self, write: bool) -> None:
        if write and self.read_only:
            raise StoreUnavailable(f"store {self.url} is read-only here ({self.path} is not writable by this user)")
        self._cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _commit(self) -> None:
        self._cur.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.rollback()

    def _insert_id(self, stmt: str, params: Sequence[Any], id_col: str) -> int:
        self._cur.execute(stmt, params)
        return int(self._cur.lastrowid or 0)

    def _error(self, exc: BaseException) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(f"store {self.url} is locked by another process")
        if "unable to open" in text or "not a database" in text or "readonly" in text:
            return StoreUnavailable(f"cannot open store {self.url}: {text}")
        return super()._error(exc)
