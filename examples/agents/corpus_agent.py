"""Example agent "corpus": a specialist over a folder of local documents.

One program plays two parts in the pattern examples:

- a **hub-and-spoke worker** (``examples/hub-and-spoke/``): ``perform_subtask`` reads a
  subtask such as "Count how often 'latency' appears" and answers it from its corpus with
  ``count``, ``search`` or ``quote``;
- a **peer** (``examples/peer-to-peer/``): ``plan`` splits the peer's own requests into what
  its corpus answers and what it needs from peers with another capability, ``work`` answers
  the subtasks other peers delegated to it (as ``runner serve``'s ``list_assigned_steps``
  lists them), ``combine`` puts its own and its peers' answers together.

Every answer is computed from the files under ``--corpus`` (``*.md`` and ``*.txt``, read at
each call): a term matches as a whole word, case-insensitively. Nothing is canned, so the
tests recompute the same numbers from the same files.

Run it::

    python examples/agents/corpus_agent.py --corpus examples/hub-and-spoke/corpus
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

# A request names its term in quotes: count 'latency', quote "retry".
_TERM = re.compile(r"['\"‘“]([^'\"’”]{1,80})['\"’”]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
# The operation a request asks for, by the first of these words it contains.
_OPERATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("count", ("count", "how many", "how often", "occurrences")),
    ("quote", ("quote", "cite", "sentence")),
    ("search", ("search", "find", "which", "list", "mention")),
)
# "... in network notes" / "... from the billing notes": the shard a peer request is for.
_SHARD = re.compile(r"\b(?:in|from)\s+(?:the\s+)?([a-z][a-z0-9_-]*)\s+(?:notes|documents|corpus)\b", re.IGNORECASE)


class Corpus:
    """The documents of one folder, read afresh on every call (edits show at once)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def documents(self) -> dict[str, str]:
        if not self.root.is_dir():
            raise ToolError(f"corpus folder {self.root} does not exist")
        files = sorted(p for p in self.root.rglob("*") if p.suffix in (".md", ".txt") and p.is_file())
        return {p.relative_to(self.root).as_posix(): p.read_text(encoding="utf-8") for p in files}

    @staticmethod
    def _pattern(term: str) -> re.Pattern[str]:
        if not term.strip():
            raise ToolError("term must not be empty")
        return re.compile(r"(?<!\w)" + re.escape(term.strip()) + r"(?!\w)", re.IGNORECASE)

    def count(self, term: str) -> dict[str, Any]:
        pattern = self._pattern(term)
        by_document = {name: n for name, text in self.documents().items() if (n := len(pattern.findall(text)))}
        return {"term": term, "total": sum(by_document.values()), "by_document": by_document}

    def search(self, term: str) -> dict[str, Any]:
        pattern = self._pattern(term)
        hits = []
        for name, text in self.documents().items():
            lines = [i for i, line in enumerate(text.splitlines(), start=1) if pattern.search(line)]
            if lines:
                hits.append({"document": name, "lines": lines})
        return {"term": term, "documents": hits, "count": len(hits)}

    def quote(self, term: str) -> dict[str, Any]:
        pattern = self._pattern(term)
        for name, text in self.documents().items():
            for sentence in _SENTENCE_END.split(text):
                flat = " ".join(sentence.split())
                if pattern.search(flat) and not flat.startswith("#"):
                    return {"term": term, "document": name, "sentence": flat}
        return {"term": term, "document": None, "sentence": None}


def operation_of(request: str) -> str:
    """``count``, ``quote`` or ``search``: what a request asks for (by its first telling word)."""
    low = request.lower()
    found = [(low.find(w), op) for op, words in _OPERATIONS for w in words if w in low]
    if not found:
        raise ToolError(f"cannot tell what to do with {request!r}: say count, search or quote")
    return min(found)[1]


def term_of(request: str) -> str:
    m = _TERM.search(request)
    if not m:
        raise ToolError(f"no quoted term in {request!r}: put the word in quotes, e.g. count 'latency'")
    return m.group(1)


