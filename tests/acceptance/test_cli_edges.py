"""Edges of the CLI a demanding user meets: each gives a clear message, the right exit code,
and keeps what already happened (SPEC §4, §8).

Agents are real: ``tests/agents/counter_agent.py`` over stdio, small Python scripts that
misbehave on stdout, and a TCP socket that accepts but never answers (a hung server).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import REPO, RUNNER, assert_no_traceback, parse_json_stdout, run_cli

COUNTER = REPO / "tests" / "agents" / "counter_agent.py"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _counter_workflow(tmp_path: Path, steps: str, extra: str = "") -> Path:
    header = textwrap.dedent(
        f"""\
        name: edges
        {extra}
        agents:
          - {{id: counter, transport: stdio, command: python, args: ["{COUNTER}"]}}
        steps:
        """
    )
    path = tmp_path / "wf.yaml"
    path.write_text(header + textwrap.dedent(steps), encoding="utf-8")
    return path


def _store(tmp_path: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path}/r.db"]


def _signal_when_slow_runs(args: list[str], events: Path, sig: int, cwd: Path) -> tuple[int, str, str]:
    """Start ``runner ARGS`` (it must write ``--events`` to ``events``), send ``sig`` once the
    step ``slow`` is in flight, and return (returncode, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE"}
    proc = subprocess.Popen(
        [str(RUNNER), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # bounded: until the slow step is in flight
            if events.exists() and '"step_id": "slow"' in events.read_text(encoding="utf-8"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the slow step never started")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_warnings_do_not_block_a_run(tmp_path: Path) -> None:
    """A file `runner validate` accepts (warnings only) must also run."""
    wf = _counter_workflow(
        tmp_path,
        """\
        - step_id: a
          if: "false"
          tool_to_call: echo
          tool_arguments: {text: a}
        - step_id: b
          max_parallel: 2
          tool_to_call: echo
          tool_arguments: {text: b}
        """,
    )
    rc, _out, err = run_cli("validate", wf, cwd=tmp_path)
    assert rc == 0 and "warning" in err, err
    rc, out, err = run_cli("run", wf, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert rc == 0, err
    assert "warning" in err  # shown, not fatal
    data = parse_json_stdout(out, err)
    assert data["steps"]["b"]["result"] == "b"


def _noisy_agent(tmp_path: Path, then_serve: bool) -> Path:
    """A Python MCP server that prints a banner on stdout first (a common agent bug)."""
    body = "server.run()" if then_serve else "sys.exit(0)"
    return _write(
        tmp_path / "noisy.py",
        f"""\
        import sys
        from mcp.server import MCPServer
        server = MCPServer("noisy", log_level="WARNING")

        @server.tool()
        async def echo(text: str) -> str:
            return text

        print("Welcome to noisy agent v1!", flush=True)
        {body}
        """,
    )


@pytest.mark.parametrize("then_serve", [True, False], ids=["banner-then-serve", "banner-then-exit"])
def test_agent_writing_non_mcp_text_on_stdout(tmp_path: Path, then_serve: bool) -> None:
    agent = _noisy_agent(tmp_path, then_serve)
    wf = _write(
        tmp_path / "wf.yaml",
        f"""\
        name: noisy
        agents:
          - {{id: noisy, transport: stdio, command: python, args: ["{agent}"]}}
        steps:
          - {{step_id: a, tool_to_call: echo, tool_arguments: {{text: hi}}}}
        """,
    )
    rc, _out, err = run_cli("run", wf, *_store(tmp_path), cwd=tmp_path)
    assert_no_traceback(err)
    assert "Failed to parse JSONRPC" not in err
    if then_serve:
        assert rc == 0, err
    else:
        assert rc == 3, err
        assert "agent 'noisy'" in err and "non-MCP text on stdout" in err and "Welcome to noisy" in err


@pytest.mark.parametrize("option", ["--junit", "--events"])
def test_unwritable_report_path_is_exit_2_before_the_run(tmp_path: Path, option: str) -> None:
    wf = _counter_workflow(tmp_path, "- {step_id: a, tool_to_call: count}\n")
    rc, out, err = run_cli("run", wf, option, tmp_path / "no" / "such" / "dir" / "f", *_store(tmp_path), cwd=tmp_path)
    assert rc == 2, err
    assert_no_traceback(err)
    assert option in err and "does not exist" in err
    rc, out, err = run_cli("runs", "list", "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert rc == 0 and json.loads(out) == []  # nothing ran, nothing stored


def test_junit_shows_a_run_that_failed_before_any_step(tmp_path: Path) -> None:
    wf = _write(
        tmp_path / "wf.yaml",
        """\
        name: dead
        agents:
          - {id: ghost, transport: stdio, command: /nonexistent/agent-binary}
        steps:
          - {step_id: a, tool_to_call: echo, tool_arguments: {text: hi}}
        """,
    )
    junit = tmp_path / "j.xml"
    rc, _out, err = run_cli("run", wf, "--junit", junit, *_store(tmp_path), cwd=tmp_path)
    assert rc == 3, err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    [error] = suite.iter("error")
    assert "ghost" in (error.get("message") or "")


def test_run_timeout_bounds_agent_start_up(tmp_path: Path) -> None:
    """An HTTP agent that accepts but never answers must not hold a `timeout: 2s` run for 30 s."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        port = hole.getsockname()[1]
        wf = _write(
            tmp_path / "wf.yaml",
            f"""\
            name: hung
            timeout: 2s
            agents:
              - {{id: hung, transport: http, url: "http://127.0.0.1:{port}/mcp"}}
            steps:
              - {{step_id: a, tool_to_call: echo, tool_arguments: {{text: hi}}}}
            """,
        )
        t0 = time.monotonic()
        rc, _out, err = run_cli("run", wf, *_store(tmp_path), cwd=tmp_path, timeout=40)
        took = time.monotonic() - t0
    assert rc == 3, err
    assert "agent 'hung'" in err and "within 2s" in err
    assert took < 20, f"the run took {took:.1f}s"


def test_directory_and_missing_path_are_named(tmp_path: Path) -> None:
    rc, _out, err = run_cli("run", tmp_path, *_store(tmp_path), cwd=tmp_path)
    assert rc == 2 and "is a directory" in err, err
    rc, _out, err = run_cli("run", "no-such-workflow", *_store(tmp_path), cwd=tmp_path)
    assert rc == 2 and "cannot read workflow file" in err and "no-such-workflow" in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _out, err = run_cli("validate", empty, cwd=tmp_path)
    assert rc == 2 and "no workflow files" in err, err


def test_agents_check_renders_templated_agent_settings(tmp_path: Path) -> None:
    wf = _write(
        tmp_path / "wf.yaml",
        """\
        name: templated
        inputs:
          script: {type: string}
        agents:
          - {id: counter, transport: stdio, command: python, args: ["{{ inputs.script }}"]}
        steps:
          - {step_id: a, tool_to_call: count}
        """,
    )
    rc, out, err = run_cli("agents", "check", wf, cwd=tmp_path)
    assert rc == 1 and "inputs.script" in out and "-i NAME=VALUE" in out, out + err
    rc, out, err = run_cli("agents", "check", wf, "-i", f"script={COUNTER}", cwd=tmp_path)
    assert rc == 0 and out.startswith("ok    counter:") and "count" in out, out + err


def test_booleans_print_as_json_inside_text(tmp_path: Path) -> None:
    wf = _counter_workflow(
        tmp_path,
        """\
        - step_id: a
          tool_to_call: echo
          tool_arguments: {text: "flag={{ inputs.flag }} none={{ inputs.nothing }}"}
        """,
        extra="inputs: {flag: {type: boolean, default: true}, nothing: {type: 'null', default: null}}",
    )
    rc, out, err = run_cli("run", wf, "--output", "json", *_store(tmp_path), cwd=tmp_path)
    assert rc == 0, err
    assert parse_json_stdout(out, err)["steps"]["a"]["result"] == "flag=true none="


def test_ctrl_c_still_reports_what_finished(tmp_path: Path) -> None:
    """Exit 130, the run resumable, and --output json / --junit still hold the finished step."""
    wf = _counter_workflow(
        tmp_path,
        """\
        - {step_id: quick, tool_to_call: echo, tool_arguments: {text: done}}
        - {step_id: slow, depends_on: [quick], tool_to_call: slow, tool_arguments: {seconds: 30, steps: 30}}
        """,
    )
    junit, events = tmp_path / "j.xml", tmp_path / "e.jsonl"
    args = ["run", str(wf), "--output", "json", "--junit", str(junit), "--events", str(events), *_store(tmp_path)]
    rc, out, err = _signal_when_slow_runs(args, events, signal.SIGINT, tmp_path)
    assert rc == 130, err
    assert_no_traceback(err)
    assert "runner resume" in err
    data = parse_json_stdout(out, err)
    assert data["status"] == "interrupted"
    assert data["steps"]["quick"] == {**data["steps"]["quick"], "status": "completed", "result": "done"}
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"


def test_sigterm_leaves_the_run_interrupted_and_resumable(tmp_path: Path) -> None:
    """What a cancelled CI job sends: handled like Ctrl-C (exit 130), the run can be resumed."""
    wf = _counter_workflow(
        tmp_path,
        """\
        - {step_id: quick, tool_to_call: echo, tool_arguments: {text: done}}
        - {step_id: slow, depends_on: [quick], tool_to_call: slow, tool_arguments: {seconds: 30, steps: 30}}
        """,
    )
    events = tmp_path / "e.jsonl"
    args = ["run", str(wf), "--events", str(events), *_store(tmp_path)]
    rc, _out, err = _signal_when_slow_runs(args, events, signal.SIGTERM, tmp_path)
    assert rc == 130, err
    assert_no_traceback(err)
    rc, out, err = run_cli("runs", "list", "--output", "json", *_store(tmp_path), cwd=tmp_path)
    [run] = json.loads(out)
    assert run["status"] == "interrupted"
