"""Glob overlap, decided exactly: examples, the refusals of ``normalize_pattern``, hostile
sizes, and properties checked against an independent matcher (``fnmatch`` per segment,
``**`` by recursion) over random small patterns and every path of a small alphabet.
"""

from __future__ import annotations

import fnmatch
import itertools
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.core.globs import (
    MAX_PATTERN_LENGTH,
    MAX_SEGMENT_LENGTH,
    MAX_SEGMENTS,
    is_literal,
    normalize_pattern,
    overlaps,
    witness,
)

# --- the oracle: a segment-aware matcher that shares no code with runner.core.globs --------


def matches(pattern: str, path: str) -> bool:
    """Whether ``path`` is in ``pattern``'s set: fnmatch inside a segment (no '/' there, so
    its '*' cannot cross one), ``**`` as zero or more whole segments."""
    if pattern.startswith("/") != path.startswith("/"):
        return False
    pat = tuple(s for s in pattern.split("/") if s)
    segs = tuple(s for s in path.split("/") if s)
    return _match(pat, segs)


@cache
def _match(pat: tuple[str, ...], segs: tuple[str, ...]) -> bool:
    if not pat:
        return not segs
    if pat[0] == "**":
        return _match(pat[1:], segs) or (bool(segs) and _match(pat, segs[1:]))
    return bool(segs) and fnmatch.fnmatchcase(segs[0], pat[0]) and _match(pat[1:], segs[1:])


# --- examples ---------------------------------------------------------------------------

CASES = [
    ("src/**/*.py", "src/a/b.py", True),
    ("src/*.py", "src/a/b.py", False),
    ("*.py", "*.txt", False),
    ("a*", "*b", True),
    ("src/**", "src", True),  # documented: a tree's lock covers the directory itself
    ("src/**", "src/x/y/z", True),
    ("src/**", "srcx", False),
    ("[ab]x", "[bc]x", True),
    ("[a]x", "[c]x", False),
    ("[!a]", "a", False),
    ("[!a]", "[ab]", True),
    ("[a-c]", "[d-f]", False),
    ("[a-c]", "[c-f]", True),
    ("a/*/b", "a/b", False),  # '*' is one whole segment, never none
    ("a/**/b", "a/b", True),
    ("**/*.py", "x/y/z.py", True),
    ("x/**/y/**/z", "x/z/y", False),
    ("*a*b*", "*b*a*", True),
    ("?", "ab", False),
    ("??", "a*", True),
    ("*.py", "x.pyc", False),
    ("**", "/abs", False),  # relative and absolute never overlap
    ("/**", "/abs/x", True),
    ("src/[z-a].py", "src/*", False),  # an empty class matches nothing
    ("a[", "a[", True),  # an unclosed '[' is literal
    ("a[", "a?", True),
    ("src/main.py", "src/main.py", True),
    ("src/main.py", "./src//main.py", True),  # the same path, spelled differently
    ("src/main.py", "src/main.pyi", False),
    ("*", ".env", True),  # documented: '*' covers dotfiles
]


@pytest.mark.parametrize(("a", "b", "expected"), CASES)
def test_overlap_examples(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected
    w = witness(a, b)
    if expected:
        assert w is not None and matches(normalize_pattern(a), w) and matches(normalize_pattern(b), w), w
    else:
        assert w is None


def test_normalize_pattern_canonical_spellings() -> None:
    assert normalize_pattern("./src//a/./b.py") == "src/a/b.py"
    assert normalize_pattern("src/") == "src"
    assert normalize_pattern("/abs//x") == "/abs/x"
    assert normalize_pattern("a/**/**/b") == "a/**/b"
    assert normalize_pattern("././x") == "x"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("./", "names no file"),
        ("/", "names no file"),
        ("a/../b", "'..' segment"),
        ("..", "'..' segment"),
        ("a\x00b", "NUL"),
        ("x" * (MAX_PATTERN_LENGTH + 1), "at most 1024"),
        ("/".join(["a"] * (MAX_SEGMENTS + 1)), f"at most {MAX_SEGMENTS}"),
        ("a/" + "b" * (MAX_SEGMENT_LENGTH + 1), f"at most {MAX_SEGMENT_LENGTH}"),
    ],
)
def test_normalize_pattern_refuses_with_a_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize_pattern(pattern)
    with pytest.raises(ValueError):
        overlaps(pattern, "x")


