"""Agent, tool, timeout and retry chosen by templates; ``agents`` and ``previous`` in templates.

Through the real CLI with the example agents (math and text over stdio): a template over
``inputs``/``workflow``/``agents`` is rendered before preflight and held to a literal's
rules (exit 2, positioned); one over ``item``/``index``/``previous``/``steps`` is rendered
per task, and a value naming no agent, a need nobody meets or a tool the chosen agent
lacks fails that task (exit 1) with the step, the item and the value.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO, RUNNER, assert_no_traceback, parse_json_stdout, run_cli

AGENTS = f"""agents:
  - id: math
    role: calc
    capabilities: [arithmetic]
    command: python
    args: ["examples/agents/math_agent.py"]
    cwd: {REPO}
  - id: text
    role: writer
    capabilities: [text]
    description: Offline text tools
    command: python
    args: ["examples/agents/text_agent.py"]
    cwd: {REPO}
"""
MATH_TOOLS = "add, divide, flaky, multiply, sleep, stats, sum_list"


def _write(tmp_path: Path, body: str, name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _run(path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli("run", path, "--store", "memory://", "--output", "json", *extra)
    assert_no_traceback(err)
    return code, parse_json_stdout(out, err), err


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _at(path: Path, needle: str) -> str:
    """``file:line:col`` of the first occurrence of ``needle`` in the file."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return f"{path}:{i}:{line.index(needle) + 1}"
    raise AssertionError(needle)


# --------------------------------------------------------------------------- per task


def test_agent_and_tool_chosen_per_item(tmp_path: Path) -> None:
    """Each item names its agent and tool; capabilities may come from the item too."""
    path = _write(
        tmp_path,
        f"""name: dyn
inputs:
  jobs:
    type: array
    default:
      - {{agent: math, tool: add, args: {{a: 2, b: 3}}}}
      - {{agent: text, tool: upper, args: {{text: "hi there"}}}}
      - {{agent: math, tool: multiply, args: {{a: 4, b: 5}}}}
{AGENTS}steps:
  - step_id: work
    for_each: "{{{{ inputs.jobs }}}}"
    assigned_agent_id: "{{{{ item.agent }}}}"
    tool_to_call: "{{{{ item.tool }}}}"
    tool_arguments: "{{{{ item.args }}}}"
  - step_id: by_caps
    for_each: [[arithmetic], [text]]
    required_capabilities: "{{{{ item }}}}"
    tool_to_call: "{{{{ 'add' if index == 0 else 'upper' }}}}"
    tool_arguments: "{{{{ {{'a': index, 'b': 7}} if index == 0 else {{'text': 'caps'}} }}}}"
  - step_id: pick
    depends_on: [work]
    assigned_agent_id: "{{{{ steps.work.result[1] | lower | replace('hi there', 'text') }}}}"
    tool_to_call: word_count
    tool_arguments: {{text: "{{{{ steps.work.result[1] }}}}"}}
outputs:
  work: "{{{{ steps.work.result }}}}"
  by_caps: "{{{{ steps.by_caps.result }}}}"
  pick: "{{{{ steps.pick.result.words }}}}"
  pick_agent: "{{{{ steps.pick.agent_id }}}}"
""",
    )
    code, out, err = _run(path)
    assert code == 0, err
    assert out["outputs"] == {"work": [5, "HI THERE", 20], "by_caps": [7, "CAPS"], "pick": 2, "pick_agent": "text"}


