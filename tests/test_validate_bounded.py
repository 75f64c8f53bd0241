"""``runner validate`` on hostile or generated files: linear, capped, no crash.

Ids: ``validate:linear``, ``validate:capped``, ``validate:no-crash``. Times are not
asserted here (the benchmark's row 5 holds the budget: 80,000 unknown keys ≤ 5 s); the
subprocess timeout only stops a hang from holding the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import assert_no_traceback, run_cli


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
    path.write_text(f"name: w\nsteps:\n  - step_id: a\n    tool_to_call: t\n    depends_on: [{deps}]\n{steps}")
    code, out, err = run_cli("validate", path, "--format", "json", timeout=120)
    assert code == 2, err
    problems = json.loads(out)
    assert problems[0]["message"] == "unknown step 'step1x' in depends_on (did you mean 'step1'?)"
    assert problems[-1]["message"].startswith("and 2,901 more problem(s)")
