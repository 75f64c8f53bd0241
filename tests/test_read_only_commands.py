"""Read-only commands never create a store. Id: ``store:read-only-commands``.

``runs list``, ``runs show``, ``steps list``, ``workers list`` and ``audit`` against a
missing SQLite file or an existing PostgreSQL database without runner's tables read an
empty store: no file, no directory, no table appears (once, ``runs show`` created 13
tables in a user's database).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_no_traceback, run_cli
from tests.store_fixtures import pg_empty_url_fixture  # noqa: F401 - the fixture this module uses

READS: list[tuple[str, ...]] = [
    ("runs", "list", "--output", "json"),
    ("steps", "list", "--output", "json"),
    ("workers", "list", "--output", "json"),
    ("audit", "--output", "json"),
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:2]))
def test_missing_sqlite_file_is_not_created(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path}/new/runner.db"
    code, out, err = run_cli(*args, "--store", url, cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out) == []
    assert not (tmp_path / "new").exists()


def test_runs_show_on_a_missing_store_is_not_found(tmp_path: Path) -> None:
    code, out, err = run_cli("runs", "show", "nope", "--store", f"sqlite:///{tmp_path}/x.db")
    assert code == 2, err
    assert_no_traceback(err)
    assert f"no run with id 'nope' in sqlite:///{tmp_path}/x.db" in err, err
    assert not (tmp_path / "x.db").exists()


def test_an_existing_postgres_database_gets_no_tables(pg_empty_url: str) -> None:
    """store:read-only-commands"""
    import psycopg

    with psycopg.connect(pg_empty_url, autocommit=True) as raw:
        raw.execute("CREATE TABLE customers (id int)")
    for args in [*READS, ("runs", "show", "some-run")]:
        code, out, err = run_cli(*args, "--store", pg_empty_url)
        assert code in (0, 2), (args, err)
        assert_no_traceback(err)
    with psycopg.connect(pg_empty_url) as raw:
        tables = {r[0] for r in raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"customers"}


def test_a_writing_command_still_creates_the_store(tmp_path: Path) -> None:
    """The default store is created by a run, as before, and then listed."""
    wf = tmp_path / "w.yaml"
    wf.write_text(
        f"name: w\nagents:\n  - {{id: m, transport: stdio, command: python, args: [examples/agents/math_agent.py], cwd: {REPO}}}\n"
        "steps:\n  - {step_id: a, tool_to_call: add, tool_arguments: {a: 1, b: 2}}\n",
        encoding="utf-8",
    )
    code, _out, err = run_cli("run", "-q", wf, cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / ".runner" / "runner.db").exists()
    code, out, err = run_cli("runs", "list", "--output", "json", cwd=tmp_path)
    assert code == 0, err
    assert [r["workflow"] for r in json.loads(out)] == ["w"]
