"""Black-box audit of nested runs (``uses:``) and run-time selection, through the real CLI.

What tests/test_uses.py, test_nesting.py, test_nested_durability.py and
test_dynamic_selection.py leave out: three levels of calls with a ``for_each`` inside a
callee in every face (events, ``--output json``, JUnit, ``runs show`` text and JSON,
``runs list``); a ``uses:`` step's own ``timeout``, ``retry``, ``continue_on_error`` and
``if``; a cancel and a caller's timeout while an inner call is in flight; a SIGKILL inside a
``for_each`` of a callee; ``retry --from`` an inner id; ``agents`` (order, no secret or env);
hostile per-task renders (megabytes, wrong types) and their validation positions. The
agents are the example math and text agents and the ledger test agent, over stdio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import REPO, RUNNER, assert_no_traceback, parse_json_stdout, run_cli

AGENTS = f"""agents:
  - id: math
    role: calc
    capabilities: [arithmetic]
    command: python
    args: ["{REPO}/examples/agents/math_agent.py"]
  - id: text
    role: writer
    capabilities: [text]
    command: python
    args: ["{REPO}/examples/agents/text_agent.py"]
"""

LEAF = """name: leaf
inputs: {t: {type: string}}
steps:
  - step_id: up
    assigned_agent_id: text
    tool_to_call: upper
    tool_arguments: {text: "{{ inputs.t }}"}
outputs: {v: "{{ steps.up.result }}"}
"""

MIDDLE = """name: middle
inputs: {t: {type: string}}
steps:
  - step_id: inner
    uses: ./leaf.yaml
    with: {t: "{{ inputs.t }}-2"}
  - step_id: wc
    depends_on: [inner]
    assigned_agent_id: text
    tool_to_call: word_count
    tool_arguments: {text: "{{ steps.inner.result.v }} {{ inputs.t }}"}
outputs: {v: "{{ steps.inner.result.v }}", n: "{{ steps.wc.result.words }}"}
"""

SLOW = """name: slow
inputs: {s: {type: number, default: 30}}
steps:
  - step_id: nap
    assigned_agent_id: math
    tool_to_call: sleep
    tool_arguments: {seconds: "{{ inputs.s }}"}
  - step_id: after
    depends_on: [nap]
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: 2}
finally:
  - step_id: cleanup
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 40, b: 2}
outputs: {x: "{{ steps.after.result }}"}
"""


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _run(path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli("run", path, "--output", "json", *extra, env=env, timeout=120)
    assert_no_traceback(err)
    return code, parse_json_stdout(out, err), err


def _at(path: Path, needle: str) -> str:
    """``file:line:col`` of the first occurrence of ``needle`` in the file."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return f"{path}:{i}:{line.index(needle) + 1}"
    raise AssertionError(needle)


# --------------------------------------------------------------------------- naming


