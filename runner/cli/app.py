"""Shared CLI state and the common options every subcommand accepts (SPEC §4).

``--store``, ``--agents``, ``-v`` and ``-q`` may come before or after the subcommand name;
both spellings land in one ``App`` object in ``ctx.obj`` (click's ``make_pass_decorator``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    store: str | None = None
    agents: str | None = None
    verbose: int = 0
    quiet: bool = False

    def registry(self) -> list[Any]:
        from runner.api import load_registry

        return load_registry(self.agents)


pass_app = click.make_pass_decorator(App, ensure=True)


def input_option(help_text: str) -> Callable[[F], F]:
    """``-i/--input NAME=VALUE`` (repeatable), passed to the command as ``pairs``."""
    return click.option("-i", "--input", "pairs", multiple=True, metavar="NAME=VALUE", help=help_text)


def quiet_sdk_logs() -> None:
    """Keep the MCP SDK's log records (tracebacks included) off the user's terminal.

    Without a handler of its own, a library's warnings reach stderr through logging's
    last-resort handler; a failing agent is already reported in one line by the runner.
    """
    import logging

    lg = logging.getLogger("mcp")
    lg.addHandler(logging.NullHandler())
    # An in-process agent's MCPServer configures the root logger (a rich handler): the
    # SDK's records, such as a crashing tool's traceback, must not reach it either.
    lg.propagate = False


def show_sdk_logs() -> None:
    """With ``-v``: the SDK's warnings and errors on stderr, prefixed with the logger's name."""
    import logging

    lg = logging.getLogger("mcp")
    if not any(getattr(h, "_runner_verbose", False) for h in lg.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("runner: %(name)s: %(message)s"))
        handler._runner_verbose = True  # type: ignore[attr-defined]
        lg.addHandler(handler)


def _set(field: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        app = ctx.ensure_object(App)
        if field == "verbose":
            if value:
                app.verbose = max(app.verbose, value)
                show_sdk_logs()
        elif field == "quiet":
            if value:
                app.quiet = True
        elif value is not None:
            setattr(app, field, value)
        return value

    return callback


def common_options(f: F) -> F:
    """Attach ``--store/--agents/-v/-q`` to a command (they do not reach its function)."""
    opts = [
        click.option(
            "--store",
            metavar="URL",
            expose_value=False,
            callback=_set("store"),
            help="Store URL (env RUNNER_STORE; default sqlite:///.runner/runner.db).",
        ),
        click.option(
            "--agents",
            "agents",
            metavar="FILE",
            expose_value=False,
            callback=_set("agents"),
            type=click.Path(dir_okay=False),
            help="YAML file with a top-level `agents:` list.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_set("verbose"),
            help="More output; tracebacks on internal errors.",
        ),
        click.option(
            "-q", "--quiet", is_flag=True, expose_value=False, callback=_set("quiet"), help="No progress output."
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f
