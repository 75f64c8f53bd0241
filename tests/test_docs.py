"""The reference in docs/ agrees with the code, and the repository points only inside itself.

Ids: ``docs:generated``, ``docs:cli-commands``, ``docs:links``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from runner.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_generated_reference_matches_schemas_and_cli() -> None:
    """docs:generated — `python docs/generate.py --check` fails on any drift."""
    p = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    """docs:cli-commands — independent of the generator: walk the click app."""
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")

    def walk(cmd: object, path: list[str]) -> None:
        assert f"## `{' '.join(path)}`" in text, path
        for param in getattr(cmd, "params", []):
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert f"`{opt}`" in text, (path, opt)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(cli, ["runner"])


def test_every_schema_key_is_in_the_keys_reference() -> None:
    import json

    text = (DOCS / "reference" / "keys.md").read_text(encoding="utf-8")
    for f in (ROOT / "schemas").glob("*.schema.json"):
        for key in json.loads(f.read_text(encoding="utf-8")).get("properties", {}):
            assert f"| `{key}` |" in text, (f.name, key)


def test_readme_and_docs_link_only_inside_the_repository() -> None:
    """docs:links — relative links resolve to files here; nothing points outside."""
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/" in readme
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "shared/" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.exists(), (page, target)
            assert ROOT in resolved.parents or resolved == ROOT, (page, target)
