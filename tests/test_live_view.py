"""The live view on a terminal. Ids: ``cli:live-total``, ``cli:live-fan``, ``cli:live-width``.

``runner run`` writes its progress to stderr; here stderr is a real pseudo-terminal, so
the TTY view (colours, the status line redrawn in place) is what is checked: the step
count is known from the first status line, a ``for_each`` step shows its finished items,
and a long error is cut to the terminal's width (``runs show`` keeps the full text).
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

from tests.conftest import REPO, RUNNER, run_cli

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

WORKFLOW = f"""name: live
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
  - step_id: fan
    for_each: [1, 2, 3, 4, 5]
    tool_to_call: add
    tool_arguments: {{a: "{{{{ item }}}}", b: 1}}
    depends_on: a
  - step_id: bad
    tool_to_call: divide
    tool_arguments: {{a: 1, b: 0}}
    depends_on: fan
    continue_on_error: true
"""


def _run_on_a_tty(tmp_path: Path, columns: int) -> tuple[int, list[str]]:
    """Run with stderr on a pseudo-terminal; the screen's lines, split at newlines and redraws."""
    wf = tmp_path / "w.yaml"
    wf.write_text(WORKFLOW, encoding="utf-8")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_STORE"}
    env.update(COLUMNS=str(columns), LINES="24")
    proc = subprocess.Popen(
        [str(RUNNER), "run", "--store", f"sqlite:///{tmp_path}/s.db", str(wf)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=60)
    text = b"".join(chunks).decode("utf-8", "replace")
    screens = [_ANSI.sub("", part) for part in re.split(r"\r\n|\n|\r", text)]
    return code, [s for s in screens if s.strip()]


def test_live_view_total_fan_and_width(tmp_path: Path) -> None:
    """cli:live-total, cli:live-fan, cli:live-width"""
    code, lines = _run_on_a_tty(tmp_path, columns=40)
    assert code == 0, lines
    status = [s for s in lines if s.lstrip().startswith("[")]
    assert status and status[0].lstrip().startswith("[0/3 done, 0 failed]"), status
    assert not any("/?" in s for s in status), status
    assert any(re.search(r"fan fan [1-5] done", s) for s in status), status
    assert all(len(s) <= 39 for s in lines), [s for s in lines if len(s) > 39]
    fail = [s for s in lines if " bad " in s and "✗" in s]
    assert fail and fail[0].endswith("…"), lines
    store = f"sqlite:///{tmp_path}/s.db"
    code, out, err = run_cli("runs", "list", "--store", store, "--output", "json")
    run_id = json.loads(out)[0]["run_id"]
    code, out, err = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
    assert "division by zero" in json.loads(out)["steps"]["bad"]["error"], out