def test_three_levels_with_for_each_named_alike_in_every_face(tmp_path: Path) -> None:
    """`top/inner/up` and `fe[1]/inner/up`: the same ids, in the same order, in every face."""
    _write(tmp_path, "leaf.yaml", LEAF)
    _write(tmp_path, "middle.yaml", MIDDLE)
    wf = _write(
        tmp_path,
        "top.yaml",
        AGENTS
        + """name: three
steps:
  - step_id: top
    uses: ./middle.yaml
    with: {t: hello}
  - step_id: fe
    for_each: [alpha, beta]
    uses: ./middle.yaml
    with: {t: "{{ item }}"}
  - step_id: fold
    for_each: [a, b, c]
    max_parallel: 1
    uses: ./leaf.yaml
    with: {t: "{{ (previous.v if previous else 'x') ~ item }}"}
outputs: {top: "{{ steps.top.result }}", fe: "{{ steps.fe.result }}", fold: "{{ steps.fold.result }}"}
""",
    )
    store = f"sqlite:///{tmp_path}/s.db"
    events, junit = tmp_path / "ev.jsonl", tmp_path / "j.xml"
    code, out, err = _run(wf, "--store", store, "--events", events, "--junit", junit)
    assert code == 0, err
    # Results that only the real calls produce: upper-cased, then counted with the input.
    assert out["outputs"] == {
        "top": {"v": "HELLO-2", "n": 2},
        "fe": [{"v": "ALPHA-2", "n": 2}, {"v": "BETA-2", "n": 2}],
        "fold": [{"v": "XA"}, {"v": "XAB"}, {"v": "XABC"}],  # `previous`: a fold over nested runs
    }
    ids = [
        "top", "top/inner", "top/inner/up", "top/wc",
        "fe", "fe[0]/inner", "fe[0]/inner/up", "fe[0]/wc", "fe[1]/inner", "fe[1]/inner/up", "fe[1]/wc",
        "fold", "fold[0]/up", "fold[1]/up", "fold[2]/up",
    ]  # fmt: skip
    assert list(out["steps"]) == ids
    assert out["steps"]["fe[1]/inner/up"]["result"] == "BETA-2"
    assert out["steps"]["fe[1]/inner/up"]["agent_id"] == "text"
    assert out["steps"]["fe[0]/inner"]["result"] == {"v": "ALPHA-2"}  # a nested call's result: its outputs
    # --events: every step's completion under its nested id, and no other id.
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    done = [e["step_id"] for e in lines if e["type"] == "step_completed"]
    assert sorted(done) == sorted(ids)
    assert {e["run_id"] for e in lines} == {out["run_id"]}
    # JUnit: one case per step, by nested id, in the same order; all green.
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert [c.get("name") for c in cases] == ids
    assert all(c.find("failure") is None and c.find("skipped") is None for c in cases)
    # runs show (JSON and text): the same ids and results; runs list: the run.
    code, shown, err = run_cli("runs", "show", out["run_id"], "--store", store, "--output", "json")
    assert code == 0, err
    data = json.loads(shown)
    assert sorted(data["steps"]) == sorted(ids)
    assert data["steps"]["top/inner/up"]["result"] == "HELLO-2"
    assert {k: v["status"] for k, v in data["steps"].items()} == dict.fromkeys(ids, "completed")
    code, text, err = run_cli("runs", "show", out["run_id"], "--store", store)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()}
    for sid in ids:
        assert rows[sid][1] == "completed", text
    assert rows["fe[1]/inner/up"][3] == "text" and '"BETA-2"' in rows["fe[1]/inner/up"]
    code, listed, err = run_cli("runs", "list", "--store", store, "--output", "json")
    assert code == 0 and [r["run_id"] for r in json.loads(listed)] == [out["run_id"]], err


# --------------------------------------------------------------------------- the call as one unit


def test_the_uses_steps_timeout_bounds_its_nested_run_and_is_retried(tmp_path: Path) -> None:
    """A `uses:` step's `timeout` stops the nested run (was ignored: a 30 s callee ran to the end)."""
    _write(tmp_path, "slow.yaml", SLOW)
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: bounded
steps:
  - step_id: top
    uses: ./slow.yaml
    timeout: 1s
    retry: {max_attempts: 2, delay: 10ms}
  - step_id: next
    depends_on: [top]
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
""",
    )
    t0 = time.monotonic()
    code, out, err = _run(wf, "--store", "memory://")
    assert code == 1, err
    assert time.monotonic() - t0 < 25  # not the callee's 30 s sleep (twice): generous, not a speed check
    top = out["steps"]["top"]
    assert top["status"] == "failed" and top["attempts"] == 2
    assert top["error"] == "uses ./slow.yaml: timed_out: the step's timeout (1s) expired"
    assert out["steps"]["top/nap"]["status"] == "cancelled"
    assert out["steps"]["top/after"]["status"] == "cancelled"
    # The callee's `finally` ran (in each attempt), as on its own `timeout`.
    assert out["steps"]["top/cleanup"]["status"] == "completed" and out["steps"]["top/cleanup"]["result"] == 42
    assert out["steps"]["next"]["status"] == "skipped"
    assert err.count("retry top (attempt 2)") == 1


def test_continue_on_error_retry_and_false_if_on_uses_steps(tmp_path: Path) -> None:
    """A failing callee retried whole, tolerated by `continue_on_error`; `if:` false leaves no inner step."""
    _write(
        tmp_path,
        "flaky.yaml",
        """name: flaky
