"""Shared fixtures: the real ``runner`` CLI in a subprocess, and the third-party MCP peers.

Acceptance tests drive the console script exactly as a user or CI would (exit code, stdout,
stderr), against real MCP servers installed by ``.ci/run`` (see /work/shared/PEERS.md).
A missing peer is a failure that says how to install it, never a skip: a suite that
silently skips its peers proves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# PostgreSQL fixtures (a fresh database per test) for every suite that needs the real server.
from tests.store_fixtures import pg_template, pg_url  # noqa: E402,F401

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RUNNER = VENV_BIN / "runner"
PYTHON = Path(sys.executable)
NPM_MODULES = REPO / ".peers" / "npm" / "node_modules" / "@modelcontextprotocol"
EVERYTHING_JS = NPM_MODULES / "server-everything" / "dist" / "index.js"
MEMORY_JS = NPM_MODULES / "server-memory" / "dist" / "index.js"

_INSTALL_HINT = "run .ci/run (it installs the MCP peers of /work/shared/PEERS.md) and try again"


def require_peer(path: Path, what: str) -> Path:
    """Fail (not skip) with an installation hint when a peer is missing."""
    if not path.exists():
        pytest.fail(f"{what} is not installed at {path}: {_INSTALL_HINT}", pytrace=False)
    return path


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` is not on PATH (the Node MCP peers need it): {_INSTALL_HINT}", pytrace=False)
    return node


def require_python_module(module: str) -> None:
    """The Python peers live in the runner's venv (``command: python`` is the runner's interpreter)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.fail(f"Python peer {module} is not installed in {PYTHON}: {_INSTALL_HINT}", pytrace=False)


def run_cli(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run ``runner ARGS...`` in a subprocess; return (returncode, stdout, stderr).

    ``env`` is added to (not substituted for) the current environment; ``RUNNER_STORE`` is
    removed so that only the ``--store`` each test passes can decide where runs are kept.
    """
    if not RUNNER.exists():
        pytest.fail(f"console script {RUNNER} missing: run `pip install -e .` in the venv", pytrace=False)
    full_env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE" and not k.startswith("RUNNER_SECRET_")}
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    proc = subprocess.run(
        [str(RUNNER), *map(str, args)],
        cwd=str(cwd) if cwd is not None else str(REPO),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, f"a traceback leaked to stderr:\n{stderr}"


def parse_json_stdout(stdout: str, stderr: str = "") -> Any:
    """``--output json`` prints exactly one JSON document on stdout."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not one JSON document ({exc}):\n{stdout}\n--- stderr:\n{stderr}") from None


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it, high and random)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 15.0) -> None:
    """Poll until something accepts on 127.0.0.1:port, the process dies, or time runs out."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {deadline_s}s")


@pytest.fixture(scope="session")
def everything_js() -> Path:
    require_node()
    return require_peer(EVERYTHING_JS, "@modelcontextprotocol/server-everything")


@pytest.fixture(scope="session")
def memory_js() -> Path:
    require_node()
    return require_peer(MEMORY_JS, "@modelcontextprotocol/server-memory")


@pytest.fixture(scope="session")
def everything_http(everything_js: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """server-everything over streamable HTTP on a random port; yields its ``/mcp`` URL.

    It binds every interface and has no host option, so the port is random and high and
    the process is killed (by its pid) when the session ends.
    """
    log = tmp_path_factory.mktemp("everything-http") / "server.log"
    for _ in range(3):  # the port can be taken between free_port() and the bind
        port = free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["node", str(everything_js), "streamableHttp"],
                env={**os.environ, "PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(log.parent),
            )
        try:
            wait_for_port(port, proc)
        except RuntimeError:
            _stop(proc)
            continue
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            _stop(proc)
        return
    pytest.fail(f"server-everything did not start over HTTP; log:\n{log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def make_git_repo(root: Path, messages: list[str]) -> list[str]:
    """A repository with one commit per message (repo-local author); returns shas, newest first."""
    if shutil.which("git") is None:
        pytest.fail("`git` is not on PATH (mcp-server-git needs it)", pytrace=False)
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=root, env=env, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("config", "user.name", "Test Author")
    git("config", "user.email", "author@example.invalid")
    git("config", "commit.gpgsign", "false")
    for i, msg in enumerate(messages):
        (root / f"file{i}.txt").write_text(f"content {i}: {msg}\n", encoding="utf-8")
        git("add", f"file{i}.txt")
        git("commit", "-q", "-m", msg)
    return git("rev-list", "HEAD").split()


# -- shapes of SPEC §4 / §8 -------------------------------------------------------------------

ISO_UTC_MICROS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|\+00:00)$"
RUN_KEYS = {"run_id", "status", "outputs", "started_at", "finished_at", "duration_ms", "preflight_ms", "steps"}
STEP_KEYS = {"status", "result", "error", "attempts", "agent_id", "duration_ms"}
STEP_STATUSES = {"pending", "in_progress", "completed", "failed", "skipped", "cancelled"}


def assert_run_json(data: Any, *, status: str, step_ids: set[str] | None = None) -> None:
    """The ``--output json`` object of SPEC §4, with the expected run status."""
    import re

    assert isinstance(data, dict), data
    missing = RUN_KEYS - set(data)
    assert not missing, f"--output json lacks {sorted(missing)}: {sorted(data)}"
    assert data["status"] == status, f"status {data['status']!r}, expected {status!r}: error={data.get('error')!r}"
    assert isinstance(data["run_id"], str) and data["run_id"]
    assert isinstance(data["outputs"], dict)
    for key in ("started_at", "finished_at"):
        assert re.match(ISO_UTC_MICROS, data[key]), f"{key}={data[key]!r} is not ISO 8601 UTC with microseconds"
    assert data["started_at"] <= data["finished_at"]
    for key in ("duration_ms", "preflight_ms"):
        assert isinstance(data[key], (int, float)) and not isinstance(data[key], bool), f"{key}={data[key]!r}"
        assert data[key] >= 0
    assert data["preflight_ms"] <= data["duration_ms"] + 1.0, "preflight is part of the run's duration"
    steps = data["steps"]
    assert isinstance(steps, dict)
    if step_ids is not None:
        assert set(steps) == step_ids, f"steps {sorted(steps)}, expected {sorted(step_ids)}"
    for sid, s in steps.items():
        assert STEP_KEYS <= set(s), f"step {sid} lacks {sorted(STEP_KEYS - set(s))}"
        assert s["status"] in STEP_STATUSES, f"step {sid}: status {s['status']!r}"
        assert isinstance(s["attempts"], int) and s["attempts"] >= 0
        if s["status"] == "completed":
            assert s["attempts"] >= 1 and s["error"] is None, f"step {sid}: {s}"
            assert isinstance(s["duration_ms"], (int, float)) and s["duration_ms"] >= 0, f"step {sid}: {s}"
            assert isinstance(s["agent_id"], str) and s["agent_id"], f"step {sid}: {s}"
        if s["status"] == "failed":
            assert isinstance(s["error"], str) and s["error"], f"step {sid} failed without an error: {s}"


@pytest.fixture
def cli() -> Any:
    """``run_cli`` as a fixture, for test modules that prefer not to import conftest."""
    return run_cli
