"""The live view on a terminal. Ids: ``cli:live-total``, ``cli:live-fan``, ``cli:live-width``.

``runner run`` writes its progress to stderr; here stderr is a real pseudo-terminal, so
the TTY view (colours, the status line redrawn in place) is what is checked: the step
count is known from the first status line, a ``for_each`` step shows its finished items
out of its item count (``fan 3/5``: the engine puts ``of`` on the fan-out's events), and a
long error is cut to the terminal's width (``runs show`` keeps the full text).
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

from runner.cli.progress import Progress
from runner.model import events as ev
from runner.model.events import Event
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
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [str(RUNNER), "run", "--store", f"sqlite:///{tmp_path}/s.db", "--events", str(events), str(wf)],
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
    fans = [m.group(1) for s in status if (m := re.search(r"fan fan (\S+)", s))]
    assert fans and all(re.fullmatch(r"[0-5]/5", f) for f in fans), status  # never "3 done": the total is known
    assert "5/5" in fans or "4/5" in fans, status  # it counts up as items finish
    assert fans == sorted(fans), status
    evs = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    started = [e for e in evs if e["type"] == "step_started" and e["step_id"] == "fan"]
    assert started and started[0]["of"] == 5, started
    assert all(e["of"] == 5 for e in evs if e["type"] == "item_completed"), evs
    assert not any("of" in e for e in evs if e["type"] == "step_started" and e["step_id"] != "fan"), evs
    assert all(len(s) <= 39 for s in lines), [s for s in lines if len(s) > 39]
    fail = [s for s in lines if " bad " in s and "✗" in s]
    assert fail and fail[0].endswith("…"), lines
    store = f"sqlite:///{tmp_path}/s.db"
    code, out, err = run_cli("runs", "list", "--store", store, "--output", "json")
    run_id = json.loads(out)[0]["run_id"]
    code, out, err = run_cli("runs", "show", run_id, "--store", store, "--output", "json")
    assert "division by zero" in json.loads(out)["steps"]["bad"]["error"], out


def test_live_view_fan_without_a_total() -> None:
    """cli:live-fan: events that do not say how many items (an older runner's) show ``fan N done``."""
    out = io.StringIO()
    view = Progress(out, tty=True, total=1, width=80)
    view(Event(type=ev.STEP_STARTED, run_id="r", step_id="fan"))
    for i in range(3):
        view(Event(type=ev.ITEM_COMPLETED, run_id="r", step_id="fan", data={"index": i}))
    assert "fan fan 3 done" in _ANSI.sub("", out.getvalue()), out.getvalue()


def test_live_view_resumed_fan_counts_earlier_items() -> None:
    """cli:live-fan: a resumed fan-out's step_started says how many items an earlier session finished."""
    out = io.StringIO()
    view = Progress(out, tty=True, total=1, width=80)
    view(Event(type=ev.STEP_STARTED, run_id="r", step_id="fan", data={"of": 10, "done": 6}))
    screen = _ANSI.sub("", out.getvalue())
    assert "fan fan 6/10" in screen, screen
    view(Event(type=ev.ITEM_COMPLETED, run_id="r", step_id="fan", data={"index": 7, "of": 10}))
    screen = _ANSI.sub("", out.getvalue())
    assert "fan fan 7/10" in screen, screen
    view(Event(type=ev.STEP_COMPLETED, run_id="r", step_id="fan"))
    view(Event(type=ev.STEP_STARTED, run_id="r", step_id="fan2"))
    view(Event(type=ev.ITEM_COMPLETED, run_id="r", step_id="fan2", data={"index": 0}))
    assert "fan2 fan 1 done" in _ANSI.sub("", out.getvalue())  # the first fan-out's total is forgotten
