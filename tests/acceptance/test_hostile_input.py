"""Hostile input all the way through: every reproduction ends in a clear message and exit 0/1/2/4.

Each test drives the real ``runner`` CLI in a subprocess with a wall-clock timeout and an
address-space limit (``ulimit -v``), so a regression fails the test (MemoryError, exit
70, or a timeout) instead of hanging the suite or swapping the machine. Never exit 70,
never a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RUNNER, assert_no_traceback, parse_json_stdout

HOSTILE_AGENT = REPO / "tests" / "agents" / "hostile_agent.py"
_MEMORY_LIMIT = 3 * 1024**3  # bytes of address space: enough for runner + the SDK, not for a bomb
_HEADER = """name: hostile
agents:
  - {id: h, transport: inprocess, module: "hostile_agent:server"}
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))


def guarded(
    *args: str | os.PathLike[str], cwd: Path, timeout: float = 90.0, python: str | None = None
) -> tuple[int, str, str]:
    """``runner ARGS`` (or ``python -c CODE ARGS``) with a time and memory guard."""
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE" and not k.startswith("RUNNER_SECRET_")}
    cmd = [sys.executable, "-c", python, *map(str, args)] if python else [str(RUNNER), *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory
    )
    assert proc.returncode != 70, f"internal error (exit 70):\n{proc.stderr}"
    assert_no_traceback(proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def _workflow(tmp_path: Path, body: str, name: str = "wf.yaml") -> Path:
    shutil.copy(HOSTILE_AGENT, tmp_path / "hostile_agent.py")
    path = tmp_path / name
    path.write_text(_HEADER + body, encoding="utf-8")
    return path


def _run(tmp_path: Path, body: str, *extra: str) -> tuple[int, Any, str]:
    wf = _workflow(tmp_path, body)
    rc, out, err = guarded("run", wf, "--store", "memory://", "--output", "json", *extra, cwd=tmp_path)
    return rc, (parse_json_stdout(out, err) if out.strip() else None), err


# --------------------------------------------------------------------------- 1. validate DIR

_CRASH_ONE_FILE = """
import sys
from runner.load import checks
from runner.cli.main import main

real = checks.WorkflowChecks.run

def run(self):
    if self.smap.file.endswith("crash.yaml"):
        raise RecursionError("injected: a check that crashes on this file")
    return real(self)

checks.WorkflowChecks.run = run
main(sys.argv[1:])
"""


def test_directory_validation_reports_every_file_when_one_crashes_the_validator(tmp_path: Path) -> None:
    d = tmp_path / "flows"
    d.mkdir()
    (d / "a_bad.yaml").write_text("name: a\nsteps: [{step_id: x, depends_on: [nope], tool_to_call: t}]\n")
    (d / "crash.yaml").write_text("name: crash\nsteps: [{step_id: x, tool_to_call: t}]\n")
    (d / "misspelled.yaml").write_text("nmae: m\nstpes: []\n")
    (d / "inputs.yaml").write_text("repo: .\ncount: 3\n")  # not a workflow: skipped, as before
    rc, out, err = guarded("validate", d, "--format", "json", cwd=tmp_path, python=_CRASH_ONE_FILE)
    assert rc == 2, err
    problems = json.loads(out)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for p in problems:
        by_file.setdefault(Path(p["file"]).name, []).append(p)
    assert any("nope" in p["message"] for p in by_file["a_bad.yaml"]), problems
    crash = by_file["crash.yaml"]
    assert len(crash) == 1 and "could not be validated" in crash[0]["message"], crash
    assert crash[0]["severity"] == "error" and "RecursionError" in crash[0]["message"]
    misspelled = {p["message"] for p in by_file["misspelled.yaml"]}
    assert any("did you mean 'name'" in m for m in misspelled) and any("did you mean 'steps'" in m for m in misspelled)
    assert [p["severity"] for p in by_file["inputs.yaml"]] == ["info"]


# --------------------------------------------------------------------------- 2. templates

# Each pass of the inner loop sums 10,000 numbers (~0.1 ms) and builds nothing, so the loop
# runs into the time limit long before the size allowance (one item per pass, 16.7 million
# passes), on however fast a machine. An empty body raced the two: a fast CI machine spent
# the size allowance first and the run failed (exit 1) instead of timing out.
_NESTED_LOOP = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% set x = range(10000)|sum %}{% endfor %}{% endfor %}"
)


