"""``runner serve`` as a command: stdio (the default) in both eras, and its HTTP options (SPEC §8).

Over stdio the connected client is the operator: a whole pull workflow runs through one
SDK client on the server's stdin/stdout, and ``runner runs show`` on the same SQLite file
agrees. The HTTP options: binding beyond loopback without TLS is refused (exit 2 naming
``--host``), ``--tls-cert`` needs ``--tls-key``, the operator token comes from
``RUNNER_ADMIN_TOKEN``, ``--admin-token-file`` or a generated file of mode 0600 whose
path is printed.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx2
import pytest

from tests.conftest import RUNNER, parse_json_stdout, run_cli
from tests.serve_support import ServeProc, assigned, clean_env, ok, refused, stdio_params

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_whole_pull_workflow_over_stdio(tmp_path: Path, mode: str) -> None:
    from mcp import Client

    store = f"sqlite:///{tmp_path}/runner.db"
    async with Client(stdio_params(store, tmp_path), mode=mode) as c:
        assert c.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"register_agent", "define_workflow", "execute_workflow", "report_step_completion", "get_run"} <= names
        await ok(c, "register_agent", {"id": "w", "name": "W", "role": "writer", "capabilities": ["write"]})
        await ok(c, "define_workflow", {"name": "two", "steps": [
            {"step_id": "draft", "required_capabilities": ["write"], "tool_arguments": {"topic": "mcp"}},
            {"step_id": "polish", "depends_on": ["draft"], "assigned_role": "writer",
             "tool_arguments": {"text": "{{ steps.draft.result.text }}"}}]})
        started = await ok(c, "execute_workflow", {"workflow_id": "two"})
        run_id = started["run_id"]
        assert started["first_steps"][0]["assignees"] == ["w"]
        s = await assigned(c, "w", "draft", run_id)
        assert s["arguments"] == {"topic": "mcp"}
        await ok(c, "report_step_completion", {"workflow_id": "two", "step_id": "draft", "agent_id": "w", "result": {"text": "v1"}})
        s = await assigned(c, "w", "polish", run_id)
        assert s["arguments"] == {"text": "v1"}
        await ok(c, "report_step_completion", {"workflow_id": "two", "step_id": "polish", "agent_id": "w", "result": "v2"})
        run = await ok(c, "get_run", {"run_id": run_id, "wait_seconds": 20})
        if run["status"] == "running":
            run = await ok(c, "get_run", {"run_id": run_id, "wait_seconds": 20})
        assert run["status"] == "completed", run
        # Over stdio the client is the operator: the audit log is readable.
        assert (await ok(c, "get_audit_log", {}))["count"] >= 3
    code, out, err = run_cli("runs", "show", run_id, "--output", "json", "--store", store, cwd=tmp_path)
    assert code == 0, err
    shown = parse_json_stdout(out, err)
    assert shown["status"] == "completed"
    assert {k: (v["status"], v["result"], v["agent_id"]) for k, v in shown["steps"].items()} == {
        "draft": ("completed", {"text": "v1"}, "w"), "polish": ("completed", "v2", "w")}


async def test_stdio_bad_arguments_are_error_results_not_crashes(tmp_path: Path) -> None:
    from mcp import Client

    async with Client(stdio_params(f"sqlite:///{tmp_path}/runner.db", tmp_path)) as c:
        await refused(c, "execute_workflow", {"workflow_id": "nope"}, "workflow_id")
        await refused(c, "get_run", {"run_id": "nope"}, "nope")
        await refused(c, "heartbeat", {"agent_id": "ghost"}, "agent_id")
        await refused(c, "execute_workflow", {"workflow_id": ""}, "workflow_id")
        # Still serving after the refusals.
        assert (await ok(c, "find_agents"))["count"] == 0


# -- HTTP options -----------------------------------------------------------------------------------


def _serve(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([str(RUNNER), "serve", "--store", f"sqlite:///{cwd}/runner.db", *args], cwd=str(cwd),
                          env=clean_env(env), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_binding_beyond_loopback_without_tls_is_refused(tmp_path: Path, host: str) -> None:
    code, _out, err = _serve("--transport", "http", "--host", host, "--port", "0", cwd=tmp_path)
    assert code == 2, err
    assert "--host" in err and "--tls-cert" in err and "--insecure-behind-proxy" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / ".runner" / "admin-token").exists(), "a token was generated for a server that never started"


def test_tls_cert_and_key_go_together_and_tokens_must_be_long(tmp_path: Path) -> None:
    code, _out, err = _serve("--transport", "http", "--port", "0", "--tls-cert", "cert.pem", cwd=tmp_path)
    assert code == 2, err
    assert "--tls-cert" in err and "--tls-key" in err and "Traceback" not in err
    code, _out, err = _serve("--transport", "http", "--port", "0", cwd=tmp_path, env={"RUNNER_ADMIN_TOKEN": "short"})
    assert code == 2 and "RUNNER_ADMIN_TOKEN" in err, err
    code, _out, err = _serve("--transport", "http", "--port", "0", "--admin-token-file", "missing", cwd=tmp_path)
    assert code == 2 and "--admin-token-file" in err and "missing" in err, err


def _init(url: str, token: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    r = httpx2.post(url, json=body, timeout=10, headers={"Authorization": f"Bearer {token}",
                                                         "Accept": "application/json, text/event-stream"})
    return r.status_code


def test_generated_token_file_is_private_and_its_path_printed(tmp_path: Path) -> None:
    proc = ServeProc(f"sqlite:///{tmp_path}/runner.db", tmp_path, admin_token=None)
    try:
        err = proc.stderr()
        path = tmp_path / ".runner" / "admin-token"
        assert str(path) in err, err
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, oct(mode)
        token = path.read_text().strip()
        assert len(token) >= 32 and token not in err, "the token itself was printed"
        assert _init(proc.url, token) == 200
        assert _init(proc.url, token[:-1] + ("A" if token[-1] != "A" else "B")) == 401
    finally:
        proc.stop()


def test_admin_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "op-token"
    f.write_text("from-file-token-0123456789\n")
    f.chmod(0o600)
    proc = ServeProc(f"sqlite:///{tmp_path}/runner.db", tmp_path, "--admin-token-file", str(f), admin_token=None)
    try:
        assert _init(proc.url, "from-file-token-0123456789") == 200
        assert not (tmp_path / ".runner" / "admin-token").exists()
    finally:
        proc.stop()
    proc = ServeProc(f"sqlite:///{tmp_path}/runner.db", tmp_path, admin_token="from-env-token-0123456789")
    try:
        assert _init(proc.url, "from-env-token-0123456789") == 200
        assert _init(proc.url, "from-file-token-0123456789") == 401
    finally:
        proc.stop()


def test_insecure_behind_proxy_serves_and_pins_the_host(tmp_path: Path) -> None:
    """Beyond loopback with --insecure-behind-proxy: served, and DNS-rebinding protection pins the Host."""
    proc = ServeProc(f"sqlite:///{tmp_path}/runner.db", tmp_path, "--host", "0.0.0.0", "--insecure-behind-proxy",
                     "--allowed-host", "proxy.internal:443")
    try:
        port = proc.url.rsplit(":", 1)[1].split("/")[0]
        url = f"http://127.0.0.1:{port}/mcp"
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        hdr = {"Authorization": f"Bearer {proc.admin_token}", "Accept": "application/json, text/event-stream"}
        evil = httpx2.post(url, json=body, timeout=10, headers={**hdr, "Host": "evil.example"})
        assert evil.status_code in (400, 403, 421), evil.status_code
        proxied = httpx2.post(url, json=body, timeout=10, headers={**hdr, "Host": "proxy.internal:443"})
        assert proxied.status_code == 200, (proxied.status_code, proxied.text)
    finally:
        proc.stop()


async def test_https_with_a_certificate(tmp_path: Path) -> None:
    """--tls-cert/--tls-key serve HTTPS: the announced URL is https, a client trusting the cert calls tools."""
    import ssl

    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    proc = ServeProc(f"sqlite:///{tmp_path}/runner.db", tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert proc.url.startswith("https://127.0.0.1:"), proc.url
        ctx = ssl.create_default_context(cafile=str(cert))
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {proc.admin_token}"}, verify=ctx) as http:
            async with Client(streamable_http_client(proc.url, http_client=http)) as c:
                assert (await ok(c, "find_agents"))["count"] == 0
        plain = proc.url.replace("https://", "http://")
        with pytest.raises(httpx2.HTTPError):
            httpx2.post(plain, json={}, timeout=5)
    finally:
        proc.stop()
