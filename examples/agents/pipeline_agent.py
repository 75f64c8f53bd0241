"""Example agent "pipeline": the stages of a document pipeline, one tool each.

``extract`` → ``normalise`` → ``classify`` → ``summarise``, each taking the previous stage's
result as its one argument (``doc``), as ``patterns/assembly-line.yaml`` chains them:

- ``extract(doc)``: the text and title out of a document — HTML (tags, scripts and styles
  dropped, entities decoded), Markdown (heading marks, emphasis, links and code fences
  dropped) or plain text. ``doc`` is the text itself or ``{content: text}`` (what the
  filesystem MCP server's ``read_text_file`` returns). ``--formats`` limits the formats this
  instance accepts: ``--formats html`` refuses Markdown with an error that names the format,
  which is how the example shows an assembly line falling back to an alternate agent.
- ``normalise(doc)``: typographic quotes and dashes folded to ASCII, whitespace collapsed,
  sentences split, words counted.
- ``classify(doc)``: a topic by keyword lexicon (incident, release, finance, people), with
  the score of every topic and the keywords that decided it.
- ``summarise(doc)``: title, label and the sentences that carry most of the topic's keywords.

Run it::

    python examples/agents/pipeline_agent.py [--formats html,markdown,text]
"""

from __future__ import annotations

import argparse
import html
import re
from html.parser import HTMLParser
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

FORMATS = ("html", "markdown", "text")
TOPICS: dict[str, frozenset[str]] = {
    "incident": frozenset(
        "outage incident timeout timeouts latency error errors failed failure retry retries rollback "
        "degraded restore restored alert page paged on-call postmortem".split()
    ),
    "release": frozenset(
        "release released version feature features deploy deployed changelog upgrade ship shipped".split()
    ),
    "finance": frozenset(
        "invoice invoices refund refunds revenue cost costs budget tax payment payments euros".split()
    ),
    "people": frozenset("hire hiring onboarding team engineer engineers mentor training interview".split()),
}
_WORD = re.compile(r"[a-z][a-z'-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_FOLD = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


class _Text(HTMLParser):
    """Visible text and the <title>/<h1> of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        if tag in ("title", "h1") and not self.title:
            self._in_title = True
        if tag in ("p", "br", "div", "li", "h1", "h2", "h3", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        if tag in ("title", "h1"):
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data.strip()
            return
        self.parts.append(data)


def detect(text: str) -> str:
    if re.search(r"<(html|body|p|div|h1)\b", text, re.IGNORECASE):
        return "html"
    if re.search(r"^\s{0,3}#{1,6}\s|^\s*[-*]\s|\[[^\]]+\]\([^)]+\)|^```", text, re.MULTILINE):
        return "markdown"
    return "text"


def _markdown(text: str) -> tuple[str, str]:
    title = ""
    out = []
    fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*$", line)
        if m:
            title = title or m.group(1)
            out.append("")
            continue
        line = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line)
        line = re.sub(r"[*_`]{1,3}([^*_`]+)[*_`]{1,3}", r"\1", line)
        out.append(re.sub(r"^\s*[-*+]\s+", "", line))
    return title, "\n".join(out).strip()


def _doc_text(doc: Any, argument: str = "doc") -> str:
    if isinstance(doc, dict) and isinstance(doc.get("content"), str):
        return doc["content"]
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        return doc["text"]
    if isinstance(doc, str):
        return doc
    raise ToolError(f"{argument}: expected a text or an object with 'content' or 'text', not {type(doc).__name__}")


def _fields(doc: Any) -> dict[str, Any]:
    return dict(doc) if isinstance(doc, dict) else {"text": _doc_text(doc)}


def build_server(formats: tuple[str, ...] = FORMATS) -> MCPServer:
    server = MCPServer(
        "pipeline",
        instructions=f"Document pipeline stages: extract ({', '.join(formats)}), normalise, classify, summarise.",
        log_level="WARNING",
    )

    @server.tool()
    async def extract(doc: Any) -> dict[str, Any]:
        """Text and title out of an HTML, Markdown or plain-text document."""
        text = _doc_text(doc)
        kind = detect(text)
        if kind not in formats:
            raise ToolError(f"extract: this extractor reads {', '.join(formats)}, not {kind} documents")
        if kind == "html":
            parser = _Text()
            parser.feed(text)
            title, body = parser.title, html.unescape("".join(parser.parts))
        elif kind == "markdown":
            title, body = _markdown(text)
        else:
            title, body = "", text
        body = "\n".join(line.strip() for line in body.splitlines())
        body = re.sub(r"\n{3,}", "\n\n", body).strip()
        return {"format": kind, "title": title.strip(), "text": body}

    @server.tool()
    async def normalise(doc: Any) -> dict[str, Any]:
        """Quotes and dashes folded to ASCII, whitespace collapsed, sentences split, words counted."""
        fields = _fields(doc)
        flat = " ".join(_doc_text(doc).translate(_FOLD).split())
        sentences = [s for s in _SENTENCE_END.split(flat) if s]
        return {**fields, "text": flat, "sentences": sentences, "words": len(flat.split())}

    @server.tool()
    async def classify(doc: Any) -> dict[str, Any]:
        """The document's topic: the lexicon with most keyword occurrences (ties: first listed)."""
        fields = _fields(doc)
        words = _WORD.findall(_doc_text(doc).lower())
        scores = {topic: sum(1 for w in words if w in lexicon) for topic, lexicon in TOPICS.items()}
        best = max(TOPICS, key=lambda t: (scores[t], -list(TOPICS).index(t)))
        label = best if scores[best] else "other"
        keywords = sorted({w for w in words if w in TOPICS.get(label, frozenset())})
        return {**fields, "label": label, "scores": scores, "keywords": keywords}

    @server.tool()
    async def summarise(doc: Any, max_sentences: int = 2) -> dict[str, Any]:
        """Title, label and the ``max_sentences`` sentences richest in the topic's keywords
        (in their original order)."""
        fields = _fields(doc)
        sentences = fields.get("sentences") or [s for s in _SENTENCE_END.split(" ".join(_doc_text(doc).split())) if s]
        lexicon = TOPICS.get(str(fields.get("label")), frozenset())

        def score(s: str) -> int:
            return sum(1 for w in _WORD.findall(s.lower()) if w in lexicon)

        ranked = sorted(range(len(sentences)), key=lambda i: (-score(sentences[i]), i))[: max(1, max_sentences)]
        return {
            "title": fields.get("title", ""),
            "label": fields.get("label", "other"),
            "words": fields.get("words", len(_doc_text(doc).split())),
            "summary": " ".join(sentences[i] for i in sorted(ranked)),
        }

    return server


server = build_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(FORMATS), help="formats extract accepts (comma-separated)")
    args = parser.parse_args(argv)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        parser.error(f"--formats: unknown {', '.join(bad)} (known: {', '.join(FORMATS)})")
    build_server(formats).run()


if __name__ == "__main__":
    main()
