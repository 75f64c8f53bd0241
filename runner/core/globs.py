"""Glob patterns as sets of paths, and whether two of them share a path — decided exactly.

File locks are leases over globs (SPEC §5): ``src/**/*.py`` held by one agent must refuse
``src/a/b.py`` to another, and ``src/*.py`` must not. Comparing the pattern strings (what
other coordination servers do) gets both wrong, and sampling paths can miss the one path
two patterns share. Here each pattern is an automaton and :func:`overlaps` asks whether
their product accepts anything: exact, and bounded in time because patterns are capped.

The language (the usual shell/pathlib glob, chosen so agents need no manual):

- a pattern is ``/``-separated segments; a leading ``/`` makes it absolute. Absolute and
  relative patterns never overlap: a relative one is relative to the project root, which
  this module cannot resolve, and guessing would make locks arbitrary.
- inside a segment: ``*`` any run of characters (also empty, also a leading ``.``: a lock
  on ``*`` covers dotfiles too, the conservative choice), ``?`` one character,
  ``[abc]``/``[a-z]`` one of a set, ``[!abc]`` one not in it (``]`` first in the set is
  literal; an unclosed ``[`` is a literal ``[``). No backslash escapes: lock a file named
  ``a[1]`` as ``a[[]1]``. A path segment is never empty and never holds ``/``.
- ``**`` as a whole segment matches zero or more segments, so ``src/**`` covers ``src``
  itself as well as everything under it (a lock on a directory's tree includes the
  directory); ``a**b`` inside a segment is just ``a*b``.
- a pattern without wildcards is one literal path.

Pure: no I/O, no clock. The store calls :func:`overlaps` inside the transaction that
grants a lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_PATTERN_LENGTH = 1024
MAX_SEGMENTS = 64
MAX_SEGMENT_LENGTH = 255  # NAME_MAX of common file systems

_SLASH = ord("/")
_TOP = 0x10FFFF
# Every character a path segment may hold: no NUL (rejected) and no '/' (the separator).
_UNIVERSE: tuple[tuple[int, int], ...] = ((1, _SLASH - 1), (_SLASH + 1, _TOP))
# Characters a witness prefers, so example paths read well.
_PREFERRED = "abcdefghijklmnopqrstuvwxyz0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive code point ranges


@dataclass(frozen=True)
class _Elem:
    """One element of a segment pattern: ``*`` (``star``) or one character from ``chars``."""

    star: bool
    chars: Ranges = ()


_STAR = _Elem(True)
Segment = tuple[_Elem, ...] | None  # None is ``**``
GLOBSTAR = "**"


def normalize_pattern(p: str) -> str:
    """The canonical spelling of a lock pattern, the identity a lock is kept under.

    Strips ``./`` and ``.`` segments, collapses ``//`` and repeated ``**`` segments, drops a
    trailing ``/``; keeps a leading ``/`` (absolute). ``ValueError`` says why a pattern is
    refused: empty, NUL, a ``..`` segment (a lock must not reach outside the tree it
    names), or beyond the caps that keep :func:`overlaps` bounded for hostile input.
    """
    if not isinstance(p, str):
        raise ValueError(f"must be a string, not {type(p).__name__}")
    if not p.strip():
        raise ValueError("is empty")
    if "\x00" in p:
        raise ValueError("contains a NUL character")
    if len(p) > MAX_PATTERN_LENGTH:
        raise ValueError(f"is {len(p)} characters long; at most {MAX_PATTERN_LENGTH} are allowed")
    absolute = p.startswith("/")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            raise ValueError(f"{p!r} has a '..' segment; name paths inside the tree, without '..'")
        if seg == GLOBSTAR and parts and parts[-1] == GLOBSTAR:
            continue
        if len(seg) > MAX_SEGMENT_LENGTH:
            raise ValueError(f"has a segment of {len(seg)} characters; at most {MAX_SEGMENT_LENGTH} are allowed")
        parts.append(seg)
    if not parts:
        raise ValueError(f"{p!r} names no file (only '/', '.' or empty segments)")
    if len(parts) > MAX_SEGMENTS:
        raise ValueError(f"has {len(parts)} segments; at most {MAX_SEGMENTS} are allowed")
    return ("/" if absolute else "") + "/".join(parts)


def is_literal(pattern: str) -> bool:
    """Whether ``pattern`` names exactly one path (no ``*``, ``?`` or character class)."""
    return None not in _literals(pattern)


@lru_cache(maxsize=4096)
def _literals(pattern: str) -> tuple[str | None, ...]:
    """Each segment's one name when it matches only one (``[a]`` counts), else None."""
    return tuple(
        None
        if seg is None or not all(not e.star and len(e.chars) == 1 and e.chars[0][0] == e.chars[0][1] for e in seg)
        else "".join(chr(e.chars[0][0]) for e in seg)
        for seg in _parse(pattern)[1]
    )


def overlaps(a: str, b: str) -> bool:
    """True iff some path is matched by both patterns (given normalized or not).

    Decided on the automata: a product over segments (``**`` loops over whole segments),
    and for two segment patterns a product over characters, as bit sets per row.
    """
    return _overlaps(a, b) if a <= b else _overlaps(b, a)