inputs: {key: {type: string}}
steps:
  - step_id: fl
    assigned_agent_id: math
    tool_to_call: flaky
    tool_arguments: {key: "{{ inputs.key }}", fail_times: 5}
    retry: {max_attempts: 2, delay: 10ms}
  - step_id: never
    depends_on: [fl]
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
outputs: {r: "{{ steps.fl.result }}"}
""",
    )
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: tolerant
steps:
  - step_id: top
    uses: ./flaky.yaml
    with: {key: k1}
    retry: {max_attempts: 2, delay: 10ms}
    continue_on_error: true
  - step_id: skip_it
    uses: ./flaky.yaml
    with: {key: k2}
    if: "{{ false }}"
  - step_id: after
    depends_on: [top]
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: "{{ 1 if steps.top.status == 'failed' else 100 }}"}
outputs: {after: "{{ steps.after.result }}"}
""",
    )
    junit = tmp_path / "j.xml"
    code, out, err = _run(wf, "--store", "memory://", "--junit", junit)
    assert code == 0, err
    assert out["status"] == "completed" and out["outputs"] == {"after": 2}
    steps = out["steps"]
    # 2 attempts of the call x 2 attempts of the inner step: the 4th planned failure is the last seen.
    assert steps["top"]["attempts"] == 2 and steps["top/fl"]["attempts"] == 2
    assert "planned failure 4 of 5 for key 'k1'" in steps["top/fl"]["error"]
    assert steps["top"]["error"] == "uses ./flaky.yaml: failed: step(s) failed: top/fl"
    assert steps["top/never"]["status"] == "skipped"
    assert steps["skip_it"]["status"] == "skipped"
    assert not any(k.startswith("skip_it/") for k in steps)  # a call that never ran has no inner steps
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["top"].find("failure") is None  # tolerated
    assert cases["top/fl"].find("failure") is not None
    skipped = cases["top/never"].find("skipped")
    assert skipped is not None and "top/fl" in (skipped.get("message") or "")


def test_a_caller_timeout_with_an_inner_call_in_flight(tmp_path: Path) -> None:
    """The caller's `timeout` while the callee sleeps: timed_out, exit 4, the caller's `finally` ran."""
    _write(tmp_path, "slow.yaml", SLOW)
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: outer-timeout
timeout: 5s
steps:
  - step_id: top
    uses: ./slow.yaml
finally:
  - step_id: fin
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: "{{ 1 if run.status == 'timed_out' else 100 }}"}
""",
    )
    code, out, err = _run(wf, "--store", "memory://")
    assert code == 4, err
    assert out["status"] == "timed_out" and out["steps"]["top"]["status"] == "cancelled"
    assert out["steps"]["fin"]["result"] == 2


def test_a_caller_timeout_runs_the_callees_finally_and_ends_its_steps(tmp_path: Path) -> None:
    _write(tmp_path, "slow.yaml", SLOW)
    wf = _write(tmp_path, "w.yaml", AGENTS + "name: t\ntimeout: 2s\nsteps:\n  - step_id: top\n    uses: ./slow.yaml\n")
    code, out, err = _run(wf, "--store", "memory://")
    assert code == 4, err
    assert out["steps"]["top/nap"]["status"] == "cancelled"
    assert out["steps"]["top/cleanup"]["status"] == "completed"
    assert out["steps"]["top/after"]["status"] in ("cancelled", "skipped")


def test_cancel_from_another_process_while_an_inner_call_is_in_flight(tmp_path: Path) -> None:
    """`runner cancel ID` during `top/nap`: the run ends cancelled, exit 4, the caller's finally ran."""
    _write(tmp_path, "slow.yaml", SLOW)
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: cancelled
steps:
  - step_id: top
    uses: ./slow.yaml
