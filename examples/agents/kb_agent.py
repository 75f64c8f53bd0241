"""Example agent "kb": a small local knowledge base of notes in one JSON file.

The file is ``$KB_PATH`` (default ``.runner/kb.json``, relative to the agent's current
directory), read on every call so that several agent processes see each other's notes.
Writes go to a temporary file in the same directory that then replaces the old one
(``os.replace``), so a reader never sees half a file and a crash never corrupts it; on
POSIX an advisory lock (``fcntl.flock`` on ``<file>.lock``) serialises writers across
processes.

Notes are keyed by title: adding a note whose title already exists updates it in place
(same id), which makes a workflow that seeds the knowledge base safe to run again.
Search is plain term overlap (title counts 3, tag 2, body 1 per query word), with
singular/plural folded, so results are deterministic and explainable.

Run it::

    KB_PATH=/tmp/kb.json python examples/agents/kb_agent.py   # stdio
    python examples/agents/kb_agent.py --http 8766             # streamable HTTP on 127.0.0.1

or import it in-process as ``examples.agents.kb_agent:server``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, atomic writes still hold
    fcntl = None  # type: ignore[assignment]

server = MCPServer(
    "kb",
    instructions="A local knowledge base of notes (title, body, tags) with term-overlap search.",
    log_level="WARNING",
)

DEFAULT_PATH = ".runner/kb.json"
_FORMAT_VERSION = 1
_SNIPPET_CHARS = 160
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# Words too common to say anything about a note; a query made only of them matches nothing.
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have how in is it its of on or that the this "
    "to was what when where which who why with".split()
)
_WEIGHT_TITLE, _WEIGHT_TAG, _WEIGHT_BODY = 3, 2, 1


class NoteRef(TypedDict):
    """What ``add_note`` did: the note's id and title, and whether it is new."""

    id: str
    title: str
    created: bool


class Note(TypedDict):
    id: str
    title: str
    body: str
    tags: list[str]


class NoteSummary(TypedDict):
    id: str
    title: str
    tags: list[str]


class SearchHit(TypedDict):
    """A search result: higher ``score`` = more query words found, in weightier places."""

    id: str
    title: str
    tags: list[str]
    score: int
    snippet: str


class Deleted(TypedDict):
    id: str
    deleted: bool


# --- storage -----------------------------------------------------------------------------


def _path() -> Path:
    """The knowledge-base file, read from the environment at each call (tests change it)."""
    return Path(os.environ.get("KB_PATH") or DEFAULT_PATH)


def _empty() -> dict[str, Any]:
    return {"version": _FORMAT_VERSION, "next_id": 1, "notes": []}


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty()
    except OSError as exc:
        raise ToolError(f"cannot read knowledge base {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(f"knowledge base {path} is not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("notes"), list):
        raise ToolError(f"knowledge base {path} is not a knowledge-base file (no 'notes' list)")
    data.setdefault("next_id", len(data["notes"]) + 1)
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a temp file in the same directory, fsync'd, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; keep what a plain open() would
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_mode(path: Path) -> int:
    """The existing file's permissions, else the default for a new file under the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def _writing() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Read-modify-write under the writers' lock; the data is saved when the block ends.

    The block never awaits, so tools of this process cannot interleave inside it; the
    file lock covers other processes sharing the same knowledge base.
    """
    path = _path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise ToolError(f"cannot write knowledge base {path}: {exc.strerror}") from exc
    with lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        data = _load(path)
        yield path, data
        _save(path, data)


def _find(data: dict[str, Any], note_id: str) -> dict[str, Any]:
    for note in data["notes"]:
        if note["id"] == note_id:
            return note
    known = ", ".join(n["id"] for n in data["notes"][:10]) or "none"
    raise ToolError(f"id: no note with id {note_id!r} (known ids: {known})")


# --- text matching -----------------------------------------------------------------------


def _terms(text: str) -> set[str]:
    """Distinct normalised words: lower case, stopwords out, simple plurals folded."""
    return {_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS}


