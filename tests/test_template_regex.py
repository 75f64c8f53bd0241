"""Regex tests and filters in templates, on RE2. Ids: ``template:regex``, ``template:regex-safe``.

``match``/``search`` (as tests and as filters) and ``regex_replace`` run on a linear-time
engine, so a pathological pattern on a long input returns at once instead of hanging the
run; an invalid or unsupported pattern is refused with its reason — by ``runner validate``
where the pattern is literal, at render time where it is computed.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, assert_no_traceback, run_cli

HEAD = f"""name: rx
inputs:
  names: {{type: array, default: ["alpha", "beta", "apex", "gamma"]}}
  text: {{type: string, default: "a-1 b-22 c-333"}}
  pattern: {{type: string, default: "^a"}}
agents:
  - id: m
    transport: stdio
    command: python
    args: ["examples/agents/math_agent.py"]
    cwd: {REPO}
steps:
  - step_id: a
    tool_to_call: add
    tool_arguments: {{a: 1, b: 2}}
outputs:
"""


def _run(tmp_path: Path, outputs: str, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "w.yaml"
    path.write_text(HEAD + outputs, encoding="utf-8")
    return run_cli("run", "--store", "memory://", "--output", "json", path, *extra)


def test_match_search_and_regex_replace(tmp_path: Path) -> None:
    """template:regex — tests, bool filters, replacement with groups and a count."""
    outputs = (
        "  starts_a: \"{{ inputs.names | select('match', '^a') | list }}\"\n"
        "  has_m: \"{{ inputs.names | select('search', 'm+') | list }}\"\n"
        "  first: \"{% if inputs.names[0] is match('^al') %}yes{% else %}no{% endif %}\"\n"
        "  bool_filter: \"{{ 'gamma' | search('mm') }}\"\n"
        "  no_match: \"{{ 'gamma' | match('mm') }}\"\n"
        "  digits: '{{ inputs.text | regex_replace(\"([a-z])-(\\\\d+)\", \"\\\\2\\\\1\") }}'\n"
        "  once: '{{ inputs.text | regex_replace(\"\\\\d\", \"#\", count=1) }}'\n"
        "  computed: \"{{ inputs.names | select('match', inputs.pattern) | list | length }}\"\n"
    )
    code, out, err = _run(tmp_path, outputs)
    assert code == 0, err
    got = json.loads(out)["outputs"]
    assert got["starts_a"] == ["alpha", "apex"]
    assert got["has_m"] == ["gamma"]
    assert got["first"] == "yes"
    assert got["bool_filter"] is True
    assert got["no_match"] is False
    assert got["digits"] == "1a 22b 333c"
    assert got["once"] == "a-# b-22 c-333"
    assert got["computed"] == 2


def test_regex_filters_pass_validation(tmp_path: Path) -> None:
    """template:regex — the static checker knows them (an unknown filter is an error)."""
    path = tmp_path / "w.yaml"
    path.write_text(HEAD + "  x: \"{{ inputs.text | regex_replace('a', 'b') is search('b') }}\"\n", encoding="utf-8")
    code, out, err = run_cli("validate", path)
    assert code == 0, (out, err)


def test_invalid_literal_pattern_is_a_validation_error(tmp_path: Path) -> None:
    """template:regex — a literal pattern RE2 cannot compile is refused before the run, with its reason."""
    path = tmp_path / "w.yaml"
    path.write_text(HEAD + "  x: \"{{ inputs.text is match('(a') }}\"\n  y: \"{{ inputs.text | regex_replace('(?=a)', '') }}\"\n", encoding="utf-8")
    code, out, err = run_cli("validate", path, "--format", "json")
    assert code == 2, (out, err)
    assert_no_traceback(err)
    messages = [p["message"] for p in json.loads(out)]
    assert any("match: invalid regular expression '(a'" in m for m in messages), messages
    assert any("regex_replace: invalid regular expression '(?=a)'" in m and "RE2" in m for m in messages), messages


def test_invalid_computed_pattern_is_a_render_error(tmp_path: Path) -> None:
    """template:regex — a pattern known only at run time fails the step's render with the pattern and the reason."""
    text = HEAD.replace("tool_arguments: {a: 1, b: 2}", "tool_arguments: {a: \"{{ 1 if inputs.text is search(inputs.pattern) else 0 }}\", b: 2}")
    path = tmp_path / "w.yaml"
    path.write_text(text + "  x: 1\n", encoding="utf-8")
    code, out, err = run_cli("run", "--store", "memory://", "--output", "json", path, "--input", "pattern=(a)\\1")
    assert code == 1, (out, err)
    assert_no_traceback(err)
    error = json.loads(out)["steps"]["a"]["error"]
    assert "search: invalid regular expression '(a)\\\\1'" in error, error
    assert "backreferences and lookaround are not supported" in error, error


def test_pathological_pattern_returns(tmp_path: Path) -> None:
    """template:regex-safe — '^(a+)+$' on 100,000 'a's and a '!' would backtrack for ages in Python's re."""
    outputs = (
        "  hit: \"{{ ('a' * 100000 + '!') is match('^(a+)+$') }}\"\n"
        "  gone: \"{{ ('a' * 100000 + '!') | regex_replace('^(a+)+$', '') | length }}\"\n"
    )
    code, out, err = _run(tmp_path, outputs)
    assert code == 0, err
    got = json.loads(out)["outputs"]
    assert got == {"hit": False, "gone": 100001}