@lru_cache(maxsize=65536)
def _overlaps(a: str, b: str) -> bool:
    """:func:`overlaps`, remembered: a lock table asks about the same pairs again and again."""
    abs_a, segs_a = _parse(a)
    abs_b, segs_b = _parse(b)
    if abs_a != abs_b:
        return False
    if segs_a == segs_b:
        return all(seg is None or _seg_satisfiable(seg) for seg in segs_a)
    lits_a, lits_b = _literals(a), _literals(b)
    if None not in lits_a and None not in lits_b:
        return False  # two different single paths
    # The common case of a lock table, patterns under different directories, ends at the
    # first pair of literal leading segments that differ, before any product is built.
    for x, y in zip(lits_a, lits_b, strict=False):
        if x is None or y is None:
            break
        if x != y:
            return False
    return _segments_meet(segs_a, segs_b) is not None


def witness(a: str, b: str) -> str | None:
    """A path both patterns match, or None when they share none (shows *why* locks conflict)."""
    abs_a, segs_a = _parse(a)
    abs_b, segs_b = _parse(b)
    if abs_a != abs_b:
        return None
    pairs = _segments_meet(segs_a, segs_b)
    if pairs is None:
        return None
    names = [_seg_witness(x or (_STAR,), y or (_STAR,)) for x, y in pairs]
    return ("/" if abs_a else "") + "/".join(n for n in names if n is not None)


# --- parsing ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _parse(pattern: str) -> tuple[bool, tuple[Segment, ...]]:
    """``(absolute, segments)`` of a pattern, normalizing it first (``ValueError`` as there)."""
    norm = normalize_pattern(pattern)
    absolute = norm.startswith("/")
    body = norm[1:] if absolute else norm
    return absolute, tuple(None if s == GLOBSTAR else _parse_segment(s) for s in body.split("/"))


def _parse_segment(seg: str) -> tuple[_Elem, ...]:
    out: list[_Elem] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            if not out or not out[-1].star:  # '**' inside a segment is one '*'
                out.append(_STAR)
            i += 1
        elif c == "?":
            out.append(_Elem(False, _UNIVERSE))
            i += 1
        elif c == "[":
            parsed = _parse_class(seg, i)
            if parsed is None:
                out.append(_Elem(False, ((ord(c), ord(c)),)))
                i += 1
            else:
                chars, i = parsed
                out.append(_Elem(False, chars))
        else:
            out.append(_Elem(False, ((ord(c), ord(c)),)))
            i += 1
    return tuple(out)


def _parse_class(seg: str, start: int) -> tuple[Ranges, int] | None:
    """The set of ``[...]`` at ``start`` and the index after it; None when unclosed (a literal ``[``)."""
    j = start + 1
    negate = j < len(seg) and seg[j] == "!"
    if negate:
        j += 1
    first = j
    items: list[tuple[int, int]] = []
    while j < len(seg) and (seg[j] != "]" or j == first):
        if j + 2 < len(seg) and seg[j + 1] == "-" and seg[j + 2] != "]":
            lo, hi = ord(seg[j]), ord(seg[j + 2])
            if lo <= hi:  # a reversed range is empty (as in fnmatch)
                items.append((lo, hi))
            j += 3
        else:
            items.append((ord(seg[j]), ord(seg[j])))
            j += 1
    if j >= len(seg):
        return None
    chars = _intersect(_merge(items), _UNIVERSE)
    return (_subtract(_UNIVERSE, chars) if negate else chars), j + 1


