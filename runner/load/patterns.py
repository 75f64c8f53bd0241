"""Where ``uses:`` finds a pattern: ``patterns/<name>.yaml`` shipped with runner, or a path.

SPEC §8: ``uses: <name>`` resolves to the copy of ``patterns/<name>.yaml`` shipped in the
wheel (``runner/patterns/`` once installed; the repository's ``patterns/`` in a checkout);
``uses: ./path.yaml`` (or any value with a ``/`` or a YAML suffix) is relative to the file
of the calling workflow.
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import WorkflowInvalid


def pattern_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [d for d in (here / "patterns", here.parent / "patterns") if d.is_dir()]


def is_path_ref(uses: str) -> bool:
    return "/" in uses or uses.endswith((".yaml", ".yml"))


USES_MAX = 1024  # characters of a `uses:` value (a file name past that is no file)


def uses_problem(uses: str) -> str | None:
    """Why a ``uses:`` value cannot name any file (a NUL, too long), else None."""
    if "\0" in uses:
        return "uses: contains a NUL character; no file name can"
    if len(uses) > USES_MAX:
        return f"uses: too long ({len(uses):,} characters; at most {USES_MAX:,})"
    return None


def resolve_uses(uses: str, calling_file: str | None) -> Path:
    """The file a ``uses:`` value names; WorkflowInvalid naming what was tried otherwise."""
    bad = uses_problem(uses)
    if bad:
        raise WorkflowInvalid(bad, file=calling_file or "<string>")
    if is_path_ref(uses):
        base = Path(calling_file).resolve().parent if calling_file else Path.cwd()
        try:
            p = (base / uses).resolve()
            found = p.is_file()
        except (OSError, ValueError) as exc:
            raise WorkflowInvalid(f"uses: cannot open {uses!r}: {exc}", file=calling_file or "<string>") from None
        if found:
            return p
        raise WorkflowInvalid(f"uses: no workflow file {uses!r} (looked at {p})", file=calling_file or "<string>")
    for d in pattern_dirs():
        for suffix in (".yaml", ".yml"):
            p = d / f"{uses}{suffix}"
            try:
                if p.is_file():
                    return p
            except (OSError, ValueError):
                break
    known = sorted({p.stem for d in pattern_dirs() for p in d.glob("*.y*ml")})
    raise WorkflowInvalid(
        f"uses: no pattern named {uses!r} (available: {', '.join(known) or 'none'})", file=calling_file or "<string>"
    )


def list_patterns() -> list[str]:
    return sorted({p.stem for d in pattern_dirs() for p in d.glob("*.y*ml")})