finally:
  - step_id: fin
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: "{{ 1 if run.status == 'cancelled' else 100 }}"}
""",
    )
    store = f"sqlite:///{tmp_path}/s.db"
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE"}
    proc = subprocess.Popen(
        [str(RUNNER), "run", str(wf), "--store", store, "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        run_id = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            code, listed, _ = run_cli("runs", "list", "--store", store, "--output", "json")
            runs = json.loads(listed) if code == 0 and listed.strip() else []
            if runs:
                run_id = runs[0]["run_id"]
                _, shown, _ = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
                if json.loads(shown)["steps"].get("top/nap", {}).get("status") == "in_progress":
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the inner call never started")
        code, _, err = run_cli("cancel", run_id, "--store", store)
        assert code == 0, err
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 4, stderr
    assert_no_traceback(stderr)
    out = parse_json_stdout(stdout, stderr)
    assert out["status"] == "cancelled" and out["steps"]["top"]["status"] == "cancelled"
    assert out["steps"]["fin"]["result"] == 2
    # the nested run was cancelled the same way: its call cut, its own finally ran
    assert out["steps"]["top/nap"]["status"] == "cancelled"
    assert out["steps"]["top/after"]["status"] in ("cancelled", "skipped")
    assert out["steps"]["top/cleanup"]["status"] == "completed" and out["steps"]["top/cleanup"]["result"] == 42
    _, shown, _ = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
    assert json.loads(shown)["status"] == "cancelled"
    assert json.loads(shown)["steps"]["top/cleanup"]["status"] == "completed"


# --------------------------------------------------------------------------- durability


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_sigkill_inside_a_for_each_of_a_callee_then_resume(tmp_path: Path) -> None:
    """Killed while `outer/crew[1]/rec` sleeps (a `uses:` in a `for_each` inside a callee):
    resume re-sends only that call, with the same key; completed inner steps are not re-run."""
    ledger = tmp_path / "ledger.jsonl"
    _write(
        tmp_path,
        "rec.yaml",
        """name: rec
inputs: {tag: {type: string}, sleep: {type: number}}
steps:
  - step_id: rec
    tool_to_call: record
    tool_arguments: {key: "{{ inputs.tag }}", sleep_first: "{{ inputs.sleep }}", value: "{{ inputs.tag }}!"}
outputs: {said: "{{ steps.rec.result.value }}"}
""",
    )
    _write(
        tmp_path,
        "crew.yaml",
        """name: crew
steps:
  - step_id: plan
    tool_to_call: record
    tool_arguments: {key: plan, value: [p, q]}
  - step_id: crew
    depends_on: [plan]
    for_each: "{{ steps.plan.result.value }}"
    uses: ./rec.yaml
    with: {tag: "{{ item }}", sleep: "{{ 0 if index == 0 else 60 }}"}
outputs: {said: "{{ steps.crew.result | map(attribute='said') | list }}"}
""",
    )
    wf = _write(
        tmp_path,
        "w.yaml",
        f"""name: deep-fan
inputs: {{ledger: {{type: string}}}}
agents:
  - id: ledger
    command: python
    args: ["{REPO}/tests/agents/ledger_agent.py"]
    env: {{LEDGER_PATH: "{{{{ inputs.ledger }}}}"}}
steps:
  - step_id: outer
    uses: ./crew.yaml
outputs: {{said: "{{{{ steps.outer.result.said }}}}"}}
""",
    )
    store = f"sqlite:///{tmp_path}/s.db"
    proc = subprocess.Popen(
        [str(RUNNER), "run", str(wf), "-i", f"ledger={ledger}", "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(e["key"] == "q" for e in _ledger(ledger)):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert any(e["key"] == "q" for e in _ledger(ledger)), "the slow inner call never started"
        code, listed, _ = run_cli("runs", "list", "--store", store, "--output", "json")
        run_id = json.loads(listed)[0]["run_id"]
        _, shown, _ = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
        status = {k: v["status"] for k, v in json.loads(shown)["steps"].items()}
        assert status["outer/plan"] == "completed" and status["outer/crew[0]/rec"] == "completed", status
        assert status["outer/crew[1]/rec"] == "in_progress", status
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    code, stdout, err = run_cli("resume", run_id, "--store", store, "--output", "json", timeout=120)
    assert code == 0, err
    out = parse_json_stdout(stdout, err)
    assert out["outputs"] == {"said": ["p!", "q!"]}
    assert list(out["steps"]) == ["outer", "outer/plan", "outer/crew", "outer/crew[0]/rec", "outer/crew[1]/rec"]
    calls = Counter(e["key"] for e in _ledger(ledger))
    assert calls == {"plan": 1, "p": 1, "q": 2}, calls  # only the call in flight was sent again
    keys = [e["idempotency_key"] for e in _ledger(ledger) if e["key"] == "q"]
    assert keys == [f"{run_id}/outer@1/crew[1]@1:rec:1"] * 2


def test_retry_from_an_inner_step_is_refused_with_the_step_to_use(tmp_path: Path) -> None:
    """`runner retry ID --from top/fl`: exit 2, saying the nested run is retried whole (`--from top`)."""
    _write(
        tmp_path,
        "bad.yaml",
        """name: bad