def _merge(items: Sequence[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(items):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _intersect(x: Ranges, y: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(x) and j < len(y):
        lo, hi = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _subtract(x: Ranges, y: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in x:
        cur = lo
        for ylo, yhi in y:
            if yhi < cur or ylo > hi:
                continue
            if ylo > cur:
                out.append((cur, ylo - 1))
            cur = max(cur, yhi + 1)
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def _pick(chars: Ranges) -> str:
    """A readable character of a non-empty set."""
    for c in _PREFERRED:
        o = ord(c)
        if any(lo <= o <= hi for lo, hi in chars):
            return c
    return chr(chars[0][0])


# --- segment level ------------------------------------------------------------------------


def _seg_satisfiable(seg: tuple[_Elem, ...]) -> bool:
    """Whether a segment pattern matches some (non-empty) name: no element has an empty set."""
    return all(e.star or e.chars for e in seg)


def _segments_meet(a: tuple[Segment, ...], b: tuple[Segment, ...]) -> list[tuple[Segment, Segment]] | None:
    """The segment pairs of one accepting run of the product of ``a`` and ``b``, or None.

    State ``(i, j)``: segments consumed from each. ``**`` either ends (epsilon) or consumes
    one path segment matched by the other side's segment; two plain segments consume one
    path segment together when they share a name. A ``**`` facing a ``**`` needs no path
    segment of its own: one of them ends first. Breadth-first, with parents for the run.
    """
    n, m = len(a), len(b)
    parent: dict[tuple[int, int], tuple[tuple[int, int], tuple[Segment, Segment] | None]] = {(0, 0): ((-1, -1), None)}
    queue: deque[tuple[int, int]] = deque([(0, 0)])
    while queue:
        i, j = queue.popleft()
        if (i, j) == (n, m):
            pairs: list[tuple[Segment, Segment]] = []
            state = (i, j)
            while state != (0, 0):
                state, pair = parent[state]
                if pair is not None:
                    pairs.append(pair)
            return pairs[::-1]
        sa = a[i] if i < n else ()
        sb = b[j] if j < m else ()
        moves: list[tuple[tuple[int, int], tuple[Segment, Segment] | None]] = []
        if sa is None:
            moves.append(((i + 1, j), None))
        if sb is None:
            moves.append(((i, j + 1), None))
        if i < n and j < m:
            if sa is None and sb is not None and _seg_satisfiable(sb):
                moves.append(((i, j + 1), (None, sb)))
            elif sb is None and sa is not None and _seg_satisfiable(sa):
                moves.append(((i + 1, j), (sa, None)))
            elif sa is not None and sb is not None and _seg_overlap(sa, sb):
                moves.append(((i + 1, j + 1), (sa, sb)))
        for nxt, pair in moves:
            if nxt not in parent:
                parent[nxt] = ((i, j), pair)
                queue.append(nxt)
    return None


# --- character level ----------------------------------------------------------------------
# --- character level ----------------------------------------------------------------------


def _rows(a: tuple[_Elem, ...], b: tuple[_Elem, ...]) -> list[int] | None:
    """The reachable states of the product of two segment patterns, one bit set per row.

    Row ``i`` (elements of ``a`` consumed) is a bit set over ``j`` (elements of ``b``
    consumed). Stars are never adjacent after parsing, so a ``*`` of ``b`` is skipped with
    one shift; a ``*`` of ``a`` can swallow any run of ``b``'s elements, a fill along the
    row. Cost: O(len(a) · distinct elements of b) set tests plus big-int operations —
    milliseconds for the longest segments the caps allow. None when a row empties.
    """
    if not (_seg_satisfiable(a) and _seg_satisfiable(b)):
        return None
    m = len(b)
    star_b = sum(1 << j for j, e in enumerate(b) if e.star)
    by_chars: dict[Ranges, int] = {}
    for j, e in enumerate(b):
        if not e.star:
            by_chars[e.chars] = by_chars.get(e.chars, 0) | (1 << j)
    everything = (1 << m) - 1  # every element of b (all satisfiable, checked above)

    def close(row: int, a_star: bool) -> int:
        row |= (row & star_b) << 1
        if a_star:
            while True:
                grown = row | ((row & everything) << 1)
                if grown == row:
                    break
                row = grown
        return row

    rows = [close(1, bool(a) and a[0].star)]
    for i, e in enumerate(a):
        row = rows[-1]
        if e.star:
            nxt = row
        else:
            meets = 0
            for chars, mask in by_chars.items():
                if _meet(e.chars, chars):
                    meets |= mask
            nxt = ((row & meets) << 1) | (row & star_b)
        if not nxt:
            return None
        rows.append(close(nxt, i + 1 < len(a) and a[i + 1].star))
    return rows


@lru_cache(maxsize=65536)
def _seg_overlap(a: tuple[_Elem, ...], b: tuple[_Elem, ...]) -> bool:
    """Whether two segment patterns share a name: the product reaches ``(len(a), len(b))``."""
    rows = _rows(a, b)
    return rows is not None and bool(rows[-1] >> len(b) & 1)


@lru_cache(maxsize=65536)
def _meet(x: Ranges, y: Ranges) -> bool:
    return bool(_intersect(x, y))


def _seg_witness(a: tuple[_Elem, ...], b: tuple[_Elem, ...]) -> str | None:
    """A name both segment patterns match: walk back from the end through reachable states.

    Every move of the product lowers ``i + j``, so stepping to any reachable predecessor
    ends at ``(0, 0)``; each step that consumes a character picks one from the sets met.
    """
    rows = _rows(a, b)
    n, m = len(a), len(b)
    if rows is None or not rows[-1] >> m & 1:
        return None

    def live(i: int, j: int) -> bool:
        return i >= 0 and j >= 0 and bool(rows[i] >> j & 1)

    out: list[str] = []
    i, j = n, m
    while (i, j) != (0, 0):
        ea = a[i - 1] if i > 0 else None
        eb = b[j - 1] if j > 0 else None
        if eb is not None and live(i, j - 1) and (eb.star or (i < n and a[i].star)):
            if not eb.star:  # a's star swallows b's element
                out.append(_pick(eb.chars))
            j -= 1
        elif ea is not None and live(i - 1, j) and (ea.star or (j < m and b[j].star)):
            if not ea.star:  # b's star swallows a's element
                out.append(_pick(ea.chars))
            i -= 1
        else:  # both consume one character: the only move left into a reachable state
            assert ea is not None and eb is not None and live(i - 1, j - 1)
            out.append(_pick(_intersect(ea.chars, eb.chars)))
            i, j = i - 1, j - 1
    name = "".join(reversed(out))
    # Only two all-star patterns meet on the empty name; they match any name.
    return name or "x"
