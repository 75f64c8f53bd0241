"""Nested step ids and the state a resumed nested run continues from (pure parts, a memory store).

Ids: ``uses:nested-ids``, ``uses:resume``. The crash tests (``test_nested_durability.py``)
drive the same code through the CLI; here the cases a crash cannot aim at: a ``uses:``
step retried before the crash (only its latest attempt's nested run is continued) and a
``for_each`` whose first item completed (kept whole, not continued).
"""

from __future__ import annotations

from pathlib import Path

from runner.load import load_workflow
from runner.model import events as ev
from runner.model.events import Event
from runner.model.nesting import call_id, grouped, inner_spec, nested_run_id, outer_step, split_call
from runner.service import resume_state
from runner.store import open_store
from runner.store.base import RunRecord, Store

ROOT = Path(__file__).resolve().parent.parent
NESTED = ROOT / "tests/fixtures/durable/nested.yaml"


def test_nested_ids_take_apart_and_group() -> None:
    assert call_id("teams", 2) == "teams[2]" and call_id("team", None) == "team"
    assert split_call("teams[12]") == ("teams", 12) and split_call("team") == ("team", None)
    assert outer_step("teams[2]/crew/b") == "teams" and outer_step("first") == "first"
    assert nested_run_id("R", "teams[2]", 3) == "R/teams[2]@3"
    # The store's order interleaves concurrent nested runs; a person reads them grouped.
    stored = ["first", "teams", "team", "teams[10]/a", "team/a", "teams[2]/a", "deep", "deep/crew", "team/b",
              "deep/crew/a", "deep/plan", "teams[2]/b", "last"]  # fmt: skip
    assert grouped(stored) == [
        "first", "teams", "teams[2]/a", "teams[2]/b", "teams[10]/a", "team", "team/a", "team/b",
        "deep", "deep/crew", "deep/crew/a", "deep/plan", "last",
    ]  # fmt: skip


def test_inner_spec_finds_a_step_through_its_callees() -> None:
    wf = load_workflow(str(NESTED))
    spec = inner_spec(wf, "deep/crew/b")
    assert spec is not None and spec.step_id == "b" and spec.depends_on == ("a",)
    assert inner_spec(wf, "teams[1]/a") is not None
    assert inner_spec(wf, "deep/nope") is None and inner_spec(wf, "first/a") is None


def _store_with(events: list[Event]) -> Store:
    store = open_store("memory://")
    store.create_run(RunRecord(run_id="R", workflow_name="nested-crashy", workflow_hash="h", inputs={"ledger": "x"}))
    store.append_many([Event(type=ev.RUN_STARTED, run_id="R", data={"workflow": "nested-crashy"}), *events])
    return store


def _e(type_: str, sid: str, attempt: int | None = None, **data: object) -> Event:
    return Event(type=type_, run_id="R", step_id=sid, attempt=attempt, data=dict(data))


def test_a_retried_uses_step_continues_only_its_latest_nested_run() -> None:
    wf = load_workflow(str(NESTED))
    store = _store_with([
        _e(ev.STEP_STARTED, "first", 1), _e(ev.STEP_COMPLETED, "first", 1, result={"value": 1}),
        _e(ev.STEP_STARTED, "team", 1),
        _e(ev.STEP_STARTED, "team/a", 1), _e(ev.STEP_COMPLETED, "team/a", 1, result={"value": "old"}),
        _e(ev.STEP_STARTED, "team/b", 1), _e(ev.STEP_FAILED, "team/b", 1),
        _e(ev.STEP_RETRYING, "team", 2),
        _e(ev.STEP_STARTED, "team", 2),
        _e(ev.STEP_STARTED, "team/a", 1), _e(ev.STEP_COMPLETED, "team/a", 1, result={"value": "new"}),
        _e(ev.STEP_STARTED, "team/b", 1),  # in flight at the crash
    ])  # fmt: skip
    state = resume_state(store, "R", wf)
    assert state.in_flight == {"team"} and state.attempts["team"] == 2
    nested = state.nested["team"]
    assert nested.run_id == "R/team@2"  # the id the resent nested run has: same keys
    assert set(nested.completed) == {"a"} and nested.completed["a"].result == {"value": "new"}
    assert nested.in_flight == {"b"} and nested.attempts == {"a": 1, "b": 1}


def test_a_for_each_keeps_completed_items_and_continues_the_others() -> None:
    wf = load_workflow(str(NESTED))
    store = _store_with([
        _e(ev.STEP_STARTED, "teams", 1),
        _e(ev.ITEM_STARTED, "teams", 1, index=0),
        _e(ev.ITEM_STARTED, "teams", 1, index=1),
        _e(ev.STEP_STARTED, "teams[0]/a", 1), _e(ev.STEP_COMPLETED, "teams[0]/a", 1, result={"value": "x"}),
        _e(ev.STEP_STARTED, "teams[1]/a", 1), _e(ev.STEP_COMPLETED, "teams[1]/a", 1, result={"value": "y"}),
        _e(ev.STEP_STARTED, "teams[0]/b", 1), _e(ev.STEP_COMPLETED, "teams[0]/b", 1, result={"value": "x!"}),
        _e(ev.ITEM_COMPLETED, "teams", 1, index=0, result={"said": "x!"}),
        _e(ev.STEP_STARTED, "teams[1]/b", 1),
    ])  # fmt: skip
    state = resume_state(store, "R", wf)
    assert state.in_flight == {"teams"} and state.items == {"teams": {0: {"said": "x!"}}}
    assert set(state.nested) == {"teams[1]"}  # item 0 is kept, not continued
    assert state.nested["teams[1]"].run_id == "R/teams[1]@1"
    assert set(state.nested["teams[1]"].completed) == {"a"} and state.nested["teams[1]"].in_flight == {"b"}
    assert set(state.inner) == {"teams[0]/a", "teams[0]/b"}  # shown in the result as stored
    assert state.inner["teams[0]/b"].result == {"value": "x!"}
