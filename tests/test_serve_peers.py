"""Third-party MCP clients against ``runner serve`` (issue 8, /work/shared/PEERS.md).

- MCP Inspector 0.15.0 CLI (Node 20) over stdio: lists the tools and calls one, whose
  effect ``runner audit`` then reads from the store.
  0.15.0 has no option to send an HTTP header (its ``--help`` has none), so over HTTP,
  where every call needs a bearer token, the Inspector 2.12.0 CLI (Node 22) is used with
  ``--header "Authorization: Bearer …"``, in both protocol eras.
- The conformance harness 0.1.16 (Node 22), generic server scenarios ``server-initialize``,
  ``ping``, ``tools-list``, ``dns-rebinding-protection``. It has no option to send a header
  either, so it talks to the real server through a pass-through proxy (below) that adds the
  operator's bearer token and forwards everything else — Host and Origin included —
  unchanged: the rebinding checks still reach the server's own Host/Origin validation.

``.ci/run`` installs these peers; a missing one fails with the install hint (never skips).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RUNNER, require_peer, run_cli
from tests.serve_support import ADMIN_TOKEN, ServeProc, clean_env

PEERS = REPO / ".peers"
INSPECTOR_015 = PEERS / "clients" / "node_modules" / "@modelcontextprotocol" / "inspector" / "cli" / "build" / "cli.js"
INSPECTOR_2 = PEERS / "insp2" / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
CONFORMANCE = PEERS / "clients" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE22 = PEERS / "node22" / "node_modules" / "node" / "bin" / "node"


def node20() -> str:
    from tests.conftest import require_node

    return require_node()


def run_peer(argv: list[str | Path], cwd: Path, timeout: float = 90) -> tuple[int, str, str]:
    """Run a Node peer in its own process group; on a timeout the whole group is killed."""
    env = clean_env({"HOME": str(cwd), "NO_COLOR": "1"})  # inspector 2 keeps a catalog under ~/.mcp-inspector
    p = subprocess.Popen([str(a) for a in argv], cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=10)
        pytest.fail(f"{argv[:3]} did not finish within {timeout}s:\n{out[-2000:]}\n{err[-2000:]}")
    return p.returncode, out, err


def tool_result(out: str) -> dict[str, Any]:
    """The inspector's JSON output for a tools/call (v0.15: the result; v2: {"result": ...})."""
    data = json.loads(out)
    data = data.get("result", data) if isinstance(data, dict) and "content" not in data else data
    assert not data.get("isError"), data
    return dict(data["structuredContent"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProc]:
    cwd = tmp_path_factory.mktemp("serve-peers")
    proc = ServeProc(f"sqlite:///{cwd}/runner.db", cwd)
    try:
        yield proc
    finally:
        proc.stop()
        assert "Traceback" not in proc.stderr(), proc.stderr()


# -- MCP Inspector -----------------------------------------------------------------------------------


def test_inspector_015_over_stdio(tmp_path: Path) -> None:
    cli = require_peer(INSPECTOR_015, "@modelcontextprotocol/inspector@0.15.0")
    store = f"sqlite:///{tmp_path}/runner.db"
    target = [node20(), cli, "--cli", RUNNER, "serve", "--store", store]
    code, out, err = run_peer([*target, "--method", "tools/list"], tmp_path)
    assert code == 0, err
    names = {t["name"] for t in json.loads(out)["tools"]}
    assert {"register_agent", "define_workflow", "get_run", "send_message", "check_message_frequency"} <= names
    code, out, err = run_peer([*target, "--method", "tools/call", "--tool-name", "register_agent",
                               "--tool-arg", "id=insp-1", "name=Inspector", "role=worker", 'capabilities=["probe"]'], tmp_path)
    assert code == 0, err
    got = tool_result(out)
    assert got["agent"]["id"] == "insp-1" and got["agent"]["capabilities"] == ["probe"]
    code, out, err = run_cli("audit", "--output", "json", "--store", store, cwd=tmp_path)
    assert code == 0 and [e["target"] for e in json.loads(out) if e["action"] == "register_agent"] == ["insp-1"], out


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_2_over_http_with_a_bearer_token(served: ServeProc, tmp_path: Path, era: str) -> None:
    cli = require_peer(INSPECTOR_2, "@modelcontextprotocol/inspector@2.12.0")
    node = require_peer(NODE22, "node@22 (npm)")
    base = [node, cli, "--cli", "--format", "json", "--protocol-era", era, "--server-url", served.url, "--transport", "http"]
    auth = ["--header", f"Authorization: Bearer {ADMIN_TOKEN}"]
    code, out, err = run_peer([*base, *auth, "--method", "tools/list"], tmp_path)
    assert code == 0, err + out
    data = json.loads(out)
    tools = data.get("result", data)["tools"]
    assert len(tools) >= 20 and "register_agent" in {t["name"] for t in tools}
    code, out, err = run_peer([*base, *auth, "--method", "tools/call", "--tool-name", "create_project",
                               "--tool-arg", f"name=proj-{era}", "description=from the inspector"], tmp_path)
    assert code == 0, err + out
    assert tool_result(out)["name"] == f"proj-{era}"
    # Without the header the server answers 401 and the inspector fails.
    code, out, err = run_peer([*base, "--method", "tools/list"], tmp_path)
    assert code != 0 and "register_agent" not in out


# -- conformance harness --------------------------------------------------------------------------------


class AuthProxy:
    """A pass-through HTTP proxy that adds ``Authorization: Bearer <token>`` to each request.

    Everything else — method, path, body, Host, Origin, MCP headers — is forwarded as
    received, and responses (SSE included) are streamed back as they come.
    """

    def __init__(self, upstream: str, token: str) -> None:
        import uvicorn

        self.upstream = upstream.rsplit("/mcp", 1)[0]
        self.token = token
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="error", lifespan="off", ws="none",
                                interface="asgi3", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("the auth proxy did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/mcp"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import httpx2

        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        skip = {b"authorization", b"content-length", b"connection", b"transfer-encoding"}
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.lower() not in skip]
        headers.append(("authorization", f"Bearer {self.token}"))
        url = self.upstream + scope["path"] + (("?" + scope["query_string"].decode()) if scope.get("query_string") else "")
        async with httpx2.AsyncClient(timeout=60) as client:
            resp = await client.send(client.build_request(scope["method"], url, headers=headers, content=body), stream=True)
            try:
                drop = {"transfer-encoding", "connection", "content-length"}
                await send({"type": "http.response.start", "status": resp.status_code,
                            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()
                                        if k.lower() not in drop]})
                async for chunk in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await resp.aclose()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def proxied(served: ServeProc) -> Iterator[str]:
    proxy = AuthProxy(served.url, ADMIN_TOKEN)
    try:
        yield proxy.url
    finally:
        proxy.stop()