def test_is_literal() -> None:
    assert is_literal("src/a.py") and is_literal("src/[a].py") and is_literal("a[")
    assert not is_literal("src/*.py") and not is_literal("src/**") and not is_literal("a?")


def test_hostile_patterns_are_answered_exactly() -> None:
    """The longest patterns the caps allow still get an exact answer (the caps bound the work)."""
    cjk = "".join(chr(0x4E00 + i) for i in range(120))
    a = "/".join(["*" + "*".join(cjk) + "*"] * 4)[:MAX_PATTERN_LENGTH]
    b = "/".join(["*" + "*".join(cjk[::-1]) + "*"] * 4)[:MAX_PATTERN_LENGTH]
    w = witness(a, b)
    assert overlaps(a, b) and w is not None and matches(normalize_pattern(a), w) and matches(normalize_pattern(b), w)
    # 253 'a's between stars cannot fit into 200 'a's and a 'c'.
    assert not overlaps("*" + "a" * 253 + "*", "a" * 200 + "c")
    assert overlaps("*" + "a" * 253 + "*", "a" * 253 + "c")
    deep_a = "/".join(["**"] + ["*a"] * 40)
    deep_b = "/".join(["*"] * 40 + ["**"])
    assert overlaps(deep_a, deep_b)
    assert not overlaps("/".join(["*x"] * MAX_SEGMENTS), "/".join(["**", "y*z"] * (MAX_SEGMENTS // 2)))


# --- properties -------------------------------------------------------------------------

_ELEMENTS = st.sampled_from(["a", "b", "c", "?", "*", "[ab]", "[!a]", "[b-c]", "[!a-b]", "["])
_SEGMENT = st.one_of(
    st.just("**"),
    st.lists(_ELEMENTS, min_size=1, max_size=3).map("".join),
)
_PATTERN = st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join)

# Every element's set is told apart by these names ('c' is the only char outside [ab]).
_NAMES = ["a", "b", "c", "[", "aa", "ab", "ba", "bb", "ac", "ca", "b[", "aab", "aba", "abb", "bab"]
_PATHS = ["/".join(p) for n in (1, 2, 3) for p in itertools.product(_NAMES, repeat=n)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PATTERN, _PATTERN)
def test_overlap_agrees_with_brute_force_and_proves_itself(a: str, b: str) -> None:
    """A path found by brute force means ``overlaps``; ``overlaps`` always comes with a witness."""
    claim = overlaps(a, b)
    assert claim == overlaps(b, a)
    w = witness(a, b)
    if claim:
        assert w is not None, (a, b)
        assert matches(a, w) and matches(b, w), (a, b, w)
    else:
        assert w is None
        found = next((p for p in _PATHS if matches(a, p) and matches(b, p)), None)
        assert found is None, f"{a!r} and {b!r} both match {found!r}, but overlaps() said no"


@settings(max_examples=150, deadline=None)
@given(_PATTERN, st.sampled_from(_PATHS))
def test_a_literal_path_overlaps_exactly_the_patterns_matching_it(pattern: str, path: str) -> None:
    # Paths hold '[' only as a literal; spell it as a class so the path is a literal pattern.
    literal = path.replace("[", "[[]")
    assert overlaps(pattern, literal) == matches(pattern, path)
    assert overlaps(literal, path.replace("[", "[[]")) is True


@settings(max_examples=100, deadline=None)
@given(_PATTERN)
def test_every_pattern_overlaps_itself_and_double_star(pattern: str) -> None:
    # Every generated element can match some character ('[!a-b]' matches 'c').
    assert overlaps(pattern, "**") and overlaps(pattern, pattern)
    assert not overlaps(pattern, "/" + pattern)
