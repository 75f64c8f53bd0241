"""``runner validate`` on hostile or generated files: linear, capped, no crash.

Ids: ``validate:linear``, ``validate:capped``, ``validate:no-crash``. Times are not
asserted here (the benchmark's row 5 holds the budget: 80,000 unknown keys ≤ 5 s); the
subprocess timeout only stops a hang from holding the suite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.load.validation import validate_paths
from tests.conftest import assert_no_traceback, run_cli

AGENTS = "agents: [{id: x, transport: inprocess, module: 'm:s'}]\n"


def _unknown_keys(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"keys{n}.yaml"
    path.write_text("".join(f"unknown_key_{i}: {i}\n" for i in range(n)), encoding="utf-8")
    return path


def test_80000_unknown_keys_are_reported_capped_most_relevant_first(tmp_path: Path) -> None:
    """validate:linear validate:capped — missing keys first, 100 lines, then a count."""
    path = _unknown_keys(tmp_path, 80_000)
    code, out, err = run_cli("validate", path, timeout=120)
    assert code == 2, err
    assert_no_traceback(err)
    lines = err.splitlines()
    assert lines[0] == f"{path}:1:1: missing required key 'name' [$]"
    assert lines[1] == f"{path}:1:1: missing required key 'steps' [$]"
    assert lines[2] == f"{path}:1:1: unknown key 'unknown_key_0' [$.unknown_key_0]"
    assert len(lines) == 101
    assert lines[-1] == (
        f"{path}: info: and 903 more problem(s) (903 error(s)) not shown; --max-problems 0 shows all"
    )


def test_max_problems_zero_shows_every_problem_and_a_count_past_1000_keys(tmp_path: Path) -> None:
    """validate:capped — one mapping's unknown keys past 1,000 become one counted problem."""
    path = _unknown_keys(tmp_path, 1_500)
    code, out, err = run_cli("validate", path, "--format", "json", "--max-problems", "0", timeout=120)
    assert code == 2, err
    problems = json.loads(out)
    assert len(problems) == 2 + 1000 + 1
    last = problems[-1]
    assert last["message"] == "and 500 more unknown keys in this mapping, from 'unknown_key_1000' on"
    assert (last["line"], last["col"], last["path"]) == (1001, 1, "$.unknown_key_1000")


def test_json_report_is_capped_with_an_info_entry(tmp_path: Path) -> None:
    """validate:capped — the JSON list keeps its shape: the count is one more entry."""
    path = _unknown_keys(tmp_path, 300)
    code, out, err = run_cli("validate", path, "--format", "json", "--max-problems", "5")
    assert code == 2, err
    problems = json.loads(out)
    assert [p["severity"] for p in problems] == ["error"] * 5 + ["info"]
    assert problems[-1]["message"].startswith("and 297 more problem(s) (297 error(s)) not shown")


def test_3000_unknown_depends_on_ids_are_bounded_and_still_hinted(tmp_path: Path) -> None:
    """validate:linear — a did-you-mean for the first ids, no difflib search per id past that."""
    steps = "".join(f"  - step_id: step{i}\n    tool_to_call: t\n" for i in range(3000))
    deps = ", ".join(["step1x"] + [f"zz{i}" for i in range(3000)])
    path = tmp_path / "deps.yaml"
    path.write_text(f"name: w\n{AGENTS}steps:\n  - step_id: a\n    tool_to_call: t\n    depends_on: [{deps}]\n{steps}")
    code, out, err = run_cli("validate", path, "--format", "json", timeout=120)
    assert code == 2, err
    problems = json.loads(out)
    assert problems[0]["message"] == "unknown step 'step1x' in depends_on (did you mean 'step1'?)"
    assert problems[-1]["message"].startswith("and 2,901 more problem(s)")


_BASE = """name: w
{top}steps:
  - step_id: a
    tool_to_call: t
    {step}
"""

