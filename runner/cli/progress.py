"""What a run shows while it runs (stderr) and leaves behind (events file, JUnit).

Non-TTY (CI logs): one compact line per step event. TTY: the same lines in colour, cut to
the terminal's width (the full text is in ``runs show``), plus a status line redrawn in
place at the bottom: ``[2/7 done, 0 failed]`` from the start (the workflow's step count is
known before anything runs) and, for a running ``for_each`` step, how many of its items
have finished out of how many it has (``fan 3/10``; ``fan 3 done`` if the engine did not
say how many, as an older run's events do not). The steps of a nested run (``uses:``) show
as ``team/decompose`` (``teams[2]/decompose`` for a ``for_each`` item); the status line
counts the workflow's own steps and names the inner ones running.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

from runner.model import events as ev
from runner.model.events import Event

_SYM = {
    ev.STEP_STARTED: ("→", "start", "36"),
    ev.STEP_COMPLETED: ("✓", "ok", "32"),
    ev.STEP_FAILED: ("✗", "FAIL", "31"),
    ev.STEP_RETRYING: ("↻", "retry", "33"),
    ev.STEP_SKIPPED: ("-", "skip", "90"),
    ev.STEP_CANCELLED: ("⊘", "cancel", "90"),
    ev.ITEM_FAILED: ("✗", "item-fail", "31"),
}


def _one_line(text: str) -> str:
    """One event, one line: an agent's multi-line error must not break the log's shape."""
    return " ⏎ ".join(part.strip() for part in text.splitlines() if part.strip())


class Progress:
    """An event sink that prints progress to a stream (stderr)."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        verbose: int = 0,
        tty: bool | None = None,
        total: int = 0,
        width: int | None = None,
    ) -> None:
        self.out = stream or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.verbose = verbose
        self.t0 = time.perf_counter()
        self.total = total
        self.width = width  # None: the terminal's, asked at each line (it may be resized)
        self.items_done: dict[str, int] = {}
        self.items_of: dict[str, int] = {}  # a running fan-out's item count ("of" on its events)
        self.done = 0
        self.failed = 0
        self.running: set[str] = set()
        self._status_shown = False

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self.t0:7.2f}s"

    def _cols(self) -> int:
        return self.width if self.width is not None else shutil.get_terminal_size((80, 24)).columns

    def _fit(self, text: str) -> str:
        """On a TTY, one screen line: a wrapped line would break the redrawn status line."""
        cols = max(self._cols() - 1, 10)
        return text if len(text) <= cols else text[: cols - 1] + "…"

    def _line(self, text: str, color: str | None = None) -> None:
        text = _one_line(text)
        if self.tty:
            text = self._fit(text)
        if self.tty and self._status_shown:
            self.out.write("\r\x1b[2K")
        if self.tty and color:
            text = f"\x1b[{color}m{text}\x1b[0m"
        self.out.write(text + "\n")
        if self.tty:
            self._status()
        self.out.flush()

    def _status(self) -> None:
        shown = [self._fan(s) if s in self.items_done else s for s in sorted(self.running)[:4]]
        run = ", ".join(shown) + (" …" if len(self.running) > 4 else "")
        text = self._fit(f"  [{self.done}/{self.total or '?'} done, {self.failed} failed] {run}".rstrip())
        self.out.write(f"\x1b[2m{text}\x1b[0m")
        self._status_shown = True

    def _fan(self, sid: str) -> str:
        of = self.items_of.get(sid)
        return f"{sid} fan {self.items_done[sid]}/{of}" if of is not None else f"{sid} fan {self.items_done[sid]} done"

    def _redraw(self) -> None:
        if self._status_shown:
            self.out.write("\r\x1b[2K")
        self._status()
        self.out.flush()

    def __call__(self, e: Event) -> None:
        t = e.type
        if t in (ev.RUN_STARTED, ev.RUN_RESUMED):
            verb = "resuming" if t == ev.RUN_RESUMED else "running"
            self._line(f"{verb} {e.data.get('workflow', '')} (run {e.run_id})", "1")
            return
        if t in ev.RUN_TERMINAL or t == ev.RUN_INTERRUPTED:
            if self.tty and self._status_shown:
                self.out.write("\r\x1b[2K")
                self._status_shown = False
            status = ev.RUN_TERMINAL.get(t, "interrupted")
            msg = f"run {status} in {time.perf_counter() - self.t0:.2f}s"
            if e.error and not e.data.get("raised"):  # a raised error is printed once, by main()
                msg += ": " + _one_line(e.error)
            color = "32" if status == "completed" else "31"
            self.out.write((f"\x1b[1;{color}m{msg}\x1b[0m" if self.tty else msg) + "\n")
            self.out.flush()
            return
        if t == "agent_unavailable":
            self._line(f"{self._elapsed()} warning: {_one_line(e.error or '')}; its steps go to other agents", "33")
            return
        if t == ev.STEP_ASSIGNED:
            who = f" to {e.agent_id}" if e.agent_id else ""
            self._line(
                f"{self._elapsed()} wait  {e.step_id} (assigned{who}; `runner steps complete {e.run_id} {e.step_id} --agent {e.agent_id or 'A'}`)",
                "2",
            )
            return
        if t == ev.STEP_PROGRESS:
            p, total, m = e.data.get("progress"), e.data.get("total"), e.data.get("message")
            frac = f"{p:g}/{total:g}" if total else f"{p:g}"
            self._line(f"{self._elapsed()} … {e.step_id} progress {frac}" + (f" {m}" if m else ""), "2")
            return
        if t == ev.ITEM_STARTED or t == ev.ITEM_COMPLETED:
            if t == ev.ITEM_COMPLETED and e.step_id:
                self.items_done[e.step_id] = self.items_done.get(e.step_id, 0) + 1
                if isinstance(e.data.get("of"), int):
                    self.items_of[e.step_id] = e.data["of"]
                if self.tty and not self.verbose:
                    self._redraw()
            if self.verbose:
                self._line(f"{self._elapsed()}   {e.step_id}[{e.data.get('index')}] {t.split('_')[1]}", "2")
            return
        sym = _SYM.get(t)
        if sym is None:
            if self.verbose:
                self._line(f"{self._elapsed()} {t} {e.step_id or ''} {e.error or ''}".rstrip())
            return
        if t == ev.STEP_STARTED:
            self.running.add(e.step_id or "")
            if isinstance(e.data.get("of"), int) and e.step_id:  # a fan-out: its items count from here
                self.items_of[e.step_id] = e.data["of"]
                self.items_done[e.step_id] = e.data.get("done", 0)
        elif t in (ev.STEP_COMPLETED, ev.STEP_FAILED, ev.STEP_SKIPPED, ev.STEP_CANCELLED):
            self.running.discard(e.step_id or "")
            self.items_done.pop(e.step_id or "", None)
            self.items_of.pop(e.step_id or "", None)
            if "/" not in (e.step_id or ""):  # the count is of the workflow's own steps; a nested
                self.done += 1  # run's (`team/decompose`) are lines under their `uses:` step
                if t == ev.STEP_FAILED:
                    self.failed += 1
        mark = sym[0] if self.tty else sym[1]
        parts = [self._elapsed(), f"{mark:<5}" if not self.tty else mark, e.step_id or ""]
        if e.agent_id and t == ev.STEP_STARTED:
            parts.append(f"on {e.agent_id}")
        if e.attempt and e.attempt > 1:
            parts.append(f"(attempt {e.attempt})")
        if t == ev.STEP_COMPLETED and e.data.get("duration_ms") is not None:
            parts.append(f"{e.data['duration_ms']:.1f} ms")
        if t == ev.STEP_RETRYING and e.data.get("delay_s"):
            parts.append(f"in {e.data['delay_s']}s")
        if e.error:
            parts.append(f"— {e.error}")
        elif t == ev.STEP_SKIPPED and e.data.get("reason"):
            parts.append(f"— {e.data['reason']}")
        self._line(" ".join(parts), sym[2])


