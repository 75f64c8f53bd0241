"""``runner serve`` (the MCP server of SPEC §5) and ``runner audit`` (its audit log)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from runner.cli.app import App, common_options, pass_app


@click.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio: the connected client is the operator. http: streamable HTTP at /mcp, bearer tokens.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (http). Beyond loopback needs TLS.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (http); 0 picks a free one.")
@click.option("--admin-token-file", metavar="F", help="File holding the operator token (else RUNNER_ADMIN_TOKEN, else one is generated).")
@click.option("--tls-cert", metavar="F", help="TLS certificate (PEM) for HTTPS.")
@click.option("--tls-key", metavar="F", help="TLS private key (PEM) for HTTPS.")
@click.option("--insecure-behind-proxy", is_flag=True, help="Allow plain HTTP beyond loopback (a TLS proxy fronts the server).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="HOST:PORT",
              help="Another Host header to accept (DNS-rebinding protection), e.g. the proxy's name.")
@click.option("--policy", "policy_file", metavar="F", help="YAML policy file changing the default permissions.")
@click.option("--secrets", "secrets_file", metavar="F", help="YAML mapping of secrets for runs executed here.")
@click.option("--no-queued", is_flag=True, help="Do not execute queued runs of the store (only runs started here).")
@common_options
@pass_app
def serve(
    app: App, transport: str, host: str, port: int, admin_token_file: str | None, tls_cert: str | None,
    tls_key: str | None, insecure_behind_proxy: bool, allowed_hosts: tuple[str, ...], policy_file: str | None,
    secrets_file: str | None, no_queued: bool,
) -> int:
    """Serve the orchestration tools over MCP, backed by the store the CLI uses.

    Agents register, find peers, define and execute workflows, pick up the steps assigned
    to them and report back, message each other and take file leases. Runs started here
    (and queued runs, unless --no-queued) are executed in this process.
    """
    from runner.server.options import HttpOptions, admin_token
    from runner.service.policy import Policy

    # The options first, before the MCP SDK is imported: a mistake is answered at once.
    policy = Policy.load(policy_file) if policy_file else Policy()
    opts = HttpOptions(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
                       insecure_behind_proxy=insecure_behind_proxy, allowed_hosts=allowed_hosts)
    token = ""
    if transport == "http":
        opts.check()
        token, token_path = admin_token(admin_token_file, Path(".runner"))
        if token_path is not None and admin_token_file is None:
            click.echo(f"runner serve: operator token written to {token_path.resolve()} (mode 0600)", err=True)

    from runner.api import load_secrets, open_store
    from runner.server.app import build_server, serve_http
    from runner.service.orchestrator import Orchestrator

    store = open_store(app.store)
    orch = Orchestrator(store, operator_agents=app.registry(), secrets=load_secrets(secrets_file),
                        claim_queued=not no_queued)
    server = build_server(orch, policy=policy, transport=transport, admin_token=token, http=opts)
    try:
        if transport == "stdio":
            asyncio.run(server.run_stdio_async())
        else:
            def ready(bound: int) -> None:
                click.echo(f"runner serve: listening on {opts.scheme}://{host}:{bound or port}/mcp "
                           f"(store {store.url})", err=True)
            asyncio.run(serve_http(server, opts, ready=ready))
    except KeyboardInterrupt:
        click.echo("runner serve: stopped", err=True)
        return 130
    finally:
        store.close()
    return 0


@click.command()
@click.option("--since", metavar="TS", help="Only entries after this ISO 8601 date or timestamp.")
@click.option("--agent", "agent_id", metavar="A", help="Only entries by agent A (or 'operator').")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def audit(app: App, since: str | None, agent_id: str | None, limit: int, output: str) -> int:
    """Show the audit log of `runner serve`: who called what, on what, when, and the outcome."""
    from runner.api import open_store

    store = open_store(app.store, read_only=True)
    try:
        entries = store.list_audit(actor=agent_id, limit=limit, since=since)
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(entries, indent=2, default=str))
        return 0
    for e in entries:
        outcome = (e.get("detail") or {}).get("outcome", "")
        click.echo(f"{e['ts']}  {e['actor']:<20} {e['action']:<28} {e.get('target') or '-':<30} {outcome}")
    if not entries:
        click.echo("no audit entries", err=True)
    sys.stdout.flush()
    return 0
