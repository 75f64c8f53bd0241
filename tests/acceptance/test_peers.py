"""``runner run`` against the other third-party MCP servers, and our own example agents.

server-memory (Node, stateful), mcp-server-git (Python, for_each over its output),
mcp-server-time (Python, structured result), and ``workflows/hello.yaml`` run from the
repository root exactly as the README tells a new user to.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import (
    REPO,
    assert_no_traceback,
    assert_run_json,
    make_git_repo,
    parse_json_stdout,
    require_python_module,
    run_cli,
)

WORKFLOWS = Path(__file__).parent / "workflows"


def test_memory_create_then_search(tmp_path: Path, memory_js: Path) -> None:
    mem = tmp_path / "memory.jsonl"
    rc, out, err = run_cli(
        "run",
        WORKFLOWS / "memory.yaml",
        "-i",
        f"memory_file={mem}",
        "-i",
        "person=Ada Lovelace",
        "-i",
        "likes=analytical engines",
        "--output",
        "json",
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        cwd=tmp_path,
    )
    assert_no_traceback(err)
    assert rc == 0, err
    data = parse_json_stdout(out, err)
    assert_run_json(data, status="completed", step_ids={"create", "search"})
    found = data["steps"]["search"]["result"]
    assert isinstance(found, dict), f"server-memory returns structuredContent: {found!r}"
    assert [e["name"] for e in found["entities"]] == ["Ada Lovelace"]
    assert found["entities"][0]["observations"] == ["likes analytical engines"]
    assert data["outputs"] == {"created": ["Ada Lovelace"], "found": ["Ada Lovelace"]}
    # the agent's env reached the server: it wrote the graph where the input said
    assert "Ada Lovelace" in mem.read_text(encoding="utf-8")


def test_git_log_then_show_each_commit(tmp_path: Path) -> None:
    require_python_module("mcp_server_git")
    repo = tmp_path / "repo"
    messages = ["initial import", "add parser", "fix parser edge case", "document parser"]
    shas = make_git_repo(repo, messages)
    rc, out, err = run_cli(
        "run",
        WORKFLOWS / "git.yaml",
        "-i",
        f"repo={repo}",
        "-i",
        "max_commits=3",
        "--output",
        "json",
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        cwd=tmp_path,
    )
    assert_no_traceback(err)
    assert rc == 0, err
    data = parse_json_stdout(out, err)
    assert_run_json(data, status="completed", step_ids={"log", "show"})
    log = data["steps"]["log"]["result"]
    assert isinstance(log, str) and all(sha in log for sha in shas[:3]) and shas[3] not in log
    shown = data["steps"]["show"]["result"]
    assert isinstance(shown, list) and len(shown) == 3, shown
    # the for_each result is in item order (newest first, as git_log listed them)
    for text, sha, msg in zip(shown, shas[:3], list(reversed(messages))[:3], strict=True):
        assert text.startswith(f"commit {sha}"), text[:80]
        assert msg in text
    assert data["steps"]["show"]["agent_id"] == "git"
    assert data["outputs"] == {"shown": 3, "first_line": f"commit {shas[0]}"}


def test_time_convert_structured(tmp_path: Path) -> None:
    require_python_module("mcp_server_time")
    rc, out, err = run_cli(
        "run",
        WORKFLOWS / "time.yaml",
        "-i",
        "time=12:00",
        "-i",
        "target=Asia/Tokyo",
        "--output",
        "json",
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        cwd=tmp_path,
    )
    assert_no_traceback(err)
    assert rc == 0, err
    data = parse_json_stdout(out, err)
    assert_run_json(data, status="completed", step_ids={"convert"})
    result = data["steps"]["convert"]["result"]
    assert isinstance(result, dict), f"structuredContent must be the result: {result!r}"
    assert result["time_difference"] == "+9.0h"
    assert result["target"]["timezone"] == "Asia/Tokyo"
    assert result["target"]["datetime"].endswith("T21:00:00+09:00")
    assert data["outputs"]["difference"] == "+9.0h"
    assert data["steps"]["convert"]["agent_id"] == "clock"


def test_hello_example_from_repo_root(tmp_path: Path) -> None:
    rc, out, err = run_cli(
        "run", "workflows/hello.yaml", "--output", "json", "--store", f"sqlite:///{tmp_path}/r.db", cwd=REPO
    )
    assert_no_traceback(err)
    assert rc == 0, err
    data = parse_json_stdout(out, err)
    assert_run_json(data, status="completed")
    words = data["outputs"]["words"]
    assert isinstance(words, int) and not isinstance(words, bool) and words > 0, words
    assert words == data["steps"]["count"]["result"]["words"]
    assert isinstance(data["outputs"]["keywords"], list)
    assert all(s["status"] == "completed" for s in data["steps"].values())
    assert (tmp_path / "r.db").is_file(), "the run must be kept in the --store given"