def _stem(word: str) -> str:
    word = word.replace("’", "'")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _tag_terms(tags: Sequence[str]) -> set[str]:
    """A tag matches as a whole ("for_each") and by its words ("for", "each")."""
    out: set[str] = set()
    for tag in tags:
        out.add(_stem(tag.lower()))
        out |= _terms(tag)
    return out


def _clean_tags(tags: Sequence[str]) -> list[str]:
    """Strip, drop empties and duplicates (case-insensitively), keep the given order."""
    seen: set[str] = set()
    out: list[str] = []
    for tag in (t.strip() for t in tags):
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            out.append(tag)
    return out


def _snippet(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1].rstrip() + "…"


def _title_key(title: str) -> str:
    return " ".join(title.split()).casefold()


# --- tools -------------------------------------------------------------------------------


@server.tool()
async def add_note(title: str, body: str, tags: Sequence[str] = ()) -> NoteRef:
    """Add a note, or replace body and tags of the note that already has this title.

    Returns the note's id, its title and ``created`` (false when an existing note with
    the same title, compared case-insensitively, was updated).
    """
    title = " ".join(title.split())
    if not title:
        raise ToolError("title: must not be empty")
    with _writing() as (_, data):
        key = _title_key(title)
        for note in data["notes"]:
            if _title_key(note["title"]) == key:
                note.update(title=title, body=body, tags=_clean_tags(tags))
                return {"id": note["id"], "title": title, "created": False}
        note_id = f"n{data['next_id']}"
        data["next_id"] += 1
        data["notes"].append({"id": note_id, "title": title, "body": body, "tags": _clean_tags(tags)})
        return {"id": note_id, "title": title, "created": True}


@server.tool()
async def search(query: str, limit: int = 5) -> list[SearchHit]:
    """Notes sharing words with the query, best first (at most ``limit``).

    Each distinct query word found scores 3 in the title, 2 in the tags and 1 in the
    body; notes with equal scores keep the order they were added in. Notes matching no
    query word are left out, so the list may be empty.
    """
    if limit < 1:
        raise ToolError(f"limit: must be at least 1, got {limit}")
    wanted = _terms(query)
    hits: list[SearchHit] = []
    for note in _load(_path())["notes"]:
        title, tags, body = _terms(note["title"]), _tag_terms(note["tags"]), _terms(note["body"])
        score = sum(
            _WEIGHT_TITLE * (t in title) + _WEIGHT_TAG * (t in tags) + _WEIGHT_BODY * (t in body) for t in wanted
        )
        if score:
            hits.append(
                {
                    "id": note["id"],
                    "title": note["title"],
                    "tags": list(note["tags"]),
                    "score": score,
                    "snippet": _snippet(note["body"]),
                }
            )
    hits.sort(key=lambda h: -h["score"])  # stable: ties stay in insertion order
    return hits[:limit]


@server.tool()
async def get_note(id: str) -> Note:  # noqa: A002 - "id" is the tool's public parameter name
    """The whole note with this id; an error result naming the known ids if there is none."""
    note = _find(_load(_path()), id)
    return {"id": note["id"], "title": note["title"], "body": note["body"], "tags": list(note["tags"])}


@server.tool()
async def list_notes(tag: str | None = None) -> list[NoteSummary]:
    """Every note (id, title, tags) in the order added, or only those with ``tag``."""
    wanted = tag.strip().casefold() if tag is not None else None
    return [
        {"id": n["id"], "title": n["title"], "tags": list(n["tags"])}
        for n in _load(_path())["notes"]
        if wanted is None or wanted in (t.casefold() for t in n["tags"])
    ]


@server.tool()
async def count() -> int:
    """How many notes the knowledge base holds."""
    return len(_load(_path())["notes"])


@server.tool()
async def delete_note(id: str) -> Deleted:  # noqa: A002 - "id" is the tool's public parameter name
    """Delete the note with this id (ids are never reused); an error result if there is none."""
    with _writing() as (_, data):
        note = _find(data, id)
        data["notes"].remove(note)
    return {"id": id, "deleted": True}


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