@pytest.mark.parametrize("scenario", ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"])
def test_conformance_server_scenario(proxied: str, served: ServeProc, tmp_path: Path, scenario: str) -> None:
    harness = require_peer(CONFORMANCE, "@modelcontextprotocol/conformance@0.1.16")
    node = require_peer(NODE22, "node@22 (npm; the harness needs Node >= 22)")
    code, out, err = run_peer([node, harness, "server", "--url", proxied, "--scenario", scenario, "-o", tmp_path / "results"],
                              tmp_path, timeout=120)
    checks = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*/checks.json")]
    failed = [c for group in checks for c in group if c.get("status") == "FAILURE"]
    assert code == 0 and not failed, f"{scenario}: exit {code}\n{out[-3000:]}\n{err[-2000:]}\n{failed}"
    assert checks and any(c.get("status") == "SUCCESS" for group in checks for c in group), out
    assert served.alive()


def test_conformance_without_a_token_is_refused(served: ServeProc, tmp_path: Path) -> None:
    """The same harness straight at the server, without the proxy's token: nothing gets through."""
    harness = require_peer(CONFORMANCE, "@modelcontextprotocol/conformance@0.1.16")
    node = require_peer(NODE22, "node@22 (npm)")
    code, out, _err = run_peer([node, harness, "server", "--url", served.url, "--scenario", "server-initialize"], tmp_path)
    assert code != 0 and ("401" in out or "Authentication required" in out), out[-2000:]

