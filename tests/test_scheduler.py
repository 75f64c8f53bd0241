"""The pure scheduler, driven without processes: unit cases plus properties on random DAGs."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.scheduler import Scheduler, Task
from runner.model import RetryPolicy, StepSpec, StepStatus


def S(sid: str, *deps: str, **kw: object) -> StepSpec:
    return StepSpec(step_id=sid, depends_on=tuple(deps), tool_to_call="t", **kw)  # type: ignore[arg-type]


def drive(sched: Scheduler, outcome, *, limit: int = 1000, n_items=None, skip=None):
    """Run the scheduler to the end. ``outcome(task) -> bool`` says success."""
    now = 0.0
    started: list[Task] = []
    for _ in range(100_000):
        while ds := sched.decisions():
            for sid in ds:
                if skip and skip(sid):
                    sched.skip(sid, "if false")
                else:
                    sched.activate(sid, n_items(sid) if n_items else None)
        tasks = sched.take(limit, now)
        if not tasks:
            if sched.done:
                return started
            wake = sched.next_wakeup()
            assert wake is not None, "scheduler stalled: nothing runnable, not done"
            now = max(now, wake)
            continue
        for t in tasks:
            started.append(t)
            if outcome(t):
                sched.complete(t)
            else:
                sched.fail(t, "boom", now, delay=1.0)
    raise AssertionError("did not terminate")


def final(sched: Scheduler, ids):
    return {s: sched.status(s) for s in ids}


def test_chain_runs_in_order():
    steps = [S("a"), S("b", "a"), S("c", "b")]
    sched = Scheduler(steps)
    order = [t.step_id for t in drive(sched, lambda t: True)]
    assert order == ["a", "b", "c"]
    assert final(sched, "abc") == {s: StepStatus.COMPLETED for s in "abc"}


def test_failure_skips_dependents_but_independent_branch_goes_on():
    steps = [S("a"), S("b", "a"), S("c"), S("d", "c")]
    sched = Scheduler(steps)
    drive(sched, lambda t: t.step_id != "a")
    assert final(sched, "abcd") == {
        "a": StepStatus.FAILED,
        "b": StepStatus.SKIPPED,
        "c": StepStatus.COMPLETED,
        "d": StepStatus.COMPLETED,
    }
    assert sched.failed


def test_continue_on_error_lets_dependents_run():
    steps = [S("a", continue_on_error=True), S("b", "a")]
    sched = Scheduler(steps)
    drive(sched, lambda t: t.step_id != "a")
    assert final(sched, "ab") == {"a": StepStatus.FAILED, "b": StepStatus.COMPLETED}
    assert not sched.failed


def test_retry_until_success_with_delay():
    steps = [S("a", retry=RetryPolicy(max_attempts=3, delay=1.0))]
    sched = Scheduler(steps)
    calls = drive(sched, lambda t: t.attempt == 3)
    assert [t.attempt for t in calls] == [1, 2, 3]
    assert sched.status("a") == StepStatus.COMPLETED


def test_a_resumed_step_numbers_on_but_gets_its_whole_retry_policy():
    """Attempts 1-3 failed in an earlier session: this one tries 4, 5, 6 (unique keys, 3 tries)."""
    sched = Scheduler([S("a", retry=RetryPolicy(max_attempts=3))], attempts={"a": 3})
    calls = drive(sched, lambda t: False)
    assert [t.attempt for t in calls] == [4, 5, 6]
    assert sched.status("a") == StepStatus.FAILED


def test_a_resumed_for_each_numbers_its_items_after_earlier_attempts():
    sched = Scheduler([S("f", for_each=["x", "y"], retry=RetryPolicy(max_attempts=2))], attempts={"f": 2})
    calls = drive(sched, lambda t: t.attempt == 4, n_items=lambda sid: 2)
    assert sorted((t.index, t.attempt) for t in calls) == [(0, 3), (0, 4), (1, 3), (1, 4)]
    assert sched.status("f") == StepStatus.COMPLETED


def test_retry_waits_for_its_time():
    sched = Scheduler([S("a", retry=RetryPolicy(max_attempts=2, delay=5.0))])
    for sid in sched.decisions():
        sched.activate(sid)
    [t] = sched.take(10, 0.0)
    at = sched.fail(t, "x", 0.0, delay=5.0)
    assert at == 5.0
    assert sched.take(10, 4.9) == []
    assert sched.take(10, 5.0) == [Task("a", None, 2)]


def test_non_retryable_failure_is_final():
    sched = Scheduler([S("a", retry=RetryPolicy(max_attempts=5))])
    for sid in sched.decisions():
        sched.activate(sid)
    [t] = sched.take(10, 0.0)
    assert sched.fail(t, "unknown tool", 0.0, retryable=False) is None
    assert sched.status("a") == StepStatus.FAILED


def test_if_false_skips_and_cascades():
    sched = Scheduler([S("a"), S("b", "a"), S("c")])
    drive(sched, lambda t: True, skip=lambda s: s == "a")
    assert final(sched, "abc") == {"a": StepStatus.SKIPPED, "b": StepStatus.SKIPPED, "c": StepStatus.COMPLETED}
    assert not sched.failed


def test_concurrency_limit():
    sched = Scheduler([S(f"s{i}") for i in range(10)], concurrency=3)
    for sid in sched.decisions():
        sched.activate(sid)
    first = sched.take(100, 0.0)
    assert len(first) == 3
    assert sched.take(100, 0.0) == []
    sched.complete(first[0])
    assert len(sched.take(100, 0.0)) == 1


def test_for_each_respects_max_parallel_and_completes():
    sched = Scheduler([S("fan", max_parallel=2), S("after", "fan")])
    [sid] = sched.decisions()
    sched.activate(sid, 5)
    batch = sched.take(100, 0.0)
    assert [t.index for t in batch] == [0, 1]
    assert sched.take(100, 0.0) == []
    sched.complete(batch[1])
    [third] = sched.take(100, 0.0)
    assert third.index == 2
    sched.complete(batch[0])
    sched.complete(third)
    rest = drive(sched, lambda t: True)
    assert sorted(t.index for t in rest if t.step_id == "fan") == [3, 4]
    assert sched.status("fan") == StepStatus.COMPLETED
    assert sched.status("after") == StepStatus.COMPLETED


def test_for_each_empty_list_completes_at_once():
    sched = Scheduler([S("fan"), S("after", "fan")])
    [sid] = sched.decisions()
    sched.activate(sid, 0)
    assert sched.status("fan") == StepStatus.COMPLETED
    assert sched.decisions() == ["after"]


def test_for_each_item_failure_fails_step():
    sched = Scheduler([S("fan", max_parallel=1), S("after", "fan")])
    drive(sched, lambda t: t.index != 2, n_items=lambda s: 4 if s == "fan" else None)
    assert sched.status("fan") == StepStatus.FAILED
    assert sched.status("after") == StepStatus.SKIPPED


def test_finally_runs_after_everything_even_on_failure():
    steps = [S("a"), S("b", "a")]
    fin = [StepSpec(step_id="cleanup", tool_to_call="t", is_finally=True, depends_on=("a",))]
    sched = Scheduler(steps, finally_steps=fin)
    order = [t.step_id for t in drive(sched, lambda t: t.step_id != "a")]
    assert order == ["a", "cleanup"]
    assert sched.status("cleanup") == StepStatus.COMPLETED


def test_cancel_pending_then_finally():
    steps = [S("a"), S("b", "a")]
    fin = [StepSpec(step_id="f", tool_to_call="t", is_finally=True)]
    sched = Scheduler(steps, finally_steps=fin)
    for sid in sched.decisions():
        sched.activate(sid)
    [t] = sched.take(10, 0.0)
    cancelled = sched.cancel_pending("run timed out")
    assert cancelled == ["a", "b"]
    assert not sched.complete(t)  # late completion of a cancelled step is ignored
    assert sched.decisions() == ["f"]


def test_resume_restores_completed_steps():
    steps = [S("a"), S("b", "a"), S("c", "b")]
    sched = Scheduler(steps, completed={"a"}, attempts={"b": 1})
    calls = drive(sched, lambda t: True)
    assert [(t.step_id, t.attempt) for t in calls] == [("b", 2), ("c", 1)]


def test_resume_restores_for_each_items():
    sched = Scheduler([S("fan")], items_done={"fan": {0, 2}})
    calls = drive(sched, lambda t: True, n_items=lambda s: 4)
    assert sorted(t.index for t in calls) == [1, 3]


@st.composite
def dags(draw):
    n = draw(st.integers(min_value=1, max_value=25))
    steps = []
    for i in range(n):
        deps = draw(st.lists(st.integers(min_value=0, max_value=max(0, i - 1)), max_size=3, unique=True)) if i else []
        kw: dict = {}
        if draw(st.booleans()):
            kw["retry"] = RetryPolicy(max_attempts=draw(st.integers(1, 3)))
        if draw(st.integers(0, 5)) == 0:
            kw["continue_on_error"] = True
        if draw(st.integers(0, 4)) == 0:
            kw["max_parallel"] = draw(st.integers(1, 3))
            kw["for_each"] = "{{ x }}"
        steps.append(S(f"s{i}", *[f"s{d}" for d in deps], **kw))
    return steps


@settings(max_examples=300, deadline=None)
@given(dags(), st.integers(min_value=0, max_value=2**32), st.integers(1, 6))
def test_random_dags_terminate_and_respect_dependencies(steps, seed, conc):
    rng = random.Random(seed)
    by_id = {s.step_id: s for s in steps}
    sched = Scheduler(steps, concurrency=conc)
    finished: set[str] = set()
    seen: set[tuple] = set()
    now = 0.0
    inflight: list = []
    for _ in range(10_000):
        while ds := sched.decisions():
            for sid in ds:
                # never asked to decide before every dependency is terminal
                assert all(sched.status(d).terminal for d in by_id[sid].depends_on)
                if rng.random() < 0.1:
                    sched.skip(sid, "if false")
                else:
                    sched.activate(sid, rng.randint(0, 3) if by_id[sid].for_each else None)
        new = sched.take(rng.randint(1, 4), now)
        for t in new:
            key = (t.step_id, t.index, t.attempt)
            assert key not in seen, f"{key} started twice"
            seen.add(key)
            for d in by_id[t.step_id].depends_on:
                assert sched.status(d) in (StepStatus.COMPLETED, StepStatus.FAILED)
                if sched.status(d) == StepStatus.FAILED:
                    assert by_id[d].continue_on_error
        inflight.extend(new)
        assert sched.in_flight <= conc
        if not inflight:
            if sched.done:
                break
            wake = sched.next_wakeup()
            assert wake is not None, "stalled"
            now = wake
            continue
        t = inflight.pop(rng.randrange(len(inflight)))
        if rng.random() < 0.7:
            sched.complete(t)
        else:
            sched.fail(t, "x", now, delay=rng.random())
        now += 0.01
    else:
        raise AssertionError("did not terminate")
    for s in steps:
        status = sched.status(s.step_id)
        assert status.terminal
        finished.add(s.step_id)
        if status == StepStatus.COMPLETED:
            for d in s.depends_on:
                assert sched.status(d) == StepStatus.COMPLETED or by_id[d].continue_on_error
        attempts = [k[2] for k in seen if k[0] == s.step_id and k[1] is None]
        assert max(attempts, default=0) <= s.retry.max_attempts


def test_skip_cascade_down_a_long_chain_needs_no_recursion():
    n = 20_000
    steps = [S("s0")] + [S(f"s{i}", f"s{i - 1}") for i in range(1, n)]
    sched = Scheduler(steps)
    drive(sched, lambda t: False)
    assert sched.status("s0") == StepStatus.FAILED
    assert sched.status(f"s{n - 1}") == StepStatus.SKIPPED
    assert len(sched.transitions()) == n