def build_server(corpus_dir: str | Path) -> MCPServer:
    """A corpus agent over ``corpus_dir``."""
    corpus = Corpus(Path(corpus_dir).resolve())
    server = MCPServer(
        "corpus",
        instructions=f"Answers count/search/quote questions from the documents under {corpus.root.name}.",
        log_level="WARNING",
    )

    def answer(request: str) -> dict[str, Any]:
        op, term = operation_of(request), term_of(request)
        result = corpus.count(term) if op == "count" else corpus.quote(term) if op == "quote" else corpus.search(term)
        return {"request": request, "operation": op, **result}

    @server.tool()
    async def count(term: str) -> dict[str, Any]:
        """How often ``term`` occurs (whole word, any case): in total and per document."""
        return corpus.count(term)

    @server.tool()
    async def search(term: str) -> dict[str, Any]:
        """The documents that mention ``term``, with the line numbers where it occurs."""
        return corpus.search(term)

    @server.tool()
    async def quote(term: str) -> dict[str, Any]:
        """The first sentence (documents in name order) that mentions ``term``."""
        return corpus.quote(term)

    @server.tool()
    async def perform_subtask(subtask_id: str, description: str) -> dict[str, Any]:
        """Answer one subtask of a hub-and-spoke team: the description says what (count,
        search or quote) and the term in quotes. The answer is keyed by ``subtask_id`` so
        the coordinator's merge keeps every subtask apart."""
        return {subtask_id: answer(description)}

    @server.tool()
    async def plan(task: str, agent_id: str, capabilities: list[str]) -> dict[str, Any]:
        """Split this peer's task (one request per line) into what it answers itself and
        what it needs from a peer. A request "… in <shard> notes" needs the capability
        ``notes:<shard>``; one this peer lacks becomes a need, to be delegated."""
        own: list[dict[str, Any]] = []
        needs: list[dict[str, Any]] = []
        mine = set(capabilities)
        for n, line in enumerate((x.strip(" -*\t") for x in task.splitlines()), start=1):
            if not line:
                continue
            shard = _SHARD.search(line)
            need = f"notes:{shard.group(1).lower()}" if shard else None
            if need is None or need in mine:
                own.append(answer(line))
            else:
                sid = re.sub(r"[^A-Za-z0-9_-]", "-", f"{agent_id}-{n}")
                needs.append({"subtask_id": sid, "capability": need, "description": line, "from": agent_id})
        return {"agent_id": agent_id, "own": own, "needs": needs}

    @server.tool()
    async def work(agent_id: str, assigned: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
        """Answer the subtasks delegated to this peer (``list_assigned_steps``' entries):
        one report per subtask, ready for ``report_step_completion``. Progress goes to the
        caller (the run's live view) after each subtask."""
        reports = []
        for n, step in enumerate(assigned, start=1):
            args = step.get("arguments") or step.get("tool_arguments") or {}
            request = args.get("subtask_description") or step.get("description") or ""
            reports.append(
                {
                    "workflow_id": step.get("workflow_id"),
                    "run_id": step.get("run_id"),
                    "step_id": step.get("step_id"),
                    "agent_id": agent_id,
                    "result": {
                        "answered_by": agent_id,
                        "requested_by": args.get("coordinator_agent_id"),
                        **answer(request),
                    },
                }
            )
            await ctx.report_progress(n, len(assigned), f"{agent_id}: {step.get('step_id')} answered")
        return reports

    @server.tool()
    async def combine(agent_id: str, own: list[dict[str, Any]], answers: list[Any]) -> dict[str, Any]:
        """This peer's final answer: its own results, then the answers its peers sent back
        for it (the delegated runs' outputs whose ``requested_by`` is this peer)."""
        received = []
        for a in answers:
            result = a.get("result", a) if isinstance(a, dict) else None
            if isinstance(result, dict) and result.get("requested_by") == agent_id:
                received.append(result)
        return {
            "agent_id": agent_id,
            "answers": [{"answered_by": agent_id, **o} for o in own] + received,
            "delegated": len(received),
        }

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="folder of .md/.txt documents")
    args = parser.parse_args(argv)
    build_server(args.corpus).run()


if __name__ == "__main__":
    main()
