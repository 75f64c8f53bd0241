"""Example agent "coordinator": the task tools a hub-and-spoke or hierarchical team needs.

``decompose_task``, ``assign_subtasks`` and ``merge_results`` with the parameters of
``runner serve``'s task tools (``patterns/hub-and-spoke.yaml`` calls them on whichever agent
its ``coordinator`` input names), on real logic:

- **decompose**: a task is split by its structure (list items, headings, sentences:
  :func:`runner.core.tasks.decompose_by_structure`); a subtask that names no capability gets
  those of ``available_models`` it mentions ("Count how often …" needs ``count`` when an
  agent offers ``count``). Two task shapes of the repository review
  (``examples/hierarchical/``) are recognised: "Review the repository at ROOT" followed by
  file paths gives one subtask per top-level folder (for a team lead), "Review the folder F
  of ROOT:" followed by ``- path`` items one subtask per file, to be read by an agent with
  the ``read_files`` capability (``arguments`` holds the call: ``{path: ROOT/path}``).
  "Review the repository at ROOT by divisions" gives one subtask per top-level folder that
  is itself a repository review rooted there: a level more, for a deeper tree.
- **assign**: by capability and load (:func:`runner.core.tasks.assign_subtasks`); each
  assignment also carries its subtask's ``description``, ``required_capabilities`` and
  ``arguments``, so the worker step needs nothing else.
- **merge**: texts read by the file workers (``{content: ...}``) are reviewed into counts
  (files, lines, blank lines, functions, classes, TODO markers, bytes); the results of review
  teams are added up per folder; other teams' results (hub-and-spoke outputs, as the
  hierarchical pattern passes them) are kept by team (``merged.team-1.…``, ``leads``);
  anything else is merged by
  :func:`runner.core.tasks.merge_results` (deep merge, conflicts reported).

Run it::

    python examples/agents/coordinator_agent.py          # stdio
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from runner.core import tasks as core
from runner.errors import BadArgument

server = MCPServer(
    "coordinator",
    instructions="decompose_task, assign_subtasks and merge_results for hub-and-spoke and hierarchical teams.",
    log_level="WARNING",
)

READ_CAPABILITY = "read_files"
_REPO = re.compile(r"^\s*Review the repository at (\S.*?)( by divisions)?\s*$", re.IGNORECASE)
_FOLDER = re.compile(r"^\s*Review the folder (\S+) of (\S.*?):\s*$", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9_]+")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s", re.MULTILINE)
_CLASS = re.compile(r"^\s*class\s", re.MULTILINE)
_TODO = re.compile(r"\b(?:TODO|FIXME|XXX)\b")
COUNTS = ("files", "lines", "blank_lines", "functions", "classes", "todos", "bytes")


def _capabilities(models: list[dict[str, Any]] | None) -> list[str]:
    seen: dict[str, None] = {}
    for m in models or []:
        for c in m.get("capabilities") or []:
            if isinstance(c, str):
                seen.setdefault(c)
    return list(seen)


def _mentioned(capability: str, words: set[str]) -> bool:
    """A capability is asked for when a word of the text starts with it (count → counts)."""
    stem = capability.lower()
    return any(w == stem or (len(stem) >= 4 and w.startswith(stem)) for w in words)


def _repository_subtasks(root: str, paths: list[str]) -> list[dict[str, Any]]:
    teams: dict[str, list[str]] = {}
    base = PurePosixPath(root)
    for p in paths:
        rel = PurePosixPath(p).relative_to(base) if PurePosixPath(p).is_absolute() else PurePosixPath(p)
        folder = rel.parts[0] if len(rel.parts) > 1 else "."
        teams.setdefault(folder, []).append(rel.as_posix())
    return [
        {
            "id": f"team-{folder}" if folder != "." else "team-root",
            "description": f"Review the folder {folder} of {root}:\n" + "\n".join(f"- {f}" for f in sorted(files)),
            "required_capabilities": [],
            "depends_on": [],
            "priority": "medium",
            "files": len(files),
        }
        for folder, files in sorted(teams.items())
    ]


def _division_subtasks(root: str, paths: list[str]) -> list[dict[str, Any]]:
    """One subtask per top-level folder, itself a repository review (rooted there): the
    task of a head of division, whose own hierarchical run splits it again."""
    divisions: dict[str, list[str]] = {}
    base = PurePosixPath(root)
    for p in paths:
        rel = PurePosixPath(p).relative_to(base)
        if len(rel.parts) > 1:  # files at the root belong to no division
            divisions.setdefault(rel.parts[0], []).append(str(base / rel))
    return [
        {
            "id": f"division-{name}",
            "description": f"Review the repository at {base / name}\n" + "\n".join(sorted(files)),
            "required_capabilities": [],
            "depends_on": [],
            "priority": "medium",
        }
        for name, files in sorted(divisions.items())
    ]


def _folder_subtasks(root: str, items: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": rel,
            "description": f"Read {rel}",
            "required_capabilities": [READ_CAPABILITY],
            "depends_on": [],
            "priority": "medium",
            "arguments": {"path": str(PurePosixPath(root) / rel)},
        }
        for rel in items
    ]


@server.tool()
async def decompose_task(task: str, available_models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Split a task into subtasks (id, description, required_capabilities, depends_on,
    priority): by its structure, or per folder / per file for a repository review."""
    lines = [x for x in task.splitlines() if x.strip()]
    head = lines[0] if lines else ""
    if m := _REPO.match(head):
        paths = [x.strip() for x in lines[1:] if x.strip() and not x.strip().startswith("#")]
        if m.group(2):
            subtasks = _division_subtasks(m.group(1), paths)
            return {"method": "divisions", "subtasks": subtasks, "count": len(subtasks)}
        subtasks = _repository_subtasks(m.group(1), paths)
        return {"method": "repository", "subtasks": subtasks, "count": len(subtasks)}
    if m := _FOLDER.match(head):
        items = [x.strip()[2:].strip() for x in lines[1:] if x.strip().startswith("- ")]
        subtasks = _folder_subtasks(m.group(2), items)
        return {"method": "folder", "subtasks": subtasks, "count": len(subtasks)}
    try:
        subtasks = core.decompose_by_structure(task, max_subtasks=50)
    except BadArgument as exc:
        raise ToolError(str(exc)) from None
    caps = _capabilities(available_models)
    for s in subtasks:
        if not s["required_capabilities"]:
            words = set(_WORD.findall(s["description"].lower()))
            s["required_capabilities"] = [c for c in caps if _mentioned(c, words)]
    return {"method": "structure", "subtasks": subtasks, "count": len(subtasks)}