def test_previous_folds_over_stages(tmp_path: Path) -> None:
    """``previous`` (max_parallel: 1): each stage's output is the next stage's input."""
    path = _write(
        tmp_path,
        f"""name: fold
inputs:
  payload: {{type: string, default: "hello big world"}}
  stages:
    type: array
    default: [{{tool: upper, argument: text}}, {{tool: word_count, argument: text}}]
{AGENTS}steps:
  - step_id: line
    for_each: "{{{{ inputs.stages }}}}"
    max_parallel: 1
    assigned_role: writer
    tool_to_call: "{{{{ item.tool }}}}"
    tool_arguments: "{{{{ {{item.argument: (previous if index else inputs.payload)}} }}}}"
  - step_id: sums
    for_each: [2, 3, 4]
    max_parallel: 1
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {{a: "{{{{ previous if index else 1 }}}}", b: "{{{{ item }}}}"}}
outputs:
  line: "{{{{ steps.line.result }}}}"
  sums: "{{{{ steps.sums.result }}}}"
""",
    )
    code, out, err = _run(path)
    assert code == 0, err
    assert out["outputs"]["line"][0] == "HELLO BIG WORLD"
    assert out["outputs"]["line"][1]["words"] == 3
    assert out["outputs"]["sums"] == [3, 6, 10]


def _one_step(tmp_path: Path, step: str) -> Path:
    return _write(tmp_path, f"name: bad\n{AGENTS}steps:\n{step}")


def test_unknown_agent_fails_that_item(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [math, math, math, nobody]
    max_parallel: 1
    assigned_agent_id: "{{ item }}"
    tool_to_call: add
    tool_arguments: {a: "{{ index }}", b: 1}
""",
    )
    code, out, err = _run(path)
    assert code == 1, err
    step = out["steps"]["work"]
    assert step["status"] == "failed"
    assert step["error"] == (
        "step 'work' item 3: assigned_agent_id rendered to 'nobody', which is not an agent of this run "
        "(agents: math, text)"
    )
    assert step["result"] == [1, 2, 3, None]  # the items before it ran


def test_capability_nobody_has_fails_that_item(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [[arithmetic], [flying]]
    max_parallel: 1
    required_capabilities: "{{ item }}"
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
""",
    )
    code, out, err = _run(path)
    assert code == 1, err
    assert out["steps"]["work"]["error"] == (
        "step 'work' item 1: required_capabilities rendered to ['flying']: no agent of this run has "
        "capabilities ['flying'] (agents: math (role calc; capabilities arithmetic), "
        "text (role writer; capabilities text))"
    )


def test_tool_the_chosen_agent_lacks_fails_that_item(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [add, shout]
    max_parallel: 1
    assigned_agent_id: math
    tool_to_call: "{{ item }}"
    tool_arguments: {a: 1, b: 1}
  - step_id: other
    for_each: [text, math]
    max_parallel: 1
    assigned_agent_id: "{{ item }}"
    tool_to_call: upper
    tool_arguments: {text: x}
""",
    )
    code, out, err = _run(path)
    assert code == 1, err
    assert out["steps"]["work"]["error"] == (
        f"step 'work' item 1: tool_to_call rendered to 'shout', which agent 'math' does not offer "
        f"('math' offers: {MATH_TOOLS})"
    )
    assert out["steps"]["other"]["error"] == (
        f"step 'other' item 1: agent 'math' (assigned_agent_id rendered to 'math') has no tool 'upper' "
        f"('math' offers: {MATH_TOOLS})"
    )


def test_step_result_choosing_an_unknown_agent_fails_the_step(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: a
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {text: math}
  - step_id: b
    depends_on: [a]
    assigned_agent_id: "{{ steps.a.result }}"
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
""",
    )
    code, out, err = _run(path)
    assert code == 1, err
    assert out["steps"]["b"]["error"] == (
        "step 'b': assigned_agent_id rendered to 'MATH', which is not an agent of this run (agents: math, text)"
    )


def test_rendered_value_of_the_wrong_shape_fails_that_item(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [1]
    assigned_role: "{{ item }}"
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
""",
    )
    code, out, err = _run(path)
    assert code == 1, err
    assert (
        out["steps"]["work"]["error"] == "step 'work' item 0: assigned_role rendered to 1: must be a non-empty string"
    )


def test_preflight_still_needs_one_agent_with_the_tool(tmp_path: Path) -> None:
    """A per-item agent may be any declared agent; none of them has the (fixed) tool: exit 2 before any step."""
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [math, text]
    assigned_agent_id: "{{ item }}"
    tool_to_call: nope
""",
    )
    code, out, err = run_cli("run", path, "--store", "memory://")
    assert code == 2, err
    line = _line_of(path, "tool_to_call: nope")
    assert f"{path}:{line}:19: step 'work': none of the agents math, text has a tool 'nope'" in err


