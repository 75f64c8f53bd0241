"""YAML → plain values with positions → the frozen workflow model.

``load_yaml`` composes the YAML into a node tree (libyaml when present), converts it to
JSON-like values itself and keeps the tree, so every problem found later — by the JSON
Schema, the DAG checks or the template checks — can point at the exact key or value at
fault (``SourceMap.position``). Positions are looked up lazily by walking the node tree
along the problem's path, so a clean 10,000-step file pays nothing for them.

The conversion is deliberately strict where PyYAML is permissive: only the core tags
(str, int, float, bool, null, seq, map) are accepted, so ``!!python/object/apply`` is an
error rather than code execution; duplicate keys are errors; alias expansion is bounded
(billion laughs fails in milliseconds); implicit timestamps stay strings, because the
workflow model is JSON and a date is text there.

``runner.load.load_workflow`` builds on this: validate (``runner.load.validation``), then
build the model (``runner.load.build``).
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver, Resolver

from runner.errors import Problem, WorkflowInvalid
from runner.model.problems import RANK_STRUCTURE, RANK_YAML

__all__ = ["MAX_FILE_BYTES", "PathT", "SourceMap", "gc_paused", "json_path", "load_yaml", "read_text"]

PathT = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = _TAG + "seq", _TAG + "map", _TAG + "merge"
_ALIAS_FLOOR = 100_000  # nodes an alias expansion may produce, at least
# Integers a float can hold (durations, numbers compared with floats): a 4,400-digit
# literal is a hostile or broken file, and str() of it would raise past 4,300 digits.
_INT_BITS_MAX = 1023
_INT_CHARS_MAX = 1000


class _Resolver(BaseResolver):
    """PyYAML's implicit resolution minus timestamps and ``=``: those stay strings."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in pairs if tag not in (_TAG + "timestamp", _TAG + "value")]
    for first, pairs in Resolver.yaml_implicit_resolvers.items()
}

try:
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]  # stubs omit it from __all__

    class _Loader(_Parser, SafeConstructor, _Resolver):
        """libyaml parser and composer with the strict resolver."""

        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            SafeConstructor.__init__(self)
            _Resolver.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, _Resolver):  # type: ignore[no-redef]
        """Pure-Python parser and composer with the strict resolver."""

        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            _Resolver.__init__(self)


_SCALARS = SafeConstructor()  # only its int/float parsers are used, on scalar nodes


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def json_path(path: Sequence[str | int]) -> str:
    """``("steps", 2, "depends_on", 0)`` → ``$.steps[2].depends_on[0]``."""
    out = ["$"]
    for p in path:
        if isinstance(p, int):
            out.append(f"[{p}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", p):
            out.append("." + p)
        else:
            out.append("[" + json.dumps(p) + "]")
    return "".join(out)


def _mark(node: Node) -> tuple[int, int]:
    m = node.start_mark
    return m.line + 1, m.column + 1


class _AliasBomb(Exception):
    pass


