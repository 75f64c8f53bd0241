"""Fixtures for ``test_store.py``: one suite over the memory, SQLite and PostgreSQL stores.

Import what a test module uses (``from tests.store_fixtures import store_fixture``):
the fixtures are named ``store``, ``backend``, ``durable``, ``pg_url``, ``pg_empty_url``
and ``pg_template`` whatever their functions are called.

Every PostgreSQL test gets its own database ``runner_test_<random>``, copied from a
session template that was migrated once (so each test costs a ``CREATE DATABASE``, not a
migration), and dropped afterwards. PostgreSQL is expected at 127.0.0.1:5432, user
``postgres`` (``RUNNER_TEST_PG_ADMIN`` overrides the URL of its ``postgres`` database).
When it is unreachable the PostgreSQL cases skip with the reason — except under
``CI=true``, where a missing database must not pass silently: they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runner.store import open_store
from runner.store.base import Store

PG_ADMIN_URL = os.environ.get("RUNNER_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_url_for(database: str) -> str:
    """The admin URL with its database replaced."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL store must be tested)")
    pytest.skip(reason)


def _admin() -> Any:
    """An autocommit connection to the ``postgres`` database, or skip/fail saying why."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        _unavailable(f"psycopg is not installed ({exc})")
        raise
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _unavailable(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {first}")
        raise


@contextmanager
def _database(template: str | None = None) -> Iterator[str]:
    """A new database ``runner_test_<random>`` (a copy of ``template``), dropped on exit."""
    admin = _admin()
    name = "runner_test_" + uuid.uuid4().hex[:12]
    admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated, empty database to copy; dropped at the end of the session."""
    from runner.store.postgres import PostgresStore

    with _database() as name:
        PostgresStore(pg_url_for(name)).close()
        yield name


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """The URL of a fresh database of this test's own, dropped afterwards."""
    with _database(pg_template) as name:
        yield pg_url_for(name)


@pytest.fixture(name="pg_empty_url")
def pg_empty_url_fixture() -> Iterator[str]:
    """A fresh database with no tables at all (to test the migrations themselves)."""
    with _database() as name:
        yield pg_url_for(name)


class Backend:
    """One store location: ``open()`` gives a new store object on it (memory: the same one)."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self._opened: list[Store] = []
        self._memory: Store | None = None

    def open(self) -> Store:
        if self.name == "memory":
            if self._memory is None:
                self._memory = open_store(self.url)
                self._opened.append(self._memory)
            return self._memory
        store = open_store(self.url)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


def _backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if name == "memory":
        return Backend(name, "memory://")
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_path / 'store' / 'runner.db'}")
    return Backend(name, request.getfixturevalue("pg_url"))


@pytest.fixture(name="backend", params=["memory", "sqlite", "postgres"])
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each of the three stores, on a location of this test's own."""
    b = _backend(request.param, tmp_path, request)
    yield b
    b.close_all()


@pytest.fixture(name="durable", params=["sqlite", "postgres"])
def durable_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The stores that outlive their process."""
    b = _backend(request.param, tmp_path, request)
    yield b
    b.close_all()


@pytest.fixture(name="store")
def store_fixture(backend: Backend) -> Store:
    return backend.open()