# --------------------------------------------------------------------------- before preflight


FIXED = f"""name: fixed
inputs:
  tool: {{type: string, default: flaky}}
  tries: {{type: integer, default: 3}}
  pause: {{type: string, default: 50ms}}
  limit: {{type: string, default: 20s}}
{AGENTS}steps:
  - step_id: x
    assigned_agent_id: "{{{{ (agents | selectattr('role', 'equalto', 'calc') | first).id }}}}"
    tool_to_call: "{{{{ inputs.tool }}}}"
    tool_arguments: {{key: "{{{{ run.id }}}}", fail_times: 2}}
    timeout: "{{{{ inputs.limit }}}}"
    retry: {{max_attempts: "{{{{ inputs.tries }}}}", delay: "{{{{ inputs.pause }}}}"}}
outputs:
  attempt: "{{{{ steps.x.result.attempt }}}}"
"""


def test_inputs_choose_tool_agent_timeout_and_retry(tmp_path: Path) -> None:
    path = _write(tmp_path, FIXED)
    code, out, err = _run(path)
    assert code == 0, err
    assert out["outputs"] == {"attempt": 3}
    assert out["steps"]["x"]["attempts"] == 3 and out["steps"]["x"]["agent_id"] == "math"
    code, out, err = _run(path, "-i", "tries=2")  # one attempt short: the retry count came from the input
    assert code == 1, err
    assert out["steps"]["x"]["attempts"] == 2


def test_inputs_only_values_are_checked_like_literals(tmp_path: Path) -> None:
    path = _write(tmp_path, FIXED)
    tries, pause, limit = (_at(path, '"{{ inputs.' + name) for name in ("tries", "pause", "limit"))
    for args, message in [
        (
            ("-i", "tries=0"),
            f"{tries}: step 'x': retry.max_attempts rendered to 0: must be an integer of at least 1",
        ),
        (
            ("-i", "pause=soon"),
            f"{pause}: step 'x': retry.delay rendered to 'soon': use e.g. 500ms, 30s, 10m, 1h or seconds",
        ),
        (
            ("-i", "limit=-1"),
            f"{limit}: step 'x': timeout rendered to '-1': use e.g. 500ms, 30s, 10m, 1h or seconds",
        ),
    ]:
        code, out, err = run_cli("run", path, "--store", "memory://", *args)
        assert code == 2, (args, err)
        assert_no_traceback(err)
        assert message in err, (args, err)


def test_inputs_only_tool_is_checked_at_preflight(tmp_path: Path) -> None:
    path = _write(tmp_path, FIXED)
    code, out, err = run_cli("run", path, "--store", "memory://", "-i", "tool=nope")
    assert code == 2, err
    assert f"step 'x': agent 'math' has no tool 'nope'; it offers: {MATH_TOOLS}" in err


def test_agents_in_the_template_context(tmp_path: Path) -> None:
    registry = _write(
        tmp_path,
        "agents:\n  - {id: clerk, transport: pull, role: clerk, capabilities: [filing], name: The clerk}\n",
        "agents.yaml",
    )
    path = _write(
        tmp_path,
        f"""name: who
{AGENTS}steps:
  - step_id: names
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {{text: "{{{{ agents | map(attribute='id') | join(' ') }}}}"}}
outputs:
  names: "{{{{ steps.names.result }}}}"
  agents: "{{{{ agents }}}}"
""",
    )
    code, out, err = _run(path, "--agents", str(registry))
    assert code == 0, err
    assert out["outputs"]["names"] == "MATH TEXT CLERK"  # declared, then --agents (docs/workflow.md, Context)
    assert out["outputs"]["agents"] == [
        {"id": "math", "name": "math", "role": "calc", "capabilities": ["arithmetic"], "description": None},
        {"id": "text", "name": "text", "role": "writer", "capabilities": ["text"], "description": "Offline text tools"},
        {"id": "clerk", "name": "The clerk", "role": "clerk", "capabilities": ["filing"], "description": None},
    ]


