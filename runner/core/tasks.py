"""The task tools' own thinking: decompose a task by the structure of its text, assign
subtasks to agents by capability and load, merge subtask results — pure and deterministic.

Why here and pure: ``decompose_task`` asks a ``task_decomposition`` agent or the client's
model first; this is the fallback that must still give a real answer (one that depends on
the text) with no model at all, and ``assign_subtasks``/``merge_results`` must give the
same answer for the same input in every process. No I/O, no clock, no randomness; every
input is checked and a bad one raises ``BadArgument`` naming it. Sizes are capped so a
hostile input costs time linear in its length.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from runner.errors import BadArgument

MAX_TASK_CHARS = 2_000_000
MAX_SUBTASKS = 100
MAX_DESCRIPTION = 2_000
MAX_ITEMS = 1_000  # subtasks, agents or results in one call
MAX_DEPTH = 64  # nesting of merged results

# --- decompose ----------------------------------------------------------------------------

_BULLET = re.compile(r"^(\s*)(?:[-*+•]|\d{1,3}[.)]|\(\d{1,3}\)|[A-Za-z][.)]|\([A-Za-z]\))\s+(\S.*)$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(\S.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_CAPS = re.compile(r"[\[(]\s*(?:capabilities|capability|needs|requires)\s*:\s*([^\])\n]{0,500})[\])]", re.IGNORECASE)
_AFTER = re.compile(r"[\[(]\s*after\s+((?:(?:subtask-)?\d{1,4}\s*(?:,|and)?\s*){1,20})[\])]", re.IGNORECASE)
_PRIORITY = re.compile(r"[\[(]\s*priority\s*:\s*(low|medium|high)\s*[\])]", re.IGNORECASE)
_SEQUENTIAL = re.compile(
    r"^(?:then|and then|after that|afterwards|next|finally|lastly|once (?:that|this) is done)\b[\s,:;-]*",
    re.IGNORECASE,
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([;,.:!?])")
_HIGH = re.compile(r"\b(?:urgent|urgently|critical|asap|immediately|high[- ]priority|blocker)\b", re.IGNORECASE)
_LOW = re.compile(r"\b(?:optional|optionally|nice[- ]to[- ]have|low[- ]priority|if time permits)\b", re.IGNORECASE)


def decompose_by_structure(task: str, max_subtasks: int = 20) -> list[dict[str, Any]]:
    """Subtasks read off the structure of ``task``: its list items, else its headings, else
    its sentences, else the whole task as one subtask.

    List items are bullets (``-``, ``*``, ``+``) and numbered or lettered items (``1.``,
    ``1)``, ``(1)``, ``a.``); lines under an item, and items indented deeper than the
    first, belong to it. Text before the first item is the task's preamble, not a subtask.

    Conventions inside an item (the markers are removed from its description):

    - ``[capabilities: x, y]`` or ``(needs: x)`` (also ``requires:``) → ``required_capabilities``;
    - ``(after 2)`` or ``(after 1, 3)`` → ``depends_on`` those earlier items; an item that
      starts with ``then``, ``after that``, ``next``, ``finally``… depends on the previous
      one. Only earlier items can be named, so the dependencies never form a cycle;
    - ``[priority: high]`` sets the priority; else words decide: ``urgent``, ``critical``,
      ``asap``… → high, ``optional``, ``nice to have``… → low, otherwise medium.

    Beyond ``max_subtasks`` items, the last subtask gathers the remaining ones (nothing is
    silently dropped). Descriptions longer than 2,000 characters are cut with ``…``.
    """
    if not isinstance(task, str):
        raise BadArgument("task", f"must be a string, not {type(task).__name__}")
    if not task.strip():
        raise BadArgument("task", "must not be empty")
    if len(task) > MAX_TASK_CHARS:
        raise BadArgument("task", f"is {len(task)} characters long; the limit is {MAX_TASK_CHARS}")
    if isinstance(max_subtasks, bool) or not isinstance(max_subtasks, int) or not 1 <= max_subtasks <= MAX_SUBTASKS:
        raise BadArgument("max_subtasks", f"must be a whole number from 1 to {MAX_SUBTASKS}, not {max_subtasks!r}")
    items = _list_items(task) or _sections(task) or _sentences(task) or [" ".join(task.split())]
    if len(items) > max_subtasks:
        rest = items[max_subtasks - 1 :]
        items = items[: max_subtasks - 1] + [f"Remaining {len(rest)} items: " + "; ".join(_clip(r) for r in rest[:50])]
    return [_subtask(i, text) for i, text in enumerate(items, start=1)]


_KEEP = 8 * MAX_DESCRIPTION  # characters of one item worth reading (markers and wording sit up front)


class _Items:
    """Items being collected, each a list of parts whose length stops counting at ``_KEEP``.

    Parts, not string concatenation: appending a 1 MB item line by line stays linear.
    """

    def __init__(self) -> None:
        self.parts: list[list[str]] = []
        self.sizes: list[int] = []

    def start(self, text: str) -> None:
        self.parts.append([text])
        self.sizes.append(len(text))

    def add(self, text: str, sep: str = " ") -> None:
        if self.sizes[-1] < _KEEP:
            self.parts[-1].append(sep + text)
            self.sizes[-1] += len(text) + len(sep)

    def texts(self) -> list[str]:
        return ["".join(p) for p in self.parts]


def _list_items(text: str) -> list[str]:
    items = _Items()
    top: int | None = None
    after_blank = detached = False
    for line in text.splitlines():
        m = _BULLET.match(line)
        indent = len(line) - len(line.lstrip())
        if m and (top is None or len(m.group(1)) <= top):
            top = len(m.group(1)) if top is None else top
            items.start(m.group(2))
            detached = False
        elif items.parts and line.strip() and not detached:
            if after_blank and not m and indent <= (top or 0):
                detached = True  # a paragraph after a list is not part of its last item
            else:
                items.add(m.group(2) if m else line.strip(), "; " if m else " ")
        after_blank = not line.strip()
    return items.texts()


def _sections(text: str) -> list[str]:
    items = _Items()
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            items.start(m.group(1))
        elif items.parts and line.strip():
            items.add(line.strip(), ": " if len(items.parts[-1]) == 1 else " ")
    return items.texts()


def _sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    parts = [p for p in _SENTENCE_END.split(flat) if p.strip()]
    return parts if len(parts) > 1 else []


def _clip(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(text.split()) if len(text) <= 4 * limit else " ".join(text[: 4 * limit].split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _subtask(n: int, raw: str) -> dict[str, Any]:
    text = raw[:_KEEP]
    caps: list[str] = []
    for m in _CAPS.finditer(text):
        caps.extend(c.strip() for c in m.group(1).split(",") if c.strip())
    depends: list[str] = []
    for m in _AFTER.finditer(text):
        for ref in re.findall(r"\d+", m.group(1)):
            if 1 <= int(ref) < n and f"subtask-{int(ref)}" not in depends:
                depends.append(f"subtask-{int(ref)}")
    explicit = _PRIORITY.search(text)
    body = _PRIORITY.sub("", _AFTER.sub("", _CAPS.sub("", text)))
    body = _SPACE_BEFORE_PUNCT.sub(r"\1", body).strip()
    sequential = _SEQUENTIAL.match(body)
    if sequential and n > 1 and f"subtask-{n - 1}" not in depends:
        depends.insert(0, f"subtask-{n - 1}")
    if explicit:
        priority = explicit.group(1).lower()
    else:
        priority = "high" if _HIGH.search(body) else "low" if _LOW.search(body) else "medium"
    return {
        "id": f"subtask-{n}",
        "description": _clip(body) or _clip(text),
        "required_capabilities": list(dict.fromkeys(caps)),
        "depends_on": depends,
        "priority": priority,
    }


# --- assign -------------------------------------------------------------------------------

_UNAVAILABLE = frozenset({"offline", "error"})
_READY = frozenset({"available", "idle"})
_PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def assign_subtasks(
    subtasks: list[dict[str, Any]], agents: list[dict[str, Any]], load: dict[str, int] | None = None
) -> dict[str, Any]:
    """Give each subtask to the least-loaded agent that can do it.

    Eligible: the agent has every capability the subtask requires, its ``status`` is not
    ``offline`` or ``error``, and its ``circuit`` is not ``open``. Among those, the lowest
    ``load[agent]`` plus what this call already gave it wins; ties go to ``available`` or
    ``idle`` agents before busy ones, a ``closed`` circuit before ``half_open``, then the
    smaller id. Subtasks are placed by priority (high first, then in the order given), so
    urgent work gets the freest agents; the answer lists them in the order given.
    """
    tasks = _check_subtasks(subtasks)
    pool = _check_agents(agents)
    base = _check_load(load)
    extra: dict[str, int] = {}
    placed: dict[str, dict[str, Any]] = {}
    missing: dict[str, dict[str, Any]] = {}
    order = sorted(range(len(tasks)), key=lambda i: (_PRIORITY_ORDER.get(str(tasks[i].get("priority")), 1), i))
    for i in order:
        task = tasks[i]
        need = list(task.get("required_capabilities") or [])
        capable = [a for a in pool if set(need) <= set(a["capabilities"])]
        eligible = [a for a in capable if _usable(a) is None]
        if not eligible:
            missing[task["id"]] = {"subtask_id": task["id"], "reason": _why_unassigned(need, capable)}
            continue
        best = min(eligible, key=lambda a: _rank(a, base, extra))
        total = base.get(best["id"], 0) + extra.get(best["id"], 0)
        extra[best["id"]] = extra.get(best["id"], 0) + 1
        placed[task["id"]] = {
            "subtask_id": task["id"],
            "agent_id": best["id"],
            "reason": f"least loaded of {len(eligible)} eligible agent(s)"
            + (f" with capabilities {_names(need)}" if need else "")
            + f" (load {total}, status {best.get('status') or 'unknown'})",
        }
    ids = [t["id"] for t in tasks]
    return {
        "assignments": [placed[i] for i in ids if i in placed],
        "unassigned": [missing[i] for i in ids if i in missing],
        "load": {a["id"]: base.get(a["id"], 0) + extra.get(a["id"], 0) for a in pool},
    }


def _names(names: Iterable[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _usable(agent: dict[str, Any]) -> str | None:
    """Why the agent cannot take work now, or None."""
    if str(agent.get("status") or "").lower() in _UNAVAILABLE:
        return f"status {agent['status']}"
    if agent.get("circuit") == "open":
        return "circuit open"
    return None


def _rank(agent: dict[str, Any], base: dict[str, int], extra: dict[str, int]) -> tuple[int, int, int, str]:
    aid = agent["id"]
    status = 0 if str(agent.get("status") or "").lower() in _READY else 1
    circuit = 1 if agent.get("circuit") == "half_open" else 0
    return base.get(aid, 0) + extra.get(aid, 0), status, circuit, aid


def _why_unassigned(need: list[str], capable: list[dict[str, Any]]) -> str:
    reason = f"no agent with capabilities {_names(need)}"
    if capable:
        down = ", ".join(f"{a['id']}: {_usable(a)}" for a in capable[:10])
        reason += f" is available ({down})"
    return reason


def _check_subtasks(subtasks: Any) -> list[dict[str, Any]]:
    if not isinstance(subtasks, list):
        raise BadArgument("subtasks", f"must be a list of objects, not {type(subtasks).__name__}")
    if len(subtasks) > MAX_ITEMS:
        raise BadArgument("subtasks", f"has {len(subtasks)} entries; the limit is {MAX_ITEMS}")
    seen: set[str] = set()
    for i, t in enumerate(subtasks):
        if not isinstance(t, dict) or not isinstance(t.get("id"), str) or not t["id"].strip():
            raise BadArgument("subtasks", f"entry {i} must be an object with a non-empty string 'id'")
        if t["id"] in seen:
            raise BadArgument("subtasks", f"entry {i}: id {t['id']!r} appears twice")
        seen.add(t["id"])
        caps = t.get("required_capabilities")
        if caps is not None and (not isinstance(caps, list) or not all(isinstance(c, str) for c in caps)):
            raise BadArgument("subtasks", f"entry {i} ({t['id']}): 'required_capabilities' must be a list of strings")
    return subtasks


def _check_agents(agents: Any) -> list[dict[str, Any]]:
    if not isinstance(agents, list):
        raise BadArgument("agents", f"must be a list of objects, not {type(agents).__name__}")
    if len(agents) > MAX_ITEMS:
        raise BadArgument("agents", f"has {len(agents)} entries; the limit is {MAX_ITEMS}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, a in enumerate(agents):
        if not isinstance(a, dict) or not isinstance(a.get("id"), str) or not a["id"].strip():
            raise BadArgument("agents", f"entry {i} must be an object with a non-empty string 'id'")
        caps = a.get("capabilities") or []
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise BadArgument("agents", f"entry {i} ({a['id']}): 'capabilities' must be a list of strings")
        if a["id"] not in seen:  # the first entry of an id counts
            seen.add(a["id"])
            out.append({**a, "capabilities": caps})
    return out


def _check_load(load: Any) -> dict[str, int]:
    if load is None:
        return {}
    if not isinstance(load, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in load.items()
    ):
        raise BadArgument("load", "must map agent ids to whole numbers of tasks in flight (0 or more)")
    return dict(load)


# --- merge --------------------------------------------------------------------------------

_WRAPPER_KEYS = frozenset({"subtask_id", "result", "agent_id", "status"})


def merge_results(results: list[Any]) -> dict[str, Any]:
    """One result from many, deterministically, with every disagreement reported.

    Each entry is a result, or a wrapper ``{"subtask_id": ..., "result": ...}`` (an object
    with ``result`` and nothing but ``subtask_id``, ``agent_id``, ``status``), which is
    unwrapped; the wrappers' ``subtask_id`` s come back in ``subtask_ids``.

    - all objects (``strategy: dict``): a deep merge. Equal values merge; lists under one
      key are concatenated without exact duplicates; different values at one key are a
      conflict ``{"path": "a.b", "values": [...], "sources": [indices]}`` and the first
      value is kept (``resolution`` says so);
    - all lists (``list``): concatenated in order, exact duplicates removed;
    - all strings (``text``): paragraphs (split on blank lines) joined by a blank line,
      exact duplicate paragraphs removed;
    - all numbers (``numbers``): ``{"values": [...], "sum": ...}``, no conflicts;
    - anything else — types that differ, or booleans and nulls — (``mixed``): the results
      as given, and a conflict naming each one's type when they differ.
    """
    if not isinstance(results, list):
        raise BadArgument("results", f"must be a list, not {type(results).__name__}")
    if not results:
        raise BadArgument("results", "must not be empty")
    if len(results) > MAX_ITEMS:
        raise BadArgument("results", f"has {len(results)} entries; the limit is {MAX_ITEMS}")
    values: list[Any] = []
    labels: list[Any] = []
    for r in results:
        if isinstance(r, dict) and "result" in r and set(r) <= _WRAPPER_KEYS:
            values.append(r["result"])
            labels.append(r.get("subtask_id"))
        else:
            values.append(r)
            labels.append(None)
    for i, v in enumerate(values):
        _check_depth(v, f"results[{i}]")
    kinds = [_kind(v) for v in values]
    out: dict[str, Any]
    if all(k == "dict" for k in kinds):
        out = _merge_dicts(values)
    elif all(k == "list" for k in kinds):
        out = {"merged": _dedupe(x for v in values for x in v), "conflicts": [], "strategy": "list"}
    elif all(k == "text" for k in kinds):
        paragraphs = _dedupe(p.strip() for v in values for p in re.split(r"\n\s*\n", v) if p.strip())
        out = {"merged": "\n\n".join(paragraphs), "conflicts": [], "strategy": "text"}
    elif all(k == "number" for k in kinds):
        out = {"merged": {"values": list(values), "sum": sum(values)}, "conflicts": [], "strategy": "numbers"}
    else:
        conflicts = []
        if len(set(kinds)) > 1:
            conflicts.append(
                {"path": "", "reason": "type mismatch", "values": kinds, "sources": list(range(len(values)))}
            )
        out = {"merged": copy.deepcopy(values), "conflicts": conflicts, "strategy": "mixed"}
    out["count"] = len(values)
    if any(label is not None for label in labels):
        out["subtask_ids"] = labels
    return out


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool) or value is None:
        return "null" if value is None else "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _check_depth(value: Any, where: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH (iteratively: a hostile depth must not blow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadArgument("results", f"{where} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def _dedupe(items: Iterable[Any]) -> list[Any]:
    seen: set[str] = set()
    out: list[Any] = []
    for x in items:
        key = _canon(x)
        if key not in seen:
            seen.add(key)
            out.append(copy.deepcopy(x))
    return out


def _merge_dicts(values: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    origin: dict[str, int] = {}  # path -> index of the result its kept value came from
    conflicts: dict[str, dict[str, Any]] = {}

    def source_of(path: str) -> int:
        """The result a kept value came from: its own path's, or the nearest enclosing one's."""
        while path not in origin and "." in path:
            path = path.rpartition(".")[0]
        return origin.get(path, 0)

    def merge(into: dict[str, Any], new: dict[str, Any], prefix: str, src: int) -> None:
        for key, value in new.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in into:
                into[key] = copy.deepcopy(value)
                origin[path] = src
            elif isinstance(into[key], dict) and isinstance(value, dict):
                merge(into[key], value, path, src)
            elif isinstance(into[key], list) and isinstance(value, list):
                into[key] = _dedupe([*into[key], *value])
            elif _canon(into[key]) != _canon(value):
                first = source_of(path)
                entry = conflicts.setdefault(
                    path,
                    {
                        "path": path,
                        "values": [copy.deepcopy(into[key])],
                        "sources": [first],
                        "resolution": f"kept the first value (from result {first})",
                    },
                )
                if all(_canon(v) != _canon(value) for v in entry["values"]):
                    entry["values"].append(copy.deepcopy(value))
                    entry["sources"].append(src)

    for i, v in enumerate(values):
        merge(merged, v, "", i)
    return {"merged": merged, "conflicts": list(conflicts.values()), "strategy": "dict"}