# reproducers of the fuzzing pass: (top-level text, step text, expected message fragment)
REPRODUCERS = {
    "4400-digit integer": ("", "tool_arguments: {n: 0x" + "f" * 4400 + "}", "integer too large (4,402 characters)"),
    "400-digit timeout": ("timeout: " + "1" * 400 + "\n", "", "integer too large (400 characters)"),
    "empty !!int": ("timeout: !!int ''\n", "", "invalid !!int value ''"),
    "empty !!float": ("timeout: !!float ''\n", "", "invalid !!float value ''"),
    "$ref urn": ("inputs:\n  a: {$ref: 'urn:nope', default: 1}\n", "", "$ref 'urn:nope' points outside the schema"),
    "$ref dangling": ("inputs:\n  a: {$ref: '#/definitions/nope'}\n", "", "resolves to nothing in this schema"),
    "$ref file": ("inputs:\n  a: {$ref: 'file:///etc/passwd'}\n", "", "points outside the schema"),
    "$ref http": ("inputs:\n  a: {$ref: 'http://127.0.0.1:1/x.json'}\n", "", "points outside the schema"),
    "$dynamicRef": ("inputs:\n  a: {$dynamicRef: '#meta'}\n", "", "$dynamicRef '#meta' resolves to nothing"),
    "pattern (": ("inputs:\n  a: {type: string, pattern: '('}\n", "", "invalid regular expression '('"),
    "pattern backref": ("inputs:\n  a: {type: string, pattern: '(?P=b)'}\n", "", "patterns run on RE2"),
    "catastrophic pattern": (
        "inputs:\n  a: {type: string, pattern: '^(a+)+$', default: '" + "a" * 40 + "!'}\n",
        "",
        "does not match '^(a+)+$'",
    ),
    "uses NUL": ("", 'uses: "a\\0.yaml"', "uses: contains a NUL character"),
    "uses 5000": ("", "uses: " + "a" * 5000, "uses: too long (5,000 characters"),
    "1000 (": ("", 'tool_arguments: {x: "{{ ' + "(" * 1000 + ' }}"}', "template nested too deeply"),
    "1000 [": ("", 'tool_arguments: {x: "{{ ' + "[" * 1000 + ' }}"}', "template nested too deeply"),
    "5000 unary -": ("", 'tool_arguments: {x: "{{ ' + "-" * 5000 + '1 }}"}', "template nested too deeply"),
}


@pytest.mark.parametrize("name", list(REPRODUCERS))
def test_fuzz_reproducer_is_a_positioned_exit_2_problem(tmp_path: Path, name: str) -> None:
    """validate:no-crash — each root cause the fuzzing pass found is a clear problem."""
    top, step, fragment = REPRODUCERS[name]
    path = tmp_path / "w.yaml"
    path.write_text(_BASE.format(top=top, step=step), encoding="utf-8")
    code, out, err = run_cli("validate", path, "--format", "json", timeout=60)
    assert code == 2, (out, err)
    assert_no_traceback(err)
    problems = json.loads(out)
    hit = [p for p in problems if fragment in p["message"]]
    assert hit, problems
    assert hit[0]["line"] >= 1 and hit[0]["col"] >= 1
    assert all(len(p["message"]) <= 1000 for p in problems)


def test_non_utf8_file_is_positioned_on_its_bad_byte(tmp_path: Path) -> None:
    """validate:no-crash — a real position (line 3, the column of the byte), never 0:0."""
    path = tmp_path / "w.yaml"
    path.write_bytes(b"name: w\nsteps:\n  - step_id: \xc3\xa9\xff\n")
    code, out, err = run_cli("validate", path)
    assert code == 2
    assert err.splitlines()[0].startswith(f"{path}:3:15: not UTF-8 text: byte 0xff")


def test_missing_file_has_no_made_up_position(tmp_path: Path) -> None:
    code, out, err = run_cli("validate", tmp_path / "gone.yaml")
    assert code == 2
    assert err.splitlines()[0] == f"{tmp_path / 'gone.yaml'}: cannot read workflow file: {tmp_path / 'gone.yaml'}: No such file or directory [$]"


_HOSTILE = [
    "!!int ''", "!!float ''", "0x" + "f" * 4500, "1" * 5000, "&a [*a, *a, *a]", "*nope", "{{ " + "(" * 300,
    "{{ x | nosuchfilter }}", "{$ref: 'file:///etc/passwd'}", "{pattern: '(?<=a)'}", "\0", "\udcff", "? [a]",
    "{{ steps.a.reslt }}", "[" * 200, "- - - -", "'", '"', "\t", "!!binary AAAA", "!!python/name:os.system",
    "<<: *a", "uses: " + "b" * 3000, "for_each: abc", "needs: [a]", "1e99999", ".nan", "-.inf",
]


@settings(max_examples=int(os.environ.get("RUNNER_FUZZ_EXAMPLES", "150")), deadline=None)
@given(st.data())
def test_mutated_workflows_never_crash_the_validator(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """validate:no-crash — mutated real workflows: problems or valid, never an exception."""
    sources = sorted((Path(__file__).parent.parent / "workflows").glob("*.yaml"))
    text = data.draw(st.sampled_from(sources)).read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if kind == "insert":
            text = text[:at] + data.draw(st.sampled_from(_HOSTILE) | st.text(max_size=20)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 200)) :]
        else:
            text = text[:at] + text[at : at + data.draw(st.integers(1, 400))] * 3 + text[at:]
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "w.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    problems = validate_paths([path])
    for p in problems:
        assert isinstance(p.message, str) and p.message
        assert p.severity in ("error", "warning", "info")
        assert len(p.message) <= 1000