# --------------------------------------------------------------------------- validation


def test_validation_of_the_new_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""name: v
inputs:
  n: {{type: integer, default: 2}}
{AGENTS}steps:
  - step_id: first
    assigned_agent_id: "{{{{ item }}}}"
    tool_to_call: add
    timeout: "{{{{ steps.first.result }}}}"
    tool_arguments: {{a: "{{{{ agentz }}}}", b: 1}}
  - step_id: fan
    for_each: [1, 2]
    max_parallel: 2
    tool_to_call: add
    tool_arguments: {{a: "{{{{ previous }}}}", b: 1}}
    retry: {{max_attempts: "{{{{ index }}}}"}}
""",
    )
    code, out, err = run_cli("validate", path, "--format", "json")
    assert code == 2, err
    got = {(p["line"], p["message"]) for p in json.loads(out)}
    first = _line_of(path, "step_id: first")
    fan = _line_of(path, "step_id: fan")
    assert got == {
        (first + 1, "'item' is only defined in a step with for_each (used outside for_each)"),
        (first + 3, "timeout is fixed before the run starts: it may use inputs, workflow and agents, not 'steps'"),
        (
            first + 4,
            "unknown name 'agentz' in template (did you mean 'agents'?); known: inputs, steps, item, index, "
            "previous, agents, run, workflow, secrets",
        ),
        (
            fan + 4,
            "'previous' (the result of the item before) needs max_parallel: 1 on this step: items running in "
            "parallel have no item before them that has finished",
        ),
        (
            fan + 5,
            "retry.max_attempts is fixed before the run starts: it may use inputs, workflow and agents, not 'index'",
        ),
    }


def test_schema_accepts_templates_and_explains_literals(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""name: s
{AGENTS}steps:
  - step_id: a
    tool_to_call: add
    timeout: soon
    required_capabilities: arithmetic
    retry: {{max_attempts: 0}}
""",
    )
    code, out, err = run_cli("validate", path)
    assert code == 2, err
    out += err
    a = _line_of(path, "step_id: a")
    tail = ' (or a template: "{{ ... }}")'
    assert (
        f'{path}:{a + 2}:14: invalid duration "soon": use e.g. 500ms, 30s, 10m, 1h or a number of seconds{tail}' in out
    )
    assert f'{path}:{a + 3}:28: expected array, got string "arithmetic"{tail}' in out
    assert f"{path}:{a + 4}:27: 0 is less than the minimum of 1{tail}" in out


