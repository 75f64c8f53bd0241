"""`runner validate` follows calls across files: what `runner run` would refuse at load time
(a `uses:` chain that comes back to itself, a pull step inside a called workflow) is a
validation error on the calling file's `uses:`/`workflow:` key, exit 2, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNNER = [sys.executable, "-m", "runner"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_recursion_between_files_is_a_validation_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  - step_id: x\n    uses: ./b.yaml\n")
    (tmp_path / "b.yaml").write_text(
        "name: b\nsteps:\n  - step_id: y\n    workflow:\n      steps:\n        - {step_id: z, uses: ./a.yaml}\n"
    )
    for cmd in (["validate", "a.yaml"], ["run", "a.yaml", "--store", "memory://"]):
        p = cli(*cmd, cwd=tmp_path)
        assert p.returncode == 2, (cmd, p.stderr)
        # placed where the loop closes: the call written in b.yaml's inline body
        assert "b.yaml:6:30: step 'z': uses: recursion (a.yaml -> b.yaml -> a.yaml)" in p.stderr, (cmd, p.stderr)
        assert "Traceback" not in p.stderr


def test_a_pull_step_inside_a_called_workflow_is_refused_before_it_could_hang(tmp_path: Path) -> None:
    (tmp_path / "callee.yaml").write_text("name: callee\nsteps:\n  - {step_id: review, assigned_agent_id: text}\n")
    (tmp_path / "main.yaml").write_text(
        "name: caller\n"
        "agents:\n  - {id: text, transport: stdio, command: python, args: [x.py]}\n"
        "steps:\n"
        "  - step_id: team\n    uses: ./callee.yaml\n"
        "  - step_id: inl\n    workflow:\n      steps:\n        - {step_id: wait, assigned_agent_id: text}\n"
    )
    p = cli("validate", "main.yaml", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "main.yaml:6:11: step 'team': the called workflow has pull step(s) 'review'" in p.stderr
    assert "main.yaml:9:7: step 'inl': the called workflow has pull step(s) 'wait'" in p.stderr
    assert "pull steps belong in the top-level workflow" in p.stderr
    # A pull step at the top level of the same agents is fine.
    (tmp_path / "top.yaml").write_text(
        "name: top\nagents:\n  - {id: text, transport: stdio, command: python, args: [x.py]}\n"
        "steps:\n  - {step_id: review, assigned_agent_id: text}\n"
    )
    assert cli("validate", "top.yaml", cwd=tmp_path).returncode == 0


def test_a_file_called_from_many_places_is_followed_once(tmp_path: Path) -> None:
    """25 files, each calling the next twice: 2**25 paths, one visit per file."""
    n = 25
    for i in range(n):
        steps = (
            f"  - {{step_id: a, uses: ./f{i + 1}.yaml}}\n  - {{step_id: b, uses: ./f{i + 1}.yaml}}\n"
            if i + 1 < n
            else "  - {step_id: last, assigned_agent_id: x, tool_to_call: t}\n"
        )
        agents = "agents:\n  - {id: x, transport: stdio, command: python, args: [x.py]}\n" if i == 0 else ""
        (tmp_path / f"f{i}.yaml").write_text(f"name: f{i}\n{agents}steps:\n{steps}")
    p = cli("validate", "f0.yaml", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
