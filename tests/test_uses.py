"""``uses:``: a step that runs another workflow (nested run on the same agents)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(Path(sys.executable).parent / "runner")


def test_uses_runs_the_callee_with_its_inputs_and_returns_its_outputs(tmp_path: Path) -> None:
    events = tmp_path / "ev.jsonl"
    p = subprocess.run(
        [
            RUNNER,
            "run",
            str(ROOT / "tests/fixtures/uses/main.yaml"),
            "--store",
            "memory://",
            "--output",
            "json",
            "--events",
            str(events),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["outputs"] == {"team": {"shout": "HELLO THERE AGAIN", "words": 3}, "words": 3}
    assert out["steps"]["team"]["status"] == "completed"
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    inner = {(e["type"], e.get("step_id")) for e in lines}
    assert ("step_completed", "team.up") in inner and ("step_completed", "team.count") in inner
    assert all(e["run_id"] == out["run_id"] for e in lines)