def test_a_nested_loop_template_is_stopped_by_the_step_timeout(tmp_path: Path) -> None:
    body = f"""timeout: 60s
steps:
  - {{step_id: spin, tool_to_call: echo, timeout: 1s, tool_arguments: {{value: "{_NESTED_LOOP}"}}}}
  - {{step_id: other, tool_to_call: echo, tool_arguments: {{value: 1}}}}
"""
    rc, data, err = _run(tmp_path, body)
    assert rc == 1, err
    assert data["steps"]["spin"]["status"] == "failed"
    assert "took longer than 1s to render" in data["steps"]["spin"]["error"]
    assert data["steps"]["other"]["status"] == "completed"


def test_a_nested_loop_template_is_stopped_by_the_run_timeout(tmp_path: Path) -> None:
    body = f"""timeout: 2s
steps:
  - {{step_id: spin, tool_to_call: echo, tool_arguments: {{value: "{_NESTED_LOOP}"}}}}
"""
    rc, data, err = _run(tmp_path, body)
    assert rc == 4, err
    assert data["status"] == "timed_out"
    assert "to render" in data["steps"]["spin"]["error"]


@pytest.mark.parametrize(
    ("template", "what"),
    [
        ("{{ 'x'|center(1500000000) }}", "center"),
        ("{{ '%*d'|format(1500000000, 1) }}", "'%' formatting"),
        ("{{ '%.999999999f'|format(1.0) }}", "'%' formatting"),
        ("{{ '{:>1500000000}'.format(1) }}", "format spec"),
        ("{% set s = 'xxxxxxxxxx' %}" + "{% set s = s ~ s %}" * 40 + "{{ s }}", "'~'"),
        ("{% set a = ['x' * 1000000] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}{{ [b,b,b,b,b,b,b,b,b,b] }}", "larger than"),
    ],
)
def test_templates_cannot_build_huge_values(tmp_path: Path, template: str, what: str) -> None:
    body = f"""steps:
  - step_id: big
    tool_to_call: echo
    tool_arguments:
      value: {json.dumps(template)}
"""
    rc, data, err = _run(tmp_path, body)
    assert rc == 1, err
    error = data["steps"]["big"]["error"]
    assert what in error and "more than" in error or "larger than" in error, error


# --------------------------------------------------------------------------- 3. loaders

