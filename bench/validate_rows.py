"""Row 5: ``runner validate`` wall time, in a subprocess, as a user would run it.

The files are generated into a temporary directory: a 1,000-step templated chain and the
10,000-step layered DAG (about 1.6 MB; every step templates its first dependency's result,
so reference checks have work to do). The ordinary file is ``workflows/hello.yaml``. The
command is the installed console script next to the interpreter (``.venv/bin/runner``),
so the figure includes interpreter start-up and every import, as for a user.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Row, chain_yaml, layered_yaml, log, median, spread


def runner_command() -> list[str]:
    """The ``runner`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "runner"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "runner.cli.main"]


def _time_validate(path: Path, reps: int, expect: int = 0) -> tuple[list[float], str | None]:
    """Wall times of ``runner validate PATH``; the error text if it did not exit ``expect``."""
    times: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run([*runner_command(), "validate", str(path)], cwd=ROOT, capture_output=True,
                             text=True, check=False)
        times.append(time.perf_counter() - t0)
        if out.returncode != expect:
            text = (out.stderr or out.stdout).strip()
            return times, text.splitlines()[-1][:300] if text else f"exit {out.returncode}"
    return times, None


def _mcp_imported(path: Path) -> tuple[bool, list[str], str | None]:
    """Whether ``runner validate PATH`` imports the MCP SDK (``-X importtime``); the slowest imports."""
    cmd = runner_command()
    if cmd[0] != sys.executable:
        cmd = [sys.executable, *cmd]
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:], "validate", str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    mods: list[tuple[int, str]] = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            mods.append((int(parts[1]), parts[2]))
    names = {name for _, name in mods}
    hit = any(n == "mcp" or n.startswith("mcp.") or n == "mcp_types" for n in names)
    top_level = sorted(((us, name) for us, name in mods if "." not in name), reverse=True)[:5]
    err = None if out.returncode == 0 else f"exit {out.returncode}"
    return hit, [f"{name} {us / 1000:.0f} ms" for us, name in top_level], err


def row5_validate(reps: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        files = {
            "ordinary file (workflows/hello.yaml)": (ROOT / "workflows" / "hello.yaml", 0.3),
            "1,000-step file": (Path(tmp) / "chain-1000.yaml", 0.5),
            "10,000-step file": (Path(tmp) / "layered-10000.yaml", 4.0),
        }
        files["1,000-step file"][0].write_text(chain_yaml(1000), encoding="utf-8")
        files["10,000-step file"][0].write_text(layered_yaml(100, 100), encoding="utf-8")
        for label, (path, budget) in files.items():
            size = path.stat().st_size
            n = reps if size < 500_000 else max(2, reps - 2)
            times, err = _time_validate(path, n)
            what = f"`runner validate`, {label}, {size / 1e6:.2f} MB" if size > 100_000 else \
                f"`runner validate`, {label}"
            if err is not None:
                log(f"  row 5 {label}: runner validate failed: {err}")
                rows.append(Row("5", what, "error", f"≤ {budget:g} s", False, f"runner validate failed: {err}"))
                continue
            m = median(times)
            log(f"  row 5 {label}: {m:.3f} s (spread {spread(times)})")
            rows.append(Row("5", what, f"{m:.3f} s", f"≤ {budget:g} s", m <= budget,
                            f"wall of the subprocess, median of {n} (spread {spread(times)} s)"))
        rows += _unknown_keys_rows(Path(tmp), reps)
        hit, top, err = _mcp_imported(files["ordinary file (workflows/hello.yaml)"][0])
        rows.append(Row("5", "`runner validate` imports the MCP SDK", "yes" if hit else "no", "no", not hit,
                        ("slowest top-level imports: " + ", ".join(top)) + (f"; validate: {err}" if err else "")))
    return rows


def _unknown_keys_rows(tmp: Path, reps: int) -> list[Row]:
    """A hostile file: 20,000 and 80,000 unknown top-level keys; ≤ 5 s and near-linear.

    Was quadratic (one scan of the mapping per positioned problem: 21 s and 351 s).
    """
    rows: list[Row] = []
    medians: dict[int, float] = {}
    for n in (20_000, 80_000):
        path = tmp / f"unknown-keys-{n}.yaml"
        path.write_text("".join(f"unknown_key_{i}: {i}\n" for i in range(n)), encoding="utf-8")
        times, err = _time_validate(path, max(2, reps - 2), expect=2)
        what = f"`runner validate`, {n:,} unknown top-level keys (exit 2, capped report)"
        if err is not None:
            rows.append(Row("5", what, "error", "≤ 5 s", False, f"runner validate: {err}"))
            continue
        medians[n] = median(times)
        log(f"  row 5 {n} unknown keys: {medians[n]:.3f} s (spread {spread(times)})")
        rows.append(Row("5", what, f"{medians[n]:.3f} s", "≤ 5 s", medians[n] <= 5.0,
                        f"wall of the subprocess, median of {len(times)} (spread {spread(times)} s)"))
    if len(medians) == 2:
        ratio = medians[80_000] / medians[20_000]
        rows.append(Row("5", "`runner validate` 80,000 / 20,000 unknown keys", f"{ratio:.2f}×", "≤ 6×", ratio <= 6.0,
                        "4× the keys: a linear validator takes ≤ 4× (plus start-up), a quadratic one 16×"))
    return rows
