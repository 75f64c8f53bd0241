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


def _bare_text(block: Any) -> bool:
    """Whether ``block`` is a text block with nothing but its text (the usual tool output)."""
    return getattr(block, "type", None) == "text" and block.annotations is None and block.meta is None


def block_to_dict(block: Any) -> dict[str, Any]:
    """One SDK content block as a JSON-able dict (wire field names, no nulls)."""
    # The common case, a bare text block, skips pydantic's serializer (~2 µs a block).
    if _bare_text(block):
        return {"type": "text", "text": block.text}
    dumped: dict[str, Any] = block.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def to_call_result(raw: Any, *, unwrap: bool) -> CallResult:
    """Convert an SDK ``CallToolResult`` (duck-typed) into a ``CallResult``.

    ``unwrap`` says whether the tool's output schema is the ``{"result": ...}`` wrapper.
    """
    blocks = raw.content
    single = blocks[0] if len(blocks) == 1 else None
    if single is not None and getattr(single, "type", None) == "text":
        text: str = single.text
    else:
        text = "\n".join(b.text for b in blocks if getattr(b, "type", None) == "text")
    structured = raw.structured_content
    result = result_value(structured, text, unwrap=unwrap)
    try:
        result, text = _clean(result), _clean(text)
        if single is not None and _bare_text(single):
            # What block_to_dict and _clean would give, built from the text cleaned above
            # (the usual tool output): building and walking it again costs ~10,000
            # instructions a call.
            content = [{"type": "text", "text": text}]
        else:
            content = _clean([block_to_dict(b) for b in blocks])
    except _Unprintable as exc:
        return CallResult(is_error=True, result=None, text=str(exc), content=[], structured=None)
    # Positional: a dataclass call with keywords costs twice as much, on every tool call.
    return CallResult(bool(raw.is_error), result, text, content, structured)


_MAX_INT_BITS = int((4300 - 1) * 3.321928094887362)  # Python prints integers up to 4,300 digits


class _Unprintable(ValueError):
    pass


def _clean(value: Any) -> Any:
    """A tool's value made safe to write anywhere: lone UTF-16 surrogates become U+FFFD.

    A surrogate pair a JSON decoder left split is joined back into its character; a lone
    surrogate cannot be encoded as UTF-8 (stores, files, the next tool call would fail on
    it), so it is replaced, as a UTF-8 decoder replaces invalid bytes. An integer too long
    to print is refused (``_Unprintable``): the call fails with that reason.

    It runs on every call's result, text and content, so it is written for the common
    case, where nothing changes: plain loops (a generator or ``zip`` per container cost
    several times the walk itself), ASCII strings and other scalars tested in line
    without a call, and a container copied only from the first item that changes.
    """
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _clean_text(value)
    if kind is dict:
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            ck = k if type(k) is not str or k.isascii() else _clean_text(k)
            t = type(v)
            if t is str:
                cv = v if v.isascii() else _clean_text(v)
            elif t is dict or t is list or (t is int and v.bit_length() > _MAX_INT_BITS):
                cv = _clean(v)
            else:
                cv = v
            if out is not None:
                out[ck] = cv
            elif cv is not v or ck is not k:
                out = _copy_until(value, k)
                out[ck] = cv
        return value if out is None else out
    if kind is list:
        items: list[Any] | None = None
        for i, v in enumerate(value):
            t = type(v)
            if t is str:
                cv = v if v.isascii() else _clean_text(v)
            elif t is dict or t is list or (t is int and v.bit_length() > _MAX_INT_BITS):
                cv = _clean(v)
            else:
                cv = v
            if items is not None:
                items.append(cv)
            elif cv is not v:
                items = value[:i]
                items.append(cv)
        return value if items is None else items
    if kind is int and value.bit_length() > _MAX_INT_BITS:
        raise _Unprintable("the tool returned an integer of more than 4,300 digits, which cannot be written out")
    return value


def _clean_text(text: str) -> str:
    """A non-ASCII string, with lone surrogates replaced (itself when it encodes as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _copy_until(d: dict[Any, Any], stop: Any) -> dict[Any, Any]:
    """The items of ``d`` before key ``stop``, in order (the part a cleaned copy keeps as is)."""
    out: dict[Any, Any] = {}
    for k, v in d.items():
        if k is stop:
            break
        out[k] = v
    return out