steps:
  - step_id: fl
    assigned_agent_id: math
    tool_to_call: divide
    tool_arguments: {a: 1, b: 0}
""",
    )
    wf = _write(tmp_path, "w.yaml", AGENTS + "name: r\nsteps:\n  - step_id: top\n    uses: ./bad.yaml\n")
    store = f"sqlite:///{tmp_path}/s.db"
    code, out, err = _run(wf, "--store", store)
    assert code == 1, err
    for inner in ("top/fl", "top[0]/fl"):
        code, _, err = run_cli("retry", out["run_id"], "--from", inner, "--store", store)
        assert code == 2, err
        assert f"--from: '{inner}' is a step of the nested run of 'top', which is retried whole: use --from top" in err
        assert_no_traceback(err)
    code, _, err = run_cli("retry", out["run_id"], "--from", "nope", "--store", store)
    assert code == 2 and "--from: no step 'nope' in workflow r (steps: top)" in err


# --------------------------------------------------------------------------- agents, secrets


def test_agents_lists_declared_then_registry_and_leaks_no_secret(tmp_path: Path) -> None:
    """`agents`: the workflow's agents first, then --agents ones; no env, headers or secret in it or anywhere."""
    registry = _write(
        tmp_path,
        "reg.yaml",
        f"""agents:
  - id: extra
    role: helper
    capabilities: [x]
    description: from the registry
    command: python
    args: ["{REPO}/examples/agents/math_agent.py"]
    env: {{TOKEN: "{{{{ secrets.tok }}}}", PLAIN: plain-env-value}}
""",
    )
    _write(
        tmp_path,
        "echo.yaml",
        """name: echo
inputs: {v: {type: string}}
steps:
  - step_id: e
    assigned_agent_id: text
    tool_to_call: word_count
    tool_arguments: {text: "{{ inputs.v }}"}
outputs: {n: "{{ steps.e.result.words }}", raw: "{{ inputs.v }}"}
""",
    )
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: ag
steps:
  - step_id: s
    uses: ./echo.yaml
    with: {v: "key {{ secrets.tok }}"}
