"""An in-process MCP agent whose results are Python values JSON cannot hold, for issue 12's tests.

In process, the MCP SDK hands a tool's ``CallToolResult`` to the client as the very
object the tool built, so ``structuredContent`` may carry a set, ``NaN``, a tuple, a
40,000-digit integer or a bound method: what a buggy or hostile agent, or a lenient
JSON parser on the wire, can give the runner. The tests describe the value to build as
JSON (``spec``) because the arguments themselves travel as JSON:

    {"nan": true} {"inf": -1} {"set": [1, 2]} {"tuple": [1, {"tuple": []}]} {"bigint": 5000}
    {"bytes": "ab"} {"intkey": 1, "value": X} {"deep": 300, "value": X} {"method": "title"}
    {"list": [X, ...]} {"dict": {"k": X}}   anything else: itself (plain JSON)

Used as ``module: "odd_agent:server"`` with this file copied next to the workflow, or as
``tests.agents.odd_agent:server``.
"""

from __future__ import annotations

import math
from typing import Any

from mcp.server import MCPServer
from mcp_types import CallToolResult, TextContent

server = MCPServer("odd", log_level="WARNING")


def build(spec: Any) -> Any:
    """The Python value ``spec`` describes (see the module docstring)."""
    if not isinstance(spec, dict):
        return [build(x) for x in spec] if isinstance(spec, list) else spec
    if "nan" in spec:
        return math.nan
    if "inf" in spec:
        return math.inf if spec["inf"] >= 0 else -math.inf
    if "set" in spec:
        return {x for x in spec["set"] if isinstance(x, (int, str))}
    if "tuple" in spec:
        return tuple(build(x) for x in spec["tuple"])
    if "bigint" in spec:
        return 10 ** int(spec["bigint"])
    if "bytes" in spec:
        return str(spec["bytes"]).encode()
    if "intkey" in spec:
        return {int(spec["intkey"]): build(spec.get("value"))}
    if "deep" in spec:
        value = build(spec.get("value"))
        for _ in range(int(spec["deep"])):
            value = [value]
        return value
    if "method" in spec:
        return getattr("text", str(spec["method"]))
    if "list" in spec:
        return [build(x) for x in spec["list"]]
    if "dict" in spec:
        return {str(k): build(v) for k, v in spec["dict"].items()}
    return spec


@server.tool()
async def names() -> list[str]:
    """Two names (issue 12's example: a template then asks for `.title` of one)."""
    return ["alpha", "beta"]


@server.tool()
async def odd(spec: Any) -> CallToolResult:
    """Return ``{"value": build(spec)}`` as structured content, the Python object itself."""
    return CallToolResult(content=[TextContent(type="text", text="odd")], structuredContent={"value": build(spec)})


@server.tool(structured_output=False)
async def text(value: str) -> str:
    """Return ``value`` as the tool's text (JSON text a lenient parser would take: ``NaN``, ``1e999``)."""
    return value


@server.tool()
async def echo(value: Any = None) -> dict[str, Any]:
    """Return the argument it got, as structured content ``{"got": value}``."""
    return {"got": value}
