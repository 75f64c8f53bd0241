"""``runner serve``: the orchestration tools as an MCP server over stdio or streamable HTTP.

Built on the SDK's ``MCPServer``, which answers both protocol eras (2026-07-28 and
2025-11-25) on both transports. The process also executes runs: the ones its tools start
and the ``queued`` ones of its store (claimed by lease, so several servers on one
PostgreSQL never execute a run twice).

Security over HTTP: every request needs a bearer token (the SDK's bearer middleware,
fed by :class:`~runner.server.auth.RunnerTokenVerifier`); DNS-rebinding protection is on
for loopback hosts (the SDK's default) and for any other host we pin the Host header to
the address served; binding beyond loopback needs TLS or an explicit
``--insecure-behind-proxy``, so tokens never cross a network in clear text by accident.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server import MCPServer
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl

from runner.errors import InputInvalid
from runner.server.auth import RunnerTokenVerifier
from runner.server.options import HttpOptions, is_loopback
from runner.server.toolbox import Toolbox
from runner.server.tools import register_tools
from runner.server.tools_more import register_more_tools
from runner.server.tools_tasks import register_task_tools
from runner.service.orchestrator import Orchestrator
from runner.service.policy import Policy, Principal

INSTRUCTIONS = (
    "runner orchestrates multi-agent workflows. Register with register_agent (keep the token), send heartbeat "
    "regularly, find peers with find_agents. Coordinators define workflows (define_workflow) and start them "
    "(execute_workflow); every agent picks up its work with list_assigned_steps and answers with "
    "report_step_completion or report_step_failure. Wait for progress with get_run(run_id, wait_seconds) "
    "rather than polling. Take file leases with acquire_file_lock before editing shared files."
)


def build_server(orch: Orchestrator, *, policy: Policy | None = None, transport: str = "stdio", admin_token: str = "",
                 http: HttpOptions | None = None, principal: Principal | None = None) -> MCPServer:
    """The MCP server with every tool; over HTTP each call is authenticated.

    ``principal``: who a stdio or in-process client is (default: the operator), e.g. an
    embedding that serves one known agent.
    """
    policy = policy or Policy()
    verifier: Any = None
    auth: AuthSettings | None = None
    default: Principal | None = principal or Principal()  # stdio and in-process: the operator
    if transport == "http":
        opts = http or HttpOptions()
        verifier = RunnerTokenVerifier(admin_token, orch.agents)
        auth = AuthSettings(issuer_url=AnyHttpUrl(f"{opts.scheme}://{_host_port(opts.host, opts.port or 1)}"), resource_server_url=None)
        default = None

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        orch.executor.start()
        try:
            yield None
        finally:
            await orch.executor.aclose()
            if orch.pool is not None:
                await orch.pool.close()

    server = MCPServer(
        "runner",
        instructions=INSTRUCTIONS,
        token_verifier=verifier,
        auth=auth,
        lifespan=lifespan,
        log_level="WARNING",
    )
    box = Toolbox(orch, policy, default)
    register_tools(server, box)
    register_more_tools(server, box)
    register_task_tools(server, box)
    if policy.source is not None:
        unknown = policy.unknown_tools(t.name for t in server._tool_manager.list_tools())
        if unknown:
            raise InputInvalid(f"--policy {policy.source}: unknown tool(s) {', '.join(unknown)}")
    return server


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def transport_security(opts: HttpOptions) -> TransportSecuritySettings | None:
    """DNS-rebinding protection: the SDK's loopback default, or the served host pinned."""
    if is_loopback(opts.host):
        return None  # the SDK turns it on for 127.0.0.1, localhost and ::1
    hosts = [_host_port(opts.host, opts.port), *opts.allowed_hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"{opts.scheme}://{h}" for h in hosts],
    )


async def serve_http(server: MCPServer, opts: HttpOptions, *, ready: Any = None) -> None:
    """Serve streamable HTTP at ``/mcp`` until cancelled."""
    import uvicorn

    app = server.streamable_http_app(host=opts.host, transport_security=transport_security(opts))
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        log_level="warning",
        ssl_certfile=opts.tls_cert,
        ssl_keyfile=opts.tls_key,
        lifespan="on",
    )
    userver = uvicorn.Server(config)
    if ready is not None:
        asyncio.get_running_loop().create_task(_announce(userver, ready))
    await userver.serve()


async def _announce(userver: Any, ready: Any) -> None:
    for _ in range(600):
        if userver.started:
            servers = getattr(userver, "servers", None) or []
            sockets = getattr(servers[0], "sockets", None) if servers else None
            ready(sockets[0].getsockname()[1] if sockets else 0)
            return
        await asyncio.sleep(0.05)


logging.getLogger("mcp").setLevel(logging.WARNING)