outputs: {o: "{{ steps.s.result }}", ag: "{{ agents }}"}
""",
    )
    events, junit = tmp_path / "ev.jsonl", tmp_path / "j.xml"
    store = f"sqlite:///{tmp_path}/s.db"
    code, out, err = _run(
        wf, "--agents", registry, "--store", store, "--events", events, "--junit", junit,
        env={"RUNNER_SECRET_tok": "sekrit-123"},
    )  # fmt: skip
    assert code == 0, err
    assert out["outputs"]["o"] == {"n": 2, "raw": "key ***"}  # the callee saw the secret; no face does
    assert out["outputs"]["ag"] == [
        {"id": "math", "name": "math", "role": "calc", "capabilities": ["arithmetic"], "description": None},
        {"id": "text", "name": "text", "role": "writer", "capabilities": ["text"], "description": None},
        {"id": "extra", "name": "extra", "role": "helper", "capabilities": ["x"], "description": "from the registry"},
    ]
    _, shown, _ = run_cli("runs", "show", out["run_id"], "--store", store, "--output", "json")
    for face in (json.dumps(out), events.read_text(), junit.read_text(), err, shown):
        assert "sekrit-123" not in face and "plain-env-value" not in face


# --------------------------------------------------------------------------- hostile renders


def test_a_megabyte_per_task_value_is_shortened_in_every_message(tmp_path: Path) -> None:
    """A 10 MB agent id or tool name from an item fails the item with a short message (was 10 MB x 5)."""
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: big
inputs: {big: {type: string}}
steps:
  - step_id: who
    for_each: "{{ [inputs.big] }}"
    assigned_agent_id: "{{ item }}"
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
  - step_id: what
    for_each: "{{ [inputs.big] }}"
    assigned_agent_id: math
    tool_to_call: "{{ item }}"
    tool_arguments: {a: 1, b: 1}
  - step_id: fixed
    assigned_agent_id: math
    tool_to_call: add
    tool_arguments: {a: 1, b: 1}
""",
    )
    inputs = _write(tmp_path, "in.yaml", "big: " + "z" * 10_000_000 + "\n")
    events = tmp_path / "ev.jsonl"
    code, out, err = _run(wf, "--inputs", inputs, "--store", "memory://", "--events", events)
    assert code == 1, err[:2000]
    who, what = out["steps"]["who"]["error"], out["steps"]["what"]["error"]
    assert who.startswith("step 'who' item 0: assigned_agent_id rendered to 'zzz") and "..." in who
    assert who.endswith("which is not an agent of this run (agents: math, text)")
    assert what.startswith("step 'what' item 0: tool_to_call rendered to 'zzz") and "..." in what
    assert what.endswith(
        "which agent 'math' does not offer ('math' offers: add, divide, flaky, multiply, sleep, stats, sum_list)"
    )
    assert out["steps"]["fixed"]["result"] == 2
    assert len(who) < 500 and len(what) < 500
    assert len(err) < 10_000
    assert events.stat().st_size < 10_100_000  # the input itself (run_started) once, not 3 copies more

    # Rendered before the run (an input-only tool name): exit 2, positioned, short too.
    wf2 = _write(
        tmp_path,
        "w2.yaml",
        AGENTS
        + """name: big2
inputs: {big: {type: string}}
steps:
  - step_id: t
    assigned_agent_id: math
    tool_to_call: "{{ inputs.big }}"
    tool_arguments: {a: 1, b: 1}
""",
    )
    inputs = _write(tmp_path, "in2.yaml", "big: " + "z" * 1_000_000 + "\n")
    code, _, err = run_cli("run", wf2, "--inputs", inputs, "--store", "memory://", timeout=120)
    assert code == 2 and len(err) < 2_000, err[:2000]
    where = _at(wf2, '"{{ inputs.big }}"')
    assert f"{where}: step 't': agent 'math' has no tool 'zzz" in err


def test_wrong_shapes_rendered_per_task_fail_their_item(tmp_path: Path) -> None:
    """None, a list, an int where an agent id or tool goes: that item fails, naming it and the value."""
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: shapes
steps:
  - step_id: none_id
    for_each: [0]
    assigned_agent_id: "{{ [none][index] }}"
    tool_to_call: add
    continue_on_error: true
  - step_id: list_id
    for_each: [0]
    assigned_agent_id: "{{ [['math']][index] }}"
    tool_to_call: add
    continue_on_error: true
  - step_id: int_tool
    for_each: [0, 1]
    assigned_agent_id: math
    tool_to_call: "{{ [7, 'add'][item] }}"
    tool_arguments: {a: "{{ item }}", b: 10}
    continue_on_error: true
  - step_id: caps
    for_each: [[arithmetic, text]]
    required_capabilities: "{{ item }}"
    tool_to_call: add
    continue_on_error: true
  - step_id: int_caps
    for_each: [3]
    required_capabilities: "{{ item }}"
    tool_to_call: add
    continue_on_error: true
  - step_id: fine
    for_each: [1, 2]
    assigned_agent_id: "{{ ['math', 'text'][index] if index == 0 else 'math' }}"
    tool_to_call: add
    tool_arguments: {a: "{{ item }}", b: 10}
