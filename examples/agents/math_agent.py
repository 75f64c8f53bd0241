"""Example agent "math": small arithmetic tools, plus two tools for exercising a runner.

``add``, ``multiply``, ``divide``, ``sum_list`` and ``stats`` are cheap, deterministic and
typed, which makes them handy for ``for_each`` fan-outs, chains whose every step feeds
the next, and benchmarks. Integers stay integers (``add(2, 3)`` is ``5``, not ``5.0``).

Two tools exist to show a runner's failure handling without anything actually breaking:
``sleep`` takes a known time (timeouts, parallelism), and ``flaky`` fails a set number of
times per key before succeeding (``retry``). ``divide`` by zero is an ordinary tool error
(``continue_on_error``, ``if`` on ``steps.x.status``).

Run it::

    python examples/agents/math_agent.py              # stdio
    python examples/agents/math_agent.py --http 8767  # streamable HTTP on 127.0.0.1

or import it in-process as ``examples.agents.math_agent:server``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections import Counter

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

server = MCPServer(
    "math",
    instructions="Arithmetic and statistics on numbers; sleep and flaky for testing runners.",
    log_level="WARNING",
)

# A union (not plain float) so pydantic keeps an int an int: 2 + 3 is 5, not 5.0.
Number = int | float

_MAX_SLEEP = 60.0
# Calls seen per ``flaky`` key, for this process's lifetime (one runner session = one process).
_flaky_calls: Counter[str] = Counter()


class Stats(TypedDict):
    count: int
    sum: Number
    mean: float
    min: Number
    max: Number


class FlakyResult(TypedDict):
    key: str
    attempt: int


def _finite(value: Number, name: str) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError(f"{name}: result is not a finite number ({value})")
    return value


@server.tool()
async def add(a: Number, b: Number) -> Number:
    """a + b."""
    return _finite(a + b, "add")


@server.tool()
async def multiply(a: Number, b: Number) -> Number:
    """a × b."""
    return _finite(a * b, "multiply")


@server.tool()
async def divide(a: Number, b: Number) -> float:
    """a ÷ b; dividing by zero is an error result (argument ``b``)."""
    if b == 0:
        raise ToolError("b: division by zero")
    return _finite(a / b, "divide")


@server.tool()
async def sum_list(numbers: list[Number]) -> Number:
    """The sum of a list of numbers (0 for an empty list)."""
    return _finite(sum(numbers), "sum_list")


@server.tool()
async def stats(numbers: list[Number]) -> Stats:
    """Count, sum, mean, min and max of a non-empty list of numbers."""
    if not numbers:
        raise ToolError("numbers: need at least one number")
    total = _finite(sum(numbers), "stats")
    return {
        "count": len(numbers),
        "sum": total,
        "mean": total / len(numbers),
        "min": min(numbers),
        "max": max(numbers),
    }


@server.tool()
async def sleep(seconds: float) -> float:
    """Wait ``seconds`` (at most 60) without blocking other calls; returns the seconds waited."""
    if not 0 <= seconds <= _MAX_SLEEP:
        raise ToolError(f"seconds: must be between 0 and {_MAX_SLEEP:g}, got {seconds}")
    await asyncio.sleep(seconds)
    return seconds


@server.tool()
async def flaky(key: str, fail_times: int = 1) -> FlakyResult:
    """Fail the first ``fail_times`` calls with this ``key``, then succeed.

    Counts calls per key for the life of this server process, so a step retried on the
    same session succeeds on attempt ``fail_times + 1``. Returns the key and the attempt
    number that succeeded. Use a fresh key (e.g. the run id) per run.
    """
    if fail_times < 0:
        raise ToolError(f"fail_times: must not be negative, got {fail_times}")
    _flaky_calls[key] += 1
    attempt = _flaky_calls[key]
    if attempt <= fail_times:
        raise ToolError(f"flaky: planned failure {attempt} of {fail_times} for key {key!r}")
    return {"key": key, "attempt": attempt}


def main(argv: list[str] | None = None) -> None:
    """Serve over stdio, or over streamable HTTP on 127.0.0.1 with ``--http PORT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args(argv)
    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
