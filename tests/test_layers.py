"""The house stays layered: the import-linter contracts of pyproject.toml hold.

Faces (cli) → api/testing → service → engine → load | agents | store → core | template →
model → errors, each importing only downward, function-local imports included; and no
package's modules import each other in a cycle.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), "import-linter is not installed: run .ci/run (it installs the dev extras)"
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout
    assert proc.stdout.count("KEPT") >= 2, proc.stdout
def test_no_module_is_over_about_six_hundred_lines() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "runner").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 610
    }
    assert not too_long, f"split these modules by role: {too_long}"
