"""Store problems a user can fix are exit 2 with a message saying what to fix, not the internal 70.

Ids: ``store:user-fixable``, ``store:env-named``. Each case drives the real CLI against a
real store URL: a missing driver, an unreachable server, an unwritable path, a file that
is not a database, and a bad ``RUNNER_STORE``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_no_traceback, free_port, run_cli


def _fails_2(*args: str, env: dict[str, str] | None = None, command: tuple[str, ...] = ("runs", "list")) -> str:
    code, out, err = run_cli(*command, *args, env=env)
    assert code == 2, (code, out, err)
    assert_no_traceback(err)
    assert err.count("runner: error:") == 1, err
    return err


def test_psycopg_missing_hints_at_the_extra(tmp_path: Path) -> None:
    """store:user-fixable — the postgres extra not installed."""
    (tmp_path / "psycopg.py").write_text("raise ImportError('No module named psycopg')\n", encoding="utf-8")
    err = _fails_2("--store", "postgresql://postgres:secret@127.0.0.1/x", env={"PYTHONPATH": str(tmp_path)})
    assert "pip install 'mcp-workflow-runner[postgres]'" in err, err
    assert "secret" not in err, err


def test_unreachable_postgres() -> None:
    """store:user-fixable — nothing listens on the port."""
    err = _fails_2("--store", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert "cannot open store postgresql://postgres@127.0.0.1:" in err, err


def test_unwritable_sqlite_path(tmp_path: Path) -> None:
    """store:user-fixable — the store's directory cannot be created (a file is in the way).

    ``cancel`` writes; a read-only command would read a missing file as an empty store.
    """
    (tmp_path / "file").write_text("x", encoding="utf-8")
    err = _fails_2("--store", f"sqlite:///{tmp_path}/file/sub/runner.db", command=("cancel", "some-run"))
    assert f"cannot create {tmp_path}/file/sub" in err, err


@pytest.mark.parametrize("content", [b"this is not a database at all" * 200, b"\x00" * 4096])
def test_a_file_that_is_not_a_database(tmp_path: Path, content: bytes) -> None:
    """store:user-fixable — and the file is left as it was."""
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    err = _fails_2("--store", f"sqlite:///{path}")
    assert f"cannot open store sqlite:///{path}" in err, err
    assert path.read_bytes() == content


def test_a_bad_runner_store_is_named_as_such() -> None:
    """store:env-named — the user typed no --store."""
    err = _fails_2(env={"RUNNER_STORE": "mysql://x"})
    assert "RUNNER_STORE: unsupported store URL 'mysql://x'" in err, err
    assert "--store" not in err.split("runner: error:")[1].split("(")[0], err
    err = _fails_2(env={"RUNNER_STORE": "sqlite:/x.db"})
    assert "RUNNER_STORE: 'sqlite:/x.db' is not sqlite:///relative/path" in err, err


def test_a_bad_store_option_is_still_named_store() -> None:
    err = _fails_2("--store", "mysql://x", env={"RUNNER_STORE": "memory://"})
    assert "--store: unsupported store URL 'mysql://x'" in err, err