""",
    )
    code, out, err = _run(wf, "--store", "memory://")
    assert code == 0, err  # every failure is tolerated
    steps = out["steps"]
    assert (
        steps["none_id"]["error"]
        == "step 'none_id' item 0: assigned_agent_id rendered to None: must be a non-empty string"
    )
    assert steps["list_id"]["error"] == (
        "step 'list_id' item 0: assigned_agent_id rendered to ['math']: must be a non-empty string"
    )
    assert (
        steps["int_tool"]["error"] == "step 'int_tool' item 0: tool_to_call rendered to 7: must be a non-empty string"
    )
    assert steps["caps"]["error"].startswith(
        "step 'caps' item 0: required_capabilities rendered to ['arithmetic', 'text']"
    ), steps["caps"]["error"]
    assert steps["int_caps"]["error"] == (
        "step 'int_caps' item 0: required_capabilities rendered to [3]: must be a list of non-empty strings"
    )
    assert steps["fine"]["status"] == "completed" and steps["fine"]["result"] == [11, 12]


def test_validation_positions_for_nested_and_per_task_names(tmp_path: Path) -> None:
    """`item`/`previous` out of place, in a `with:` and inside an inline callee: exit 2, file:line:col."""
    _write(tmp_path, "leaf.yaml", LEAF)
    wf = _write(
        tmp_path,
        "w.yaml",
        AGENTS
        + """name: v
steps:
  - step_id: a
    uses: ./leaf.yaml
    with: {t: "{{ previous }}"}
  - step_id: b
    assigned_agent_id: "{{ item }}"
    tool_to_call: add
  - step_id: c
    for_each: [1, 2]
    uses: ./leaf.yaml
    with: {t: "{{ previous }}"}
  - step_id: d
    workflow:
      steps:
        - {step_id: q, assigned_agent_id: "{{ index }}", tool_to_call: add}
""",
    )
    code, out, err = run_cli("validate", wf)
    assert code == 2, err
    assert_no_traceback(err)
    text = out + err
    prev = _at(wf, '"{{ previous }}"')
    assert (
        f"{prev}: 'previous' is only defined in a step with for_each (used outside for_each) [$.steps[0].with.t]"
        in text
    )
    item, index = _at(wf, '"{{ item }}"'), _at(wf, '"{{ index }}"')
    assert f"{item}: 'item' is only defined in a step with for_each" in text
    line = int(prev.split(":")[-2])
    later = next(i for i, x in enumerate(wf.read_text().splitlines(), 1) if i > line and "{{ previous }}" in x)
    assert f"{wf}:{later}:" in text and "needs max_parallel: 1" in text and "[$.steps[2].with.t]" in text
    assert f"{index}: 'index' is only defined" in text
    assert "[$.steps[3].workflow.steps[0].assigned_agent_id]" in text


def test_deep_validation_checks_the_tools_a_callee_names(tmp_path: Path) -> None:
    _write(tmp_path, "callee.yaml", "name: c\nsteps:\n  - {step_id: x, assigned_agent_id: math, tool_to_call: shout}\n")
    wf = _write(tmp_path, "w.yaml", AGENTS + "name: d\nsteps:\n  - step_id: top\n    uses: ./callee.yaml\n")
    code, out, err = run_cli("validate", "--deep", wf)
    assert code == 2 and "no tool 'shout'" in out + err


def test_validate_reports_a_cycle_between_files(tmp_path: Path) -> None:
    """`a.yaml` uses `b.yaml` uses `a.yaml`: exit 2, placed on the call that closes the cycle."""
    a = _write(tmp_path, "a.yaml", AGENTS + "name: a\nsteps:\n  - step_id: b\n    uses: ./b.yaml\n")
    b = _write(tmp_path, "b.yaml", AGENTS + "name: b\nsteps:\n  - step_id: a\n    uses: ./a.yaml\n")
    code, out, err = run_cli("validate", a)
    assert code == 2, err
    assert_no_traceback(err)
    assert f"{_at(b, './a.yaml')}: step 'a': uses: recursion (a.yaml -> b.yaml -> a.yaml) [$.steps[0].uses]" in err


def test_validate_reports_a_callee_that_run_refuses(tmp_path: Path) -> None:
    """A callee needing a role none of the caller's agents has: `run` exits 2 at load, and `validate` says so too."""
    _write(tmp_path, "bad.yaml", "name: bad\nsteps:\n  - {step_id: x, assigned_role: nobody, tool_to_call: add}\n")
    c = _write(tmp_path, "c.yaml", AGENTS + "name: c\nsteps:\n  - step_id: y\n    uses: ./bad.yaml\n")
    code, out, err = run_cli("validate", c)
    assert code == 2 and "bad.yaml:3:" in err and "nobody" in err, err
    code, _, err = run_cli("run", c, "--store", "memory://")
    assert code == 2 and "nobody" in err, err  # what validate says is what run refuses
