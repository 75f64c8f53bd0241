"""The store: one durable home for runs, events, workflows, agents and coordination.

Backends are chosen by URL scheme: ``memory://``, ``sqlite:///rel/path`` (the default,
``.runner/runner.db`` under the current directory), ``sqlite:////abs/path``,
``postgresql://…`` (the ``postgres`` extra). SQLite and PostgreSQL share one SQL
implementation (``sql.py``); every backend applies the same pure projection.
"""

from __future__ import annotations

import os

from runner.errors import InputInvalid
from runner.store.base import Store
from runner.store.memory import MemoryStore
from runner.store.postgres import PostgresStore
from runner.store.sql import NoRunnerSchema
from runner.store.sqlite import SQLiteStore, sqlite_path

DEFAULT_STORE_URL = "sqlite:///.runner/runner.db"

__all__ = ["DEFAULT_STORE_URL", "Store", "open_store", "store_url"]


def store_url(explicit: str | None = None) -> str:
    """``--store``, else ``RUNNER_STORE``, else the default SQLite file under ``.runner/``."""
    return explicit or os.environ.get("RUNNER_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None, *, read_only: bool = False) -> Store:
    """Open the store at ``url`` (resolved by :func:`store_url`).

    ``read_only`` (``runs list``, ``runs show``, ``steps list``, ``workers list``, ``audit``):
    a missing SQLite file is not created and a database without runner's tables does not
    get them — either reads as an empty store. A bad URL taken from ``RUNNER_STORE`` is
    named as such: the user never typed ``--store``.
    """
    from_env = not url and bool(os.environ.get("RUNNER_STORE"))
    try:
        return _open(store_url(url), read_only)
    except InputInvalid as exc:
        if from_env and str(exc).startswith("--store:"):
            raise InputInvalid("RUNNER_STORE:" + str(exc)[len("--store:") :]) from None
        raise


def _open(url: str, read_only: bool) -> Store:
    if url.startswith("memory:"):
        return MemoryStore()
    try:
        if url.startswith("sqlite:"):
            path = sqlite_path(url)
            if read_only and path != ":memory:" and not os.path.exists(path):
                return MemoryStore(url)  # nothing has run here: an empty listing, no file created
            return SQLiteStore(url, create=not read_only)
        if url.startswith(("postgresql:", "postgres:")):
            return PostgresStore(url, create=not read_only)
    except NoRunnerSchema as exc:
        return MemoryStore(str(exc))
    raise InputInvalid(f"--store: unsupported store URL {url!r} (use memory://, sqlite:///PATH or postgresql://…)")
