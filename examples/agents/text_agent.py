"""Example agent "text": deterministic, offline text analysis as MCP tools.

Written with the MCP SDK (``MCPServer``) the way a user of ``runner`` would write an
agent: typed ``async def`` tools (the input schema comes from the signature, the
description from the docstring) returning dicts, lists or strings, so every tool also has
an ``outputSchema`` and its result reaches templates as ``steps.<id>.result``.

Nothing here calls a model or the network: keyword extraction is stopword-filtered term
frequency, summaries are extractive (the sentences richest in those keywords) and the
sentiment score comes from a small lexicon. The same input always gives the same output,
which is what lets ``workflows/hello.yaml`` be run in tests.

Run it::

    python examples/agents/text_agent.py              # stdio
    python examples/agents/text_agent.py --http 8765  # streamable HTTP on 127.0.0.1:8765/mcp

or import it in-process as ``examples.agents.text_agent:server``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from typing import Any

from mcp.server import MCPServer
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

server = MCPServer(
    "text",
    instructions="Deterministic offline text tools: counts, keywords, summaries, sentiment.",
    log_level="WARNING",
)

# Words are runs of letters/digits, with inner apostrophes or hyphens kept ("don't", "for-each").
_TOKEN = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
# A sentence ends at . ! or ? (plus closing quotes/brackets) before whitespace; a blank
# line also ends one, so headings and list items do not run into the next paragraph.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n\s*\n")

STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during
    each either else even ever every few for from further get gets got had has have having
    he her here hers herself him himself his how however i if in into is it its itself just
    let like made make many may me might more most much must my myself neither no nor not
    now of off often on once one only or other our ours ourselves out over own per rather
    same shall she should since so some such than that the their theirs them themselves
    then there these they this those though through thus to too under until up upon us use
    used uses using very via was we well were what when where whether which while who whom
    whose why will with within without would yet you your yours yourself yourselves
    """.split()
)

_POSITIVE: frozenset[str] = frozenset(
    """
    good great excellent amazing awesome wonderful fantastic nice love loved loves lovely
    liked enjoy enjoyed happy glad pleased delighted best better fast quick easy
    simple clean clear reliable robust stable safe helpful useful success successful
    succeed succeeded win wins won improve improved improvement fix fixed solid smooth
    elegant brilliant perfect recommend recommended thanks thank positive correct works
    """.split()
)

_NEGATIVE: frozenset[str] = frozenset(
    """
    bad poor terrible awful horrible hate hated hates dislike sad angry annoyed annoying
    worst worse slow broken bug buggy crash crashes crashed fail fails failed failure
    error errors wrong hard difficult confusing complicated messy unstable unreliable
    unsafe useless problem problems issue issues regression lost loss flaky painful
    negative disappointing disappointed ugly leak leaks stuck timeout
    """.split()
)

# A negator flips the polarity of the next sentiment word within this many tokens.
_NEGATORS: frozenset[str] = frozenset(
    "not no never without hardly barely don't doesn't didn't isn't wasn't aren't "
    "weren't won't can't cannot couldn't shouldn't wouldn't".split()
)
_NEGATION_WINDOW = 3


class WordCount(TypedDict):
    """Counts in the manner of ``wc``: whitespace-separated words, lines, characters."""

    words: int
    lines: int
    chars: int


class Sentiment(TypedDict):
    """Lexicon sentiment: ``score`` in [-1, 1] and its label."""

    score: float
    label: str
    positive: int
    negative: int


def _tokens(text: str) -> list[str]:
    """Lower-cased word tokens, typographic apostrophes folded to ASCII."""
    return [t.replace("’", "'") for t in _TOKEN.findall(text.lower())]


def _content_terms(text: str, vocabulary: set[str] | None = None) -> list[str]:
    """Tokens that carry meaning: no stopwords, no bare numbers, at least 3 characters.

    A plural is folded into its singular when the singular also occurs in the same
    text ("steps" counts as "step" next to "step"), so one concept is not split in two;
    without a singular to lean on, the word is left alone rather than guessed at.
    ``vocabulary`` (default: the text's own words) is where singulars are looked up, so
    a sentence can be folded the same way as the document it comes from.
    """
    terms = [t for t in _tokens(text) if len(t) >= 3 and t not in STOPWORDS and not t.isdigit()]
    known = set(terms) if vocabulary is None else vocabulary
    return [_singular(t, known) for t in terms]


