"""``runner agents list|check``: the agent registry, and a live check of each agent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from runner.cli.app import App, common_options, pass_app


def _collect(app: App, files: tuple[str, ...]) -> list[Any]:
    """Registry agents (``--agents``) plus the agents declared by any workflow files given."""
    from runner.api import load_workflow

    agents = {a.id: a for a in app.registry()}
    for f in files:
        for a in load_workflow(f, list(agents.values())).agents:
            agents[a.id] = a
    return list(agents.values())


def _describe(a: Any) -> str:
    where = {
        "stdio": lambda: " ".join([a.command or "", *map(str, a.args)]),
        "http": lambda: a.url or "",
        "inprocess": lambda: a.module or "",
        "pull": lambda: "(pulls its steps)",
    }[str(a.transport)]()
    return where


@click.group()
def agents() -> None:
    """The agent registry (`--agents FILE`, plus agents declared in workflow files)."""


@agents.command("list")
@click.argument("files", nargs=-1, type=click.Path())
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def list_agents(app: App, files: tuple[str, ...], output: str) -> int:
    """List agents: id, transport, role, capabilities."""
    found = _collect(app, files)
    if output == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "name": a.name,
                        "transport": str(a.transport),
                        "role": a.role,
                        "capabilities": list(a.capabilities),
                        "target": _describe(a),
                        "required": a.required,
                    }
                    for a in found
                ],
                indent=2,
            )
        )
        return 0
    if not found:
        click.echo("no agents (pass --agents FILE or workflow files)", err=True)
        return 0
    for a in found:
        caps = ",".join(a.capabilities) or "-"
        click.echo(f"{a.id:<20} {str(a.transport):<9} role={a.role or '-':<12} caps={caps:<24} {_describe(a)}")
    return 0


@agents.command("check")
@click.argument("files", nargs=-1, type=click.Path())
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
@pass_app
def check_agents(app: App, files: tuple[str, ...], output: str) -> int:
    """Connect to every agent and list its tools. Exit 1 if any agent cannot be reached."""
    found = [a for a in _collect(app, files) if str(a.transport) != "pull"]
    if not found:
        click.echo("no agents to check (pass --agents FILE or workflow files)", err=True)
        return 0

    async def go() -> dict[str, Any]:
        from runner.agents.pool import AgentPool

        pool = AgentPool()
        try:
            errors = await pool.open(found)
            conns = pool.connected()
            return {
                a.id: {
                    "ok": errors.get(a.id) is None,
                    "error": None if errors.get(a.id) is None else str(errors[a.id]),
                    "tools": sorted(conns[a.id].tools) if a.id in conns else [],
                }
                for a in found
            }
        finally:
            await pool.close()

    report = asyncio.run(go())
    bad = [k for k, v in report.items() if not v["ok"]]
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        for aid, r in report.items():
            if r["ok"]:
                click.echo(f"ok    {aid}: {len(r['tools'])} tools: {', '.join(r['tools'])}")
            else:
                click.echo(f"FAIL  {aid}: {r['error']}")
    return 1 if bad else 0