def progress_event(step_id: str, progress: float, total: float | None, message: str | None) -> dict[str, Any]:
    return {"progress": progress, "total": total, "message": message}


class EventsFile:
    """``--events F``: one JSON object per line, flushed as it happens (tail -f friendly)."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, e: Event) -> None:
        self.f.write(json.dumps(e.to_json(), default=str) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


_NOT_RUN = ("skipped", "pending", "in_progress")  # in_progress: the run stopped while it ran


def write_junit(
    path: str,
    result: Mapping[str, Any],
    *,
    tolerated: frozenset[str] = frozenset(),
    skip_reasons: Mapping[str, str] | None = None,
) -> None:
    """One ``<testcase>`` per step so CI systems show the steps (``result`` is RunResult.to_json()).

    A ``continue_on_error`` step that failed did not fail the run, so it must not turn the
    CI report red: it is a passed case whose error is in ``<system-out>`` and in a
    ``continue_on_error`` property. A skipped case says why it was skipped.
    """
    steps: Mapping[str, Any] = result.get("steps", {})
    reasons = skip_reasons or {}
    failures = sum(1 for sid, s in steps.items() if s["status"] in ("failed", "cancelled") and sid not in tolerated)
    skipped = sum(1 for s in steps.values() if s["status"] in _NOT_RUN)
    total_s = (result.get("duration_ms") or 0) / 1000.0
    name = result.get("workflow") or "workflow"
    # A run that failed with no failed step (an agent down, a timeout, Ctrl-C) must not
    # look green on a CI dashboard: it gets a testcase of its own carrying the error.
    run_error = result.get("error") if result.get("status") != "completed" and not failures else None
    errors = 1 if run_error else 0
    tests = len(steps) + errors
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name={quoteattr("runner")} tests="{tests}" failures="{failures}" errors="{errors}" '
        f'skipped="{skipped}" time="{total_s:.3f}">',
        f'  <testsuite name={quoteattr(name)} tests="{tests}" failures="{failures}" errors="{errors}" '
        f'skipped="{skipped}" time="{total_s:.3f}" timestamp={quoteattr(str(result.get("started_at", "")))}>',
        f'    <properties><property name="run_id" value={quoteattr(str(result.get("run_id")))}/>'
        f'<property name="status" value={quoteattr(str(result.get("status")))}/></properties>',
    ]
    for sid, s in steps.items():
        t = (s.get("duration_ms") or 0) / 1000.0
        out.append(f'    <testcase classname={quoteattr(name)} name={quoteattr(sid)} time="{t:.3f}">')
        if s["status"] == "failed" and sid in tolerated:
            msg = s.get("error") or "failed"
            out.append(
                f'      <properties><property name="continue_on_error" value={quoteattr(msg[:500])}/></properties>'
            )
            out.append(f"      <system-out>{escape(f'failed (continue_on_error): {msg}')}</system-out>")
        elif s["status"] in ("failed", "cancelled"):
            msg = s.get("error") or s["status"]
            out.append(
                f"      <failure message={quoteattr(msg[:500])} type={quoteattr(s['status'])}>{escape(msg)}</failure>"
            )
        elif s["status"] in _NOT_RUN:
            why = s.get("error") or reasons.get(sid) or s["status"]
            out.append(
                f"      <skipped message={quoteattr(f'skipped: {why}' if why != s['status'] == 'skipped' else why)}/>"
            )
        else:
            body = json.dumps(s.get("result"), default=str)
            if len(body) > 4000:
                body = body[:4000] + "…"
            out.append(f"      <system-out>{escape(body)}</system-out>")
        out.append("    </testcase>")
    if run_error:
        status = str(result.get("status"))
        out.append(f'    <testcase classname={quoteattr(name)} name="(run)" time="{total_s:.3f}">')
        out.append(
            f"      <error message={quoteattr(str(run_error)[:500])} type={quoteattr(status)}>"
            f"{escape(str(run_error))}</error>"
        )
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