_ALIAS_BOMB = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True))
)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "utf8": b'x: "\xff\xfe"\n',
        "deep": ("x: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
        "circular": b"x: &a [*a]\n",
        "bomb": _ALIAS_BOMB.encode(),
        "bigint": ("x: 0x" + "f" * 4000 + "\n").encode(),
        "nan": b"x: .nan\n",
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.yaml"
        p.write_bytes(data)
        out[name] = p
    out["devzero"] = Path("/dev/zero")
    return out


_EXPECTED = {
    "utf8": "not UTF-8 text",
    "deep": "nesting",
    "circular": "recursive YAML alias",
    "bomb": "too many nodes",
    "bigint": "integer too large",
    "nan": "not a finite number",
    "devzero": "larger than 64 MiB",
}


@pytest.mark.parametrize("option", ["--inputs", "--secrets", "--agents"])
def test_every_loader_is_bounded_and_clear(tmp_path: Path, option: str) -> None:
    wf = _workflow(tmp_path, "inputs: {x: {type: string, default: a}}\nsteps:\n  - {step_id: a, tool_to_call: echo}\n")
    for kind, path in _bad_files(tmp_path).items():
        rc, out, err = guarded("run", wf, "--store", "memory://", option, path, cwd=tmp_path, timeout=60)
        assert rc == 2, f"{option} {kind}: {err}"
        assert _EXPECTED[kind] in err and str(path) in err, f"{option} {kind}: {err}"
        if option != "--agents":
            assert option in err, err


@pytest.mark.parametrize(
    ("value", "expected"),
    [("[" * 5000, "nested too deeply"), ("[" * 5000 + "]" * 5000, "nested too deeply"), ("[NaN]", "cannot read")],
)
def test_input_pairs_are_bounded(tmp_path: Path, value: str, expected: str) -> None:
    wf = _workflow(tmp_path, "inputs: {l: {type: array, default: []}}\nsteps:\n  - {step_id: a, tool_to_call: echo}\n")
    rc, out, err = guarded("run", wf, "--store", "memory://", "-i", f"l={value}", cwd=tmp_path)
    assert rc == 2 and "input 'l'" in err and expected in err, err
    assert len(err) < 1000, "the message must not echo a huge argument back"


# --------------------------------------------------------------------------- 4. numbers and strings


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("timeout: 0x" + "f" * 300, "integer too large"),
        ("timeout: .nan", "not a finite number"),
        ('name: "x\\n"', "invalid name"),
    ],
)
def test_values_that_would_crash_the_run_are_refused_at_validation(tmp_path: Path, line: str, expected: str) -> None:
    wf = _workflow(tmp_path, "steps:\n  - {step_id: a, tool_to_call: echo}\n")
    wf.write_text(wf.read_text().replace("name: hostile", "name: hostile\n" + line if "name:" not in line else line))
    for command in ("validate", "run"):
        rc, out, err = guarded(command, wf, "--store", "memory://", cwd=tmp_path)
        assert rc == 2 and expected in err, f"{command}: {err}"


def test_a_step_id_ending_in_a_newline_is_invalid(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, 'steps:\n  - {step_id: "a\\n", tool_to_call: echo}\n')
    rc, out, err = guarded("validate", wf, cwd=tmp_path)
    assert rc == 2 and "invalid step_id" in err, err


def test_huge_integers_and_lone_surrogates_from_tools_and_templates(tmp_path: Path) -> None:
    body = """steps:
  - {step_id: big, tool_to_call: big_int}
  - {step_id: odd, tool_to_call: surrogate}
  - {step_id: next, depends_on: [odd], tool_to_call: echo, tool_arguments: {value: "{{ steps.odd.result }}"}}
  - {step_id: power, tool_to_call: echo, tool_arguments: {value: "{{ 10 ** 5000 }}"}}
"""
    rc, data, err = _run(tmp_path, body)
    assert rc == 1, err
    steps = data["steps"]
    assert steps["big"]["status"] == "failed" and "4,300 digits" in steps["big"]["error"]
    assert steps["odd"]["result"] == "a\ufffdb"
    assert steps["next"]["status"] == "completed" and steps["next"]["result"] == "a\ufffdb"
    assert steps["power"]["status"] == "failed" and "digits" in steps["power"]["error"]


# --------------------------------------------------------------------------- 5. in-process agents


def test_in_process_tools_cannot_take_the_runner_down(tmp_path: Path) -> None:
    body = """steps:
  - {step_id: exits, tool_to_call: sys_exit}
  - {step_id: interrupts, tool_to_call: keyboard_interrupt}
  - {step_id: crashes, tool_to_call: boom}
  - {step_id: fine, tool_to_call: echo, tool_arguments: {value: 1}}
"""
    rc, data, err = _run(tmp_path, body)
    assert rc == 1, err
    steps = data["steps"]
    assert "SystemExit(3)" in steps["exits"]["error"]
    assert "KeyboardInterrupt" in steps["interrupts"]["error"]
    assert steps["crashes"]["status"] == "failed" and "boom" in steps["crashes"]["error"]
    assert steps["fine"]["status"] == "completed"
    assert "interrupted" not in err and "Traceback" not in err and "RuntimeError" not in err