class _Converter:
    """Node tree → plain values; collects tag and duplicate-key problems as it goes."""

    def __init__(self, smap: SourceMap, limit: int) -> None:
        self.smap = smap
        self.problems: list[Problem] = []
        self.stack: list[str | int] = []
        self.seen: set[int] = set()  # collection nodes already converted once
        self.active: set[int] = set()  # collection nodes being converted (recursion check)
        self.aliasing = 0  # > 0 while converting a node reached a second time (an alias)
        self.expanded = 0
        self.limit = limit
        self.alias_path: PathT = ()  # where the outermost alias being expanded is used

    def _bad(self, node: Node, message: str) -> None:
        line, col = _mark(node)
        self.problems.append(Problem(message, json_path(self.stack), self.smap.file, line, col, rank=RANK_YAML))

    def value(self, node: Node) -> Any:
        if self.aliasing:
            self.expanded += 1
            if self.expanded > self.limit:
                raise _AliasBomb
        tag = node.tag
        if isinstance(node, ScalarNode):
            if tag == _STR:
                return node.value
            return self._scalar(node, tag)
        key = id(node)
        if key in self.seen:
            if key in self.active:
                self._bad(node, "recursive YAML alias (a node contains itself)")
                return None
            if not self.aliasing:
                self.alias_path = tuple(self.stack)
            self.aliasing += 1
            try:
                return self._collection(node, key, tag)
            finally:
                self.aliasing -= 1
        self.seen.add(key)
        return self._collection(node, key, tag)

    def _collection(self, node: Node, key: int, tag: str) -> Any:
        self.active.add(key)
        try:
            if isinstance(node, SequenceNode):
                if tag != _SEQ:
                    self._bad(node, f"unsupported YAML tag {_short_tag(tag)!r}")
                    return None
                out: list[Any] = []
                stack = self.stack
                for i, child in enumerate(node.value):
                    stack.append(i)
                    out.append(self.value(child))
                    stack.pop()
                return out
            if tag != _MAP or not isinstance(node, MappingNode):
                self._bad(node, f"unsupported YAML tag {_short_tag(tag)!r}")
                return None
            return self._mapping(node)
        finally:
            self.active.discard(key)

    def _mapping(self, node: MappingNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[Node] = []
        stack = self.stack
        for k, v in node.value:
            if not isinstance(k, ScalarNode):
                self._bad(k, "mapping keys must be strings, not a nested mapping or list")
                continue
            if k.tag == _MERGE:
                merges.append(v)
                continue
            if k.tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
                self._bad(k, f"unsupported YAML tag {_short_tag(k.tag)!r}")
                continue
            name = k.value  # keys are text in JSON: `1:`, `on:` and `null:` are the strings
            if name in out:
                stack.append(name)
                self._bad(k, f"duplicate key {name!r} (already defined in this mapping)")
                stack.pop()
                continue
            stack.append(name)
            out[name] = self.value(v)
            stack.pop()
        for m in merges:
            for src in self._merge_sources(m):
                converted = self.value(src)
                if isinstance(converted, dict):
                    for name, val in converted.items():
                        out.setdefault(name, val)
        return out

    def _merge_sources(self, node: Node) -> list[Node]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        self._bad(node, "a merge key '<<' needs a mapping or a list of mappings")
        return []

    def _scalar(self, node: ScalarNode, tag: str) -> Any:
        try:
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return SafeConstructor.bool_values[node.value.lower()]
            if tag == _INT:
                if len(node.value) > _INT_CHARS_MAX:  # before PyYAML's int(): quadratic in digits
                    raise OverflowError
                number = _SCALARS.construct_yaml_int(node)
                if number.bit_length() > _INT_BITS_MAX:
                    raise OverflowError
                return number
            if tag == _FLOAT:
                real = _SCALARS.construct_yaml_float(node)
                if not math.isfinite(real):
                    self._bad(node, f"{node.value!r} is not a finite number (JSON has no NaN or Infinity)")
                    return None
                return real
        except OverflowError:
            self._bad(node, f"integer too large ({len(node.value):,} characters): at most {_INT_BITS_MAX} bits")
            return None
        except (KeyError, ValueError, IndexError):  # IndexError: PyYAML on `!!int ''`
            shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            self._bad(node, f"invalid {_short_tag(tag)} value {shown!r}")
            return None
        self._bad(node, f"unsupported YAML tag {_short_tag(tag)!r}")
        return None


class SourceMap:
    """Positions of a loaded document's keys and values, found by walking its node tree.

    A mapping's keys are indexed the first time a path goes through it, so positioning
    one problem per key of a 80,000-key mapping stays linear (a scan per lookup made
    validating such a file quadratic: minutes).
    """

    __slots__ = ("_index", "_prefix", "_root", "file")

    def __init__(self, file: str, root: Node | None) -> None:
        self.file = file
        self._root = root
        self._index: dict[int, tuple[dict[str, tuple[Node, Node]], list[Node]]] = {}
        self._prefix: PathT = ()

    def sub(self, prefix: Sequence[str | int]) -> SourceMap:
        """This map seen from the node at ``prefix``: paths given to it are relative to that
        node, positions and JSON paths are the whole file's (a step's inline ``workflow:`` is
        checked as a workflow of its own, its problems placed in the calling file)."""
        view = SourceMap.__new__(SourceMap)
        view.file, view._root, view._index = self.file, self._root, self._index
        view._prefix = (*self._prefix, *prefix)
        return view

    def position(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the most specific node along ``path``.

        With ``key=True`` and a path ending in a mapping key that exists, the key's own
        position (for "unknown key" problems); else the value's. A path that leaves the
        document (a missing key) stops at the deepest node that exists.
        """
        node = self._root
        if node is None:
            return 1, 1
        key_node: Node | None = None
        for p in (*self._prefix, *path):
            child = self._child(node, p)
            if child is None:
                return _mark(node)
            key_node, node = child
        if key and key_node is not None:
            return _mark(key_node)
        return _mark(node)

    def _keys(self, node: MappingNode) -> tuple[dict[str, tuple[Node, Node]], list[Node]]:
        """``node``'s keys (first occurrence wins) and its merge sources, built once."""
        found = self._index.get(id(node))
        if found is None:
            keys: dict[str, tuple[Node, Node]] = {}
            merges: list[Node] = []
            for k, v in node.value:
                if isinstance(k, ScalarNode):
                    if k.tag == _MERGE:
                        merges.append(v)
                    else:
                        keys.setdefault(k.value, (k, v))
            found = self._index[id(node)] = (keys, merges)
        return found

    def _child(self, node: Node, p: str | int, depth: int = 0) -> tuple[Node | None, Node] | None:
        if isinstance(node, SequenceNode):
            if isinstance(p, int) and 0 <= p < len(node.value):
                return None, node.value[p]
            return None
        if not isinstance(node, MappingNode) or depth > 50:  # merges of merges: bounded
            return None
        keys, merges = self._keys(node)
        if isinstance(p, str) and p in keys:
            return keys[p]
        for m in merges:
            sources = m.value if isinstance(m, SequenceNode) else [m]
            for src in sources:
                found = self._child(src, p, depth + 1)
                if found is not None:
                    return found
        return None

    def problem(
        self,
        message: str,
        path: Sequence[str | int] = (),
        *,
        key: bool = False,
        rank: int = RANK_STRUCTURE,
        severity: str = "error",
    ) -> Problem:
        """A Problem at ``path``, positioned on its key (``key=True``) or value."""
        line, col = self.position(path, key=key)
        return Problem(message, json_path((*self._prefix, *path)), self.file, line, col, severity, rank)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Composing a 1.5 MB file makes ~400,000 node and mark objects; the collector's
    repeated full scans of that growing heap cost more than the parsing itself (here
    2-3 s of a 10,000-step validation, against ~0.5 s with it paused).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_yaml(text: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain values plus its SourceMap.

    Raises WorkflowInvalid with every YAML-level problem (syntax, tags, duplicate keys,
    alias bombs), each positioned.
    """
    with gc_paused():
        return _load_yaml(text, file)


def _compose(text: str) -> Node | None:
    """The document's node tree (what ``yaml.compose`` does, with our loader class)."""
    loader = _Loader(text)
    try:
        root: Node | None = loader.get_single_node()
        return root
    finally:
        loader.dispose()


def _load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or "malformed YAML").removeprefix("but ")
        if exc.context:
            started = exc.context_mark
            where = f" started on line {started.line + 1}" if started and started.line + 1 != line else ""
            what += f" ({exc.context}{where})"
        raise WorkflowInvalid([Problem(f"invalid YAML: {what}", "$", file, line, col, rank=RANK_YAML)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid([Problem(f"invalid YAML: {exc}", "$", file, 1, 1, rank=RANK_YAML)]) from None
    smap = SourceMap(file, root)
    if root is None:
        return None, smap
    conv = _Converter(smap, max(_ALIAS_FLOOR, len(text)))
    try:
        value = conv.value(root)
    except _AliasBomb:
        raise WorkflowInvalid(
            [
                Problem(
                    f"YAML aliases expand to too many nodes (more than {conv.limit:,})",
                    json_path(conv.alias_path),
                    file,
                    *smap.position(conv.alias_path),
                    rank=RANK_YAML,
                )
            ]
        ) from None
    except RecursionError:
        raise WorkflowInvalid(
            [Problem("YAML nesting too deep", json_path(conv.stack[:50]), file, 1, 1, rank=RANK_YAML)]
        ) from None
    if conv.problems:  # a problem inside an anchored node is met again at every alias
        unique: dict[tuple[int, int, str], Problem] = {}
        for p in conv.problems:
            unique.setdefault((p.line, p.col, p.message), p)
        raise WorkflowInvalid(list(unique.values()))
    return value, smap


MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest file runner reads (workflows, --inputs, --secrets, --agents): 64 MiB.

A 10,000-step workflow is ~1.5 MB; the cap keeps ``--inputs /dev/zero`` or a runaway
generated file from reading until memory runs out."""


def read_text(path: str | Path, what: str = "workflow file") -> str:
    """A file's text, read at most ``MAX_FILE_BYTES``; a missing, unreadable, oversized or
    non-UTF-8 file is WorkflowInvalid (exit 2), its message naming ``what`` the file is.

    A file that is not UTF-8 is positioned on its first bad byte (line, and column in
    characters of that line), not on a made-up ``0:0``.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WorkflowInvalid(
            [Problem(f"cannot read {what}: {path}: {reason}", "$", str(path), 0, 0, rank=RANK_YAML)],
        ) from None
    if len(data) > MAX_FILE_BYTES:
        reason = f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        raise WorkflowInvalid(
            [Problem(f"cannot read {what}: {path}: {reason}", "$", str(path), 0, 0, rank=RANK_YAML)],
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        msg = f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character (save the file as UTF-8)"
        raise WorkflowInvalid([Problem(msg, "$", str(path), line, col, rank=RANK_YAML)]) from None
