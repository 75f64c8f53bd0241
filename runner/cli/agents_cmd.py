"""``runner agents list|check``: the agent registry, and a live check of each agent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from runner.cli.app import App, common_options, input_option, pass_app


def _collect(app: App, files: tuple[str, ...], pairs: tuple[str, ...] = ()) -> tuple[list[Any], dict[str, str]]:
    """Registry agents (``--agents``) plus the agents declared by any workflow files given.

    A workflow's agents may be templated (``args: ["--repository", "{{ inputs.repo }}"]``):
    they are rendered with the inputs' defaults, ``-i`` values and secrets, as ``runner
    run`` would. An agent that cannot be rendered is returned in the second mapping with
    the reason, instead of being started with literal ``{{ }}`` text.
    """
    from runner.api import load_secrets, load_workflow, parse_cli_inputs
    from runner.load.instantiate import render_agent
    from runner.template import TemplateError

    agents = {a.id: a for a in app.registry()}
    unrenderable: dict[str, str] = {}
    secrets = load_secrets()
    for f in files:
        wf = load_workflow(f, list(agents.values()))
        given = parse_cli_inputs(wf, tuple(p for p in pairs if p.split("=", 1)[0].strip() in wf.inputs), None)
        values = {n: s["default"] for n, s in wf.inputs.items() if isinstance(s, dict) and "default" in s}
        values.update(given)
        ctx = {"inputs": values, "secrets": secrets, "workflow": {"name": wf.name}}
        for a in wf.agents:
            try:
                agents[a.id] = render_agent(a, ctx)
                unrenderable.pop(a.id, None)
            except TemplateError as exc:
                agents[a.id] = a
                unrenderable[a.id] = f"cannot render its settings ({exc}); pass the input with -i NAME=VALUE"
    return list(agents.values()), unrenderable


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
    found, _ = _collect(app, files)
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
@input_option("A workflow input that agent settings are templated from (repeatable).")
@common_options
@pass_app
def check_agents(app: App, files: tuple[str, ...], output: str, pairs: tuple[str, ...]) -> int:
    """Connect to every agent and list its tools. Exit 1 if any agent cannot be reached."""
    collected, unrenderable = _collect(app, files, pairs)
    found = [a for a in collected if str(a.transport) != "pull" and a.id not in unrenderable]
    if not found and not unrenderable:
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

    report = asyncio.run(go()) if found else {}
    for aid, why in unrenderable.items():
        report[aid] = {"ok": False, "error": why, "tools": []}
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