def test_deep_warns_that_a_templated_tool_cannot_be_checked(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [add]
    assigned_agent_id: math
    tool_to_call: "{{ item }}"
    tool_arguments: {a: 1, b: 1}
""",
    )
    code, out, err = run_cli("validate", "--deep", path, "--format", "json")
    assert code == 0, (out, err)
    [p] = json.loads(out)
    assert p["severity"] == "warning" and p["line"] == _line_of(path, "tool_to_call")
    assert p["message"] == (
        "--deep: tool_to_call '{{ item }}' is a template: the tool is chosen when the run renders it and cannot be "
        "checked now"
    )


# --------------------------------------------------------------------------- resume


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_previous_survives_resume(tmp_path: Path) -> None:
    """Killed while item 1 is in flight; the resumed run feeds it item 0's stored result."""
    fixture = REPO / "tests/fixtures/dynsel/fold_resume.yaml"
    ledger = tmp_path / "ledger.jsonl"
    store = f"sqlite:///{tmp_path}/runner.db"
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE"}
    proc = subprocess.Popen(
        [str(RUNNER), "run", str(fixture), "-i", f"ledger={ledger}", "--store", store, "-q"],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(e["key"] == "item1" for e in _ledger(ledger)):  # bounded: until item 1 is in flight
            assert time.monotonic() < deadline, "item 1 never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    code, out, err = run_cli("runs", "list", "--store", store, "--output", "json", cwd=tmp_path)
    [run] = json.loads(out)
    code, out, err = run_cli("resume", run["run_id"], "--store", store, "--output", "json", cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out)["outputs"] == {"totals": [10, 30, 60]}
    calls = [e["key"] for e in _ledger(ledger)]
    assert calls.count("item0") == 1  # item 0 did not run again: its stored result was `previous`
    assert calls.count("item1") == 2 and calls.count("item2") == 1


def test_no_agent_at_all_is_still_a_preflight_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """name: none
steps:
  - step_id: work
    for_each: [a]
    assigned_agent_id: "{{ item }}"
    tool_to_call: add
""",
    )
    code, out, err = run_cli("run", path, "--store", "memory://")
    assert code == 2, err
    assert f"{path}:3:5: step 'work': no agent can run it (no agents declared)" in err


def test_unknown_fallback_agent_fails_that_item(tmp_path: Path) -> None:
    path = _one_step(
        tmp_path,
        """  - step_id: work
    for_each: [[text], [text, ghost]]
    max_parallel: 1
    assigned_agent_id: math
    fallback_agents: "{{ item }}"
    tool_to_call: add
    tool_arguments: {a: 1, b: 2}
""",
    )
    code, out, err = _run(path)
    assert code == 1, err
    assert out["steps"]["work"]["result"] == [3, None]
    assert out["steps"]["work"]["error"] == (
        "step 'work' item 1: fallback_agents rendered to ['text', 'ghost']; 'ghost' is not an agent of this run "
        "(agents: math, text)"
    )


def test_pull_step_assigned_per_item(tmp_path: Path) -> None:
    """A pull step's agent chosen per item: each item waits for its own agent's report."""
    path = _write(
        tmp_path,
        """name: reviews
agents:
  - {id: alice, transport: pull}
  - {id: bob, transport: pull}
steps:
  - step_id: review
    for_each: [alice, bob]
    assigned_agent_id: "{{ item }}"
    tool_arguments: {doc: "part {{ index }}"}
    timeout: 60s
outputs:
  verdicts: "{{ steps.review.result }}"
""",
    )
    store = f"sqlite:///{tmp_path}/runner.db"
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE"}
    proc = subprocess.Popen(
        [str(RUNNER), "run", str(path), "--store", store, "--output", "json", "-q"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        waiting: list[dict[str, Any]] = []
        while len(waiting) < 2:  # bounded: until both items wait for their agent
            assert time.monotonic() < deadline, "the pull items were never assigned"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
            code, out, err = run_cli("steps", "list", "--store", store, "--output", "json", cwd=tmp_path)
            waiting = json.loads(out) if code == 0 and out.strip() else []
        assert sorted((w["index"], w["agent_id"]) for w in waiting) == [(0, "alice"), (1, "bob")]
        run_id = waiting[0]["run_id"]
        code, out, err = run_cli(
            "steps", "complete", run_id, "review", "--agent", "bob", "--index", "0", "--store", store, cwd=tmp_path
        )
        assert code != 0 and "alice" in err, (code, err)  # item 0 belongs to alice
        for index, agent in ((0, "alice"), (1, "bob")):
            code, out, err = run_cli(
                "steps", "complete", run_id, "review", "--agent", agent, "--index", str(index),
                "--result", json.dumps(f"ok from {agent}"), "--store", store, cwd=tmp_path,
            )  # fmt: skip
            assert code == 0, err
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert json.loads(out)["outputs"] == {"verdicts": ["ok from alice", "ok from bob"]}
