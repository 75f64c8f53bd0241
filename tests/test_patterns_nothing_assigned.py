"""hierarchical with no lead able to take any team task fails at `teams`, saying why.

Before, `teams` was a completed fan-out over 0 items and the top merge failed late with
"results must not be empty". Now `teams` fails before any team starts, naming the team
tasks and the reason, and the run's error names that step. (hub-and-spoke's own case, no
worker for any subtask, is in tests/test_patterns_audit.py.) The real CLI, the example
coordinator agent over stdio for the coordinator and the lead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, assert_no_traceback, parse_json_stdout, run_cli

COORDINATOR = str(REPO / "examples" / "agents" / "coordinator_agent.py")


def test_hierarchical_with_no_capable_lead_fails_at_teams_naming_the_team_tasks(tmp_path: Path) -> None:
    agents = [
        {"id": "boss", "transport": "stdio", "command": sys.executable, "args": [COORDINATOR]},
        {
            "id": "lead",
            "capabilities": ["billing"],
            "transport": "stdio",
            "command": sys.executable,
            "args": [COORDINATOR],
        },
    ]
    task = "- Review the storage notes. [capabilities: storage]\n- Review the network notes. [capabilities: network]"
    wf = tmp_path / "h.yaml"
    wf.write_text(
        yaml.safe_dump(
            {
                "name": "no-lead",
                "agents": agents,
                "steps": [
                    {
                        "step_id": "org",
                        "uses": "hierarchical",
                        "with": {"task": task, "coordinator": "boss", "leads": ["lead"]},
                    }
                ],
            },
            sort_keys=False,
        )
    )
    code, out, err = run_cli("run", wf, "--store", "memory://", "--output", "json", "-q", cwd=tmp_path, timeout=120)
    assert_no_traceback(err)
    data = parse_json_stdout(out, err)
    assert code == 1 and data["status"] == "failed", err
    s = data["steps"]
    assert [u["subtask_id"] for u in s["org/assign"]["result"]["unassigned"]] == ["subtask-1", "subtask-2"]
    teams = s["org/teams"]
    assert teams["status"] == "failed" and teams["attempts"] == 0
    assert (
        "no team task was assigned: no lead can take subtask-1, subtask-2 "
        "(no agent with capabilities [storage]; no agent with capabilities [network])" in teams["error"]
    ), teams["error"]
    assert s["org/merge"]["status"] == "skipped"
    assert err.splitlines()[-1] == "run failed: step(s) failed: org/teams", err