def _singular(term: str, vocabulary: set[str]) -> str:
    if len(term) > 4 and term.endswith("ies") and term[:-3] + "y" in vocabulary:
        return term[:-3] + "y"
    if len(term) > 3 and term.endswith("s") and not term.endswith("ss") and term[:-1] in vocabulary:
        return term[:-1]
    return term


def _ranked_terms(terms: list[str]) -> list[tuple[str, int]]:
    """Terms by descending frequency; ties keep first-appearance order (deterministic)."""
    counts = Counter(terms)  # Counter preserves insertion order, i.e. first appearance
    return sorted(counts.items(), key=lambda kv: -kv[1])


def _sentences(text: str) -> list[str]:
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


@server.tool()
async def word_count(text: str) -> WordCount:
    """Count words (separated by whitespace), lines and characters, like ``wc``."""
    return {"words": len(text.split()), "lines": len(text.splitlines()), "chars": len(text)}


@server.tool()
async def keywords(text: str, top: int = 5) -> list[str]:
    """The ``top`` most frequent meaningful words, most frequent first.

    Stopwords, numbers and words shorter than 3 letters are ignored; words equally
    frequent keep the order in which they first appear, so the result is reproducible.
    """
    if top < 1:
        return []
    return [term for term, _ in _ranked_terms(_content_terms(text))[:top]]


@server.tool()
async def split_sentences(text: str) -> list[str]:
    """Split text into sentences (at . ! ? followed by space, and at blank lines)."""
    return _sentences(text)


@server.tool()
async def summarize(text: str, max_sentences: int = 2) -> str:
    """Extractive summary: the ``max_sentences`` sentences richest in the text's keywords.

    Each sentence scores the summed frequency (over the whole text) of its distinct
    keywords, divided by the square root of its length so long sentences do not win by
    size alone. The chosen sentences are returned in their original order.
    """
    sentences = _sentences(text)
    if max_sentences < 1 or not sentences:
        return ""
    if len(sentences) <= max_sentences:
        return " ".join(sentences)
    vocabulary = set(_content_terms(text, vocabulary=set()))  # unfolded words of the text
    freq = Counter(_content_terms(text, vocabulary))

    def score(sentence: str) -> float:
        terms = _content_terms(sentence, vocabulary)
        if not terms:
            return 0.0
        return sum(freq[t] for t in set(terms)) / math.sqrt(len(terms))

    # Best score first; ties go to the earlier sentence.
    ranked = sorted(range(len(sentences)), key=lambda i: (-score(sentences[i]), i))
    chosen = sorted(ranked[:max_sentences])
    return " ".join(sentences[i] for i in chosen)


@server.tool()
async def sentiment(text: str) -> Sentiment:
    """Lexicon sentiment of the text: score = (positive - negative) / (positive + negative).

    A negator ("not", "never", "don't", ...) up to three words before a sentiment word
    flips it. The label is "positive" above 0.1, "negative" below -0.1, else "neutral".
    """
    positive = negative = 0
    negate_until = -1
    for i, token in enumerate(_tokens(text)):
        if token in _NEGATORS:
            negate_until = i + _NEGATION_WINDOW
            continue
        polarity = 1 if token in _POSITIVE else -1 if token in _NEGATIVE else 0
        if polarity == 0:
            continue
        if i <= negate_until:
            polarity = -polarity
            negate_until = -1
        if polarity > 0:
            positive += 1
        else:
            negative += 1
    total = positive + negative
    score = round((positive - negative) / total, 3) if total else 0.0
    label = "positive" if score > 0.1 else "negative" if score < -0.1 else "neutral"
    return {"score": score, "label": label, "positive": positive, "negative": negative}


@server.tool()
async def upper(text: str) -> str:
    """The text in upper case."""
    return text.upper()


@server.tool()
async def decompose_task(task: str, available_models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Split a task into one subtask per sentence, each needing the capabilities of the
    keywords it shares with ``available_models`` (the `task_decomposition` capability
    of `runner serve`'s decompose_task)."""
    caps = {c for m in available_models or [] for c in (m.get("capabilities") or []) if isinstance(c, str)}
    subtasks = []
    for n, sentence in enumerate(_sentences(task), start=1):
        words = set(_tokens(sentence))
        subtasks.append(
            {
                "id": f"part-{n}",
                "description": sentence,
                "required_capabilities": sorted(c for c in caps if c.lower() in words),
                "depends_on": [f"part-{n - 1}"] if n > 1 else [],
            }
        )
    return {"subtasks": subtasks}


@server.tool()
async def join(parts: list[str], sep: str = "\n") -> str:
    """Join strings with a separator (default: newline), e.g. to assemble a report."""
    return sep.join(parts)


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