@server.tool()
async def assign_subtasks(subtasks: list[dict[str, Any]], available_models: list[dict[str, Any]]) -> dict[str, Any]:
    """Give each subtask to the least-loaded agent of ``available_models`` having every
    capability it requires; unassignable subtasks are listed with the reason."""
    try:
        out = core.assign_subtasks(subtasks, available_models)
    except BadArgument as exc:
        raise ToolError(str(exc)) from None
    by_id = {s["id"]: s for s in subtasks}
    for a in out["assignments"]:
        s = by_id[a["subtask_id"]]
        a["description"] = s.get("description", "")
        a["required_capabilities"] = s.get("required_capabilities") or []
        if "arguments" in s:
            a["arguments"] = s["arguments"]
    return out


def review(text: str) -> dict[str, int]:
    """Counts for one file's text (what a reviewer tallies before reading closely)."""
    lines = text.splitlines()
    return {
        "files": 1,
        "lines": len(lines),
        "blank_lines": sum(1 for x in lines if not x.strip()),
        "functions": len(_DEF.findall(text)),
        "classes": len(_CLASS.findall(text)),
        "todos": len(_TODO.findall(text)),
        "bytes": len(text.encode("utf-8")),
    }


def _add(total: dict[str, int], part: dict[str, Any]) -> None:
    for k in COUNTS:
        total[k] = total.get(k, 0) + int(part.get(k, 0))


def _is_file_read(r: Any) -> bool:
    return isinstance(r, dict) and set(r) == {"content"} and isinstance(r["content"], str)


def _is_team(r: Any) -> bool:
    return isinstance(r, dict) and isinstance(r.get("task"), str) and isinstance(r.get("result"), dict)


def _is_review(team: dict[str, Any]) -> bool:
    """A team given a review task (a folder of a repository, or a division: one of them)."""
    head = team["task"].splitlines()[0] if team["task"].strip() else ""
    return bool(_FOLDER.match(head) or _REPO.match(head))


@server.tool()
async def merge_results(results: list[Any]) -> dict[str, Any]:
    """One result from many: file texts reviewed into counts, review teams' counts added up
    per folder, anything else deep-merged with conflicts reported."""
    if results and all(_is_file_read(r) for r in results):
        total: dict[str, int] = {}
        for r in results:
            _add(total, review(r["content"]))
        return total
    if results and all(_is_team(r) for r in results) and not all(_is_review(r) for r in results):
        # other teams' results (hub-and-spoke outputs) are kept apart, by team: their subtask
        # ids (subtask-1, ...) repeat from one team to the next and must not collide
        out = core.merge_results([{f"team-{i}": r["result"]} for i, r in enumerate(results, start=1)])
        out["leads"] = {f"team-{i}": r.get("coordinator") for i, r in enumerate(results, start=1)}
        return out
    if results and all(_is_team(r) for r in results):
        folders: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        leads: dict[str, str] = {}
        for r in results:
            head = r["task"].splitlines()[0] if r["task"].strip() else ""
            m, repo = _FOLDER.match(head), _REPO.match(head)
            name = m.group(1) if m else PurePosixPath(repo.group(1)).name if repo else f"team-{len(folders) + 1}"
            counts: dict[str, int] = {}
            _add(counts, r["result"].get("totals", r["result"]))  # a division's result has totals
            folders[name] = counts
            _add(totals, counts)
            if isinstance(r.get("coordinator"), str):
                leads[name] = r["coordinator"]
        return {"folders": folders, "totals": totals, "teams": len(folders), "leads": leads}
    try:
        return core.merge_results(results)
    except BadArgument as exc:
        raise ToolError(str(exc)) from None


def main() -> None:
    server.run()


if __name__ == "__main__":
    main()
