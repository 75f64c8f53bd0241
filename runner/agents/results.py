"""What a tool call gives back, in the runner's terms (no MCP SDK import here).

``CallResult`` is what ``AgentConnection.call`` returns and what fakes in tests build by
hand; ``ToolInfo`` is one entry of an agent's tool list. Keeping both free of the SDK lets
selection, validation and test doubles use them without paying for ``import mcp``.

The conversion from an SDK ``CallToolResult`` follows SPEC §2: ``result`` is the
``structuredContent`` if present, else the joined text parsed as JSON if it is JSON, else
the text (a text that is JSON only to Python's lenient parser, with ``NaN``, or whose value
is not data the runner can hold, ``1e999`` or nesting past ``MAX_DEPTH``, stays text); a
``{"result": v}`` wrapper the SDKs put around non-object return values is
unwrapped when the tool's ``outputSchema`` says it is one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.model.data import as_data

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None] | None]
"""``on_progress(progress, total, message)``; may be a plain function or a coroutine function."""


@dataclass(frozen=True)
class ToolInfo:
    """One tool an agent offers, as its ``tools/list`` described it."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    @property
    def wraps_result(self) -> bool:
        """True when the output schema is the SDKs' ``{"result": ...}`` wrapper object."""
        return is_result_wrapper(self.output_schema)


@dataclass
class CallResult:
    """The outcome of one ``tools/call``: what ``steps.<id>`` exposes to templates.

    ``is_error`` results are returned, not raised: the engine decides what a failed tool
    means for the step and uses ``text`` as the step's error message.
    """

    is_error: bool
    result: Any
    text: str
    content: list[dict[str, Any]] = field(default_factory=list)
    structured: Any | None = None


def is_result_wrapper(schema: Mapping[str, Any] | None) -> bool:
    """Whether ``schema`` is an object schema whose only property is ``result``."""
    if not schema or schema.get("type") != "object":
        return False
    props = schema.get("properties")
    return isinstance(props, Mapping) and len(props) == 1 and "result" in props


def result_value(structured: Any, text: str, *, unwrap: bool) -> Any:
    """SPEC §2's ``steps.<id>.result`` from a tool's structured content and joined text."""
    if structured is not None:
        if unwrap and type(structured) is dict and len(structured) == 1 and "result" in structured:
            return structured["result"]
        return structured
    if not text:
        return text
    try:
        return as_data(_decode(text))
    except (ValueError, RecursionError):  # not JSON (NaN is not), or not data we can hold (NotData)
        return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode  # built once; json.loads(**kw) builds one a call


def block_to_dict(block: Any) -> dict[str, Any]:
    """One SDK content block as a JSON-able dict (wire field names, no nulls)."""
    # The common case, a bare text block, skips pydantic's serializer (~2 µs a block).
    if getattr(block, "type", None) == "text" and block.annotations is None and block.meta is None:
        return {"type": "text", "text": block.text}
    dumped: dict[str, Any] = block.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def to_call_result(raw: Any, *, unwrap: bool) -> CallResult:
    """Convert an SDK ``CallToolResult`` (duck-typed) into a ``CallResult``.

    ``unwrap`` says whether the tool's output schema is the ``{"result": ...}`` wrapper.
    """
    blocks = raw.content
    if len(blocks) == 1 and getattr(blocks[0], "type", None) == "text":
        text: str = blocks[0].text
    else:
        text = "\n".join(b.text for b in blocks if getattr(b, "type", None) == "text")
    structured = raw.structured_content
    result = result_value(structured, text, unwrap=unwrap)
    content = [block_to_dict(b) for b in blocks]
    try:
        result, text, content = _clean(result), _clean(text), _clean(content)
    except _Unprintable as exc:
        return CallResult(is_error=True, result=None, text=str(exc), content=[], structured=None)
    return CallResult(
        is_error=bool(raw.is_error),
        result=result,
        text=text,
        content=content,
        structured=structured,
    )


_MAX_INT_BITS = int((4300 - 1) * 3.321928094887362)  # Python prints integers up to 4,300 digits


class _Unprintable(ValueError):
    pass


def _clean(value: Any) -> Any:
    """A tool's value made safe to write anywhere: lone UTF-16 surrogates become U+FFFD.

    A surrogate pair a JSON decoder left split is joined back into its character; a lone
    surrogate cannot be encoded as UTF-8 (stores, files, the next tool call would fail on
    it), so it is replaced, as a UTF-8 decoder replaces invalid bytes. An integer too long
    to print is refused (``_Unprintable``): the call fails with that reason. Containers are
    copied only when something in them changes; plain ASCII text costs one C call.
    """
    kind = type(value)
    if kind is str:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if kind is dict:
        out = {_clean(k) if type(k) is str else k: _clean(v) for k, v in value.items()}
        return value if _same(out, value) else out
    if kind is list:
        items = [_clean(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if kind is int and value.bit_length() > _MAX_INT_BITS:
        raise _Unprintable("the tool returned an integer of more than 4,300 digits, which cannot be written out")
    return value


def _same(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    return all(ka is kb and va is vb for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True))
