"""Helpers for the ``runner serve`` suites: the real server in a subprocess, MCP clients on it.

``ServeProc`` is one ``runner serve`` process (stdio is driven by the SDK client itself;
this is the HTTP one): it reads the ``listening on URL`` line from stderr, keeps the rest
of stderr in a file, and is killed with its whole process group at the end. Clients are
the SDK's ``mcp.Client`` with a bearer token through ``httpx2`` (MCP-SDK-NOTES), in the
era asked for. ``ok``/``refused`` unwrap a tool result and fail with the tool's own text.
Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from tests.conftest import RUNNER

ADMIN_TOKEN = "test-admin-token-" + "x" * 24
LISTENING = re.compile(r"runner serve: listening on (https?://\S+/mcp)")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNNER_STORE", "RUNNER_ADMIN_TOKEN")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServeProc:
    """``runner serve --transport http --port 0`` in its own process group."""

    def __init__(self, store: str, cwd: Path, *args: str, env: Mapping[str, str] | None = None,
                 admin_token: str | None = ADMIN_TOKEN, timeout: float = 30.0) -> None:
        self.cwd = cwd
        self.admin_token = admin_token
        self.err_path = cwd / f"serve-{os.getpid()}-{time.monotonic_ns()}.stderr"
        extra = dict(env or {})
        if admin_token is not None:
            extra["RUNNER_ADMIN_TOKEN"] = admin_token
        self.proc = subprocess.Popen(
            [str(RUNNER), "serve", "--transport", "http", "--port", "0", "--store", store, *args],
            cwd=str(cwd),
            env=clean_env(extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._url: str | None = None
        self._seen = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._seen.wait(timeout) or self._url is None:
            self.stop()
            raise RuntimeError(f"runner serve did not announce its URL within {timeout}s:\n{self.stderr()}")
        self.url: str = self._url

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self._lines.append(line)
            m = LISTENING.search(line)
            if m and self._url is None:
                self._url = m.group(1)
                self._seen.set()
        self._seen.set()

    def stderr(self) -> str:
        return "".join(self._lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode


@asynccontextmanager
async def http_client(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Any]:
    """An SDK client over streamable HTTP with ``Authorization: Bearer token``."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx2.AsyncClient(headers=headers, timeout=90) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
            yield client


def stdio_params(store: str, cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=str(RUNNER), args=["serve", "--store", store, *args], cwd=str(cwd), env=dict(env or {})
    )


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def ok(client: Any, tool: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; its ``structuredContent``."""
    result = await client.call_tool(tool, dict(args or {}))
    assert not result.is_error, f"{tool}({dict(args or {})}) failed: {text_of(result)}"
    assert result.structured_content is not None, f"{tool}: no structuredContent"
    assert text_of(result).strip(), f"{tool}: no short text beside the structured content"
    return dict(result.structured_content)


async def refused(client: Any, tool: str, args: Mapping[str, Any] | None = None, *must_say: str) -> str:
    """Call a tool that must answer with an error result; its text (which must say each of ``must_say``)."""
    result = await client.call_tool(tool, dict(args or {}))
    text = text_of(result)
    assert result.is_error, f"{tool}({dict(args or {})}) was not refused: {result.structured_content}"
    assert "Traceback" not in text, text
    for word in must_say:
        assert word in text, f"{tool}: refusal {text!r} does not say {word!r}"
    return text


async def eventually(what: str, probe: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """Await ``probe()`` until it returns something truthy, or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = await probe()
        if last:
            return last
        await anyio.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


async def assigned(client: Any, agent_id: str, step_id: str, run_id: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until ``list_assigned_steps(agent_id)`` shows ``step_id`` (of ``run_id``); that entry."""

    async def probe() -> dict[str, Any] | None:
        got = await ok(client, "list_assigned_steps", {"agent_id": agent_id})
        assert got["count"] == len(got["steps"])
        for s in got["steps"]:
            if s["step_id"] == step_id and (run_id is None or s["run_id"] == run_id):
                return dict(s)
        return None

    return dict(await eventually(f"{step_id} assigned to {agent_id}", probe, timeout))
