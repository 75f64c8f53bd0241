"""The engine over fake agents (runner.testing) and one real in-process MCP agent."""

from __future__ import annotations

import asyncio
import time

import pytest

from runner.engine import Engine, ResumeState
from runner.errors import AgentError, InputInvalid, WorkflowInvalid
from runner.model import AgentSpec, RetryPolicy, RunStatus, StepOutcome, StepSpec, StepStatus, TransportKind, Workflow
from runner.model import events as ev
from runner.testing import EventCapture, FakeAgent, FakePool


def wf(*steps: StepSpec, finally_steps=(), outputs=None, inputs=None, timeout=None, concurrency=16, agents=()):
    return Workflow(
        name="t",
        steps=tuple(steps),
        finally_steps=tuple(finally_steps),
        outputs=outputs or {},
        inputs=inputs or {},
        timeout=timeout,
        concurrency=concurrency,
        agents=tuple(agents),
    )


def run(w: Workflow, agents, inputs=None, *, secrets=None, broken=None, capture=None, **kw):
    pool = FakePool(agents, broken=broken)
    sinks = [capture] if capture is not None else []
    eng = Engine(w, pool=pool, registry=pool.specs, secrets=secrets, sinks=sinks, **kw)
    return asyncio.run(eng.run(inputs or {}))


def T(sid, tool="echo", args=None, *deps, **kw):
    return StepSpec(
        step_id=sid, tool_to_call=tool, tool_arguments=args if args is not None else {}, depends_on=deps, **kw
    )


def echo_agent(**extra):
    async def echo(**a):
        return a

    return FakeAgent("a", {"echo": echo, **extra})


def test_native_types_flow_between_steps():
    agent = FakeAgent("a", {"nums": lambda: [1, 2, 3], "sum": lambda xs: sum(xs)})
    w = wf(
        T("n", "nums"), T("s", "sum", {"xs": "{{ steps.n.result }}"}, "n"), outputs={"total": "{{ steps.s.result }}"}
    )
    r = run(w, [agent])
    assert r.status == RunStatus.COMPLETED
    assert r.outputs == {"total": 6}
    assert agent.calls[1].arguments == {"xs": [1, 2, 3]}


def test_for_each_results_in_item_order_and_max_parallel():
    running = 0
    peak = 0

    async def work(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (5 - x))  # later items finish first
        running -= 1
        return x * 10

    agent = FakeAgent("a", {"work": work})
    w = wf(
        StepSpec(
            step_id="f", tool_to_call="work", for_each=[1, 2, 3, 4], max_parallel=2, tool_arguments={"x": "{{ item }}"}
        )
    )
    r = run(w, [agent])
    assert r.steps["f"].result == [10, 20, 30, 40]
    assert peak == 2


def test_retry_with_backoff_then_success_emits_retrying():
    n = 0

    def flaky():
        nonlocal n
        n += 1
        if n < 3:
            raise RuntimeError(f"try {n} failed")
        return "ok"

    cap = EventCapture()
    w = wf(T("x", "flaky", retry=RetryPolicy(max_attempts=3, delay=0.02, backoff=2.0)))
    t0 = time.perf_counter()
    r = run(w, [FakeAgent("a", {"flaky": flaky})], capture=cap)
    assert time.perf_counter() - t0 >= 0.06  # 0.02 + 0.04
    assert r.steps["x"].status == StepStatus.COMPLETED and r.steps["x"].attempts == 3
    retrying = [e for e in cap.events if e.type == ev.STEP_RETRYING]
    assert [e.attempt for e in retrying] == [2, 3]
    assert retrying[0].error == "try 1 failed"


def test_failure_skips_dependents_independent_branch_runs_and_run_fails():
    agent = FakeAgent("a", {"boom": lambda: 1 / 0, "ok": lambda: "fine"})
    w = wf(T("bad", "boom"), T("dep", "ok", {}, "bad"), T("other", "ok"))
    r = run(w, [agent])
    assert r.status == RunStatus.FAILED
    assert r.steps["bad"].status == StepStatus.FAILED and "division by zero" in r.steps["bad"].error
    assert r.steps["dep"].status == StepStatus.SKIPPED
    assert r.steps["other"].status == StepStatus.COMPLETED and r.steps["other"].result == "fine"


def test_continue_on_error_dependents_see_status():
    agent = FakeAgent("a", {"boom": lambda: 1 / 0, "echo": lambda text: text})
    w = wf(T("bad", "boom", continue_on_error=True), T("dep", "echo", {"text": "{{ steps.bad.status }}"}, "bad"))
    r = run(w, [agent])
    assert r.status == RunStatus.COMPLETED
    assert r.steps["dep"].result == "failed"


def test_if_false_skips():
    agent = FakeAgent("a", {"echo": lambda text: text})
    w = wf(
        T("a1", "echo", {"text": "x"}), T("b", "echo", {"text": "y"}, "a1", condition="{{ steps.a1.result == 'nope' }}")
    )
    r = run(w, [agent])
    assert r.steps["b"].status == StepStatus.SKIPPED
    assert r.status == RunStatus.COMPLETED


def test_finally_sees_run_status():
    agent = FakeAgent("a", {"boom": lambda: 1 / 0, "echo": lambda text: text})
    fin = StepSpec(step_id="notify", tool_to_call="echo", tool_arguments={"text": "{{ run.status }}"}, is_finally=True)
    r = run(wf(T("bad", "boom"), finally_steps=[fin]), [agent])
    assert r.steps["notify"].result == "failed"
    assert r.status == RunStatus.FAILED


def test_step_timeout_fails_step():
    async def slow():
        await asyncio.sleep(5)

    r = run(wf(T("s", "slow", timeout=0.05)), [FakeAgent("a", {"slow": slow})])
    assert r.steps["s"].status == StepStatus.FAILED
    assert "timed out" in r.steps["s"].error


def test_run_timeout_cancels_and_runs_finally():
    async def slow():
        await asyncio.sleep(5)

    agent = FakeAgent("a", {"slow": slow, "echo": lambda text: text})
    fin = StepSpec(step_id="f", tool_to_call="echo", tool_arguments={"text": "{{ run.status }}"}, is_finally=True)
    t0 = time.perf_counter()
    r = run(wf(T("s", "slow"), T("after", "echo", {"text": "x"}, "s"), finally_steps=[fin], timeout=0.1), [agent])
    assert time.perf_counter() - t0 < 2
    assert r.status == RunStatus.TIMED_OUT
    assert r.steps["s"].status == StepStatus.CANCELLED
    assert r.steps["after"].status == StepStatus.CANCELLED
    assert r.steps["f"].result == "timed_out"


def test_secrets_masked_everywhere_even_when_echoed():
    cap = EventCapture()
    agent = FakeAgent("a", {"echo": lambda text: f"you said {text}"})
    w = wf(T("e", "echo", {"text": "token={{ secrets.TOKEN }}"}), outputs={"o": "{{ steps.e.result }}"})
    r = run(w, [agent], secrets={"TOKEN": "s3cr3t-value"}, capture=cap)
    assert agent.calls[0].arguments == {"text": "token=s3cr3t-value"}  # the agent gets the real value
    assert r.steps["e"].result == "you said token=***"
    assert r.outputs == {"o": "you said token=***"}
    assert "s3cr3t-value" not in repr([e.to_json() for e in cap.events])


def test_hostile_template_fails_step_at_render_never_executes():
    agent = FakeAgent("a", {"echo": lambda text: text})
    r = run(wf(T("h", "echo", {"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})), [agent])
    assert r.steps["h"].status == StepStatus.FAILED
    assert agent.calls == []


def test_fallback_agent_used_when_primary_unreachable():
    def down():
        from runner.errors import ToolFailure

        raise ToolFailure("agent 'p' is unreachable: process exited", agent_id="p")

    primary = FakeAgent("p", {"do": down})
    primary.call_orig = primary.call  # type: ignore[attr-defined]

    async def call(tool, arguments, **kw):
        down()

    primary.call = call  # type: ignore[method-assign]
    backup = FakeAgent("b", {"do": lambda: "from backup"})
    w = wf(StepSpec(step_id="s", tool_to_call="do", tool_arguments={}, assigned_agent_id="p", fallback_agents=("b",)))
    r = run(w, [primary, backup])
    assert r.steps["s"].result == "from backup"
    assert r.steps["s"].agent_id == "b"


def test_least_loaded_selection_spreads_parallel_steps():
    async def work():
        await asyncio.sleep(0.02)
        return 1

    a = FakeAgent("a", {"w": work}, role="worker")
    b = FakeAgent("b", {"w": work}, role="worker")
    steps = [StepSpec(step_id=f"s{i}", tool_to_call="w", tool_arguments={}, assigned_role="worker") for i in range(6)]
    run(wf(*steps), [a, b])
    assert len(a.calls) == 3 and len(b.calls) == 3


def test_max_concurrency_per_agent():
    running = peak = 0

    async def work():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    agent = FakeAgent("a", {"w": work})
    spec = AgentSpec(id="a", transport=TransportKind.INPROCESS, module="<fake>", max_concurrency=2)
    steps = [StepSpec(step_id=f"s{i}", tool_to_call="w", tool_arguments={}) for i in range(8)]
    pool = FakePool([agent])
    asyncio.run(Engine(wf(*steps, agents=[spec]), pool=pool).run({}))
    assert peak == 2


def test_required_agent_down_fails_closed():
    w = wf(T("s", "echo"))
    with pytest.raises(AgentError, match="agent 'a'.*connection refused"):
        run(w, [echo_agent()], broken={"a": "connection refused"})


def test_unknown_tool_caught_before_any_call_with_tool_list():
    agent = echo_agent()
    with pytest.raises(WorkflowInvalid, match="has no tool 'nope'; it offers: echo"):
        run(wf(T("s", "nope")), [agent])
    assert agent.calls == []


def test_inputs_defaults_and_schema():
    agent = FakeAgent("a", {"echo": lambda n: n})
    w = wf(T("s", "echo", {"n": "{{ inputs.n }}"}), inputs={"n": {"type": "integer", "default": 3, "minimum": 1}})
    assert run(w, [agent]).steps["s"].result == 3
    with pytest.raises(InputInvalid, match="input 'n'"):
        run(w, [agent], {"n": 0})
    with pytest.raises(InputInvalid, match="unknown input"):
        run(w, [agent], {"zzz": 1})


def test_idempotency_key_in_meta():
    agent = echo_agent()
    pool = FakePool([agent])
    eng = Engine(wf(T("s", "echo")), pool=pool, registry=pool.specs)
    r = asyncio.run(eng.run({}, run_id="R1"))
    assert agent.calls[0].meta == {"runner/idempotency_key": "R1:s:1"}
    assert r.run_id == "R1"


def test_resume_does_not_rerun_completed_steps():
    agent = FakeAgent("a", {"echo": lambda text: text})
    w = wf(T("a1", "echo", {"text": "one"}), T("b", "echo", {"text": "{{ steps.a1.result }}+two"}, "a1"))
    state = ResumeState(
        run_id="R",
        inputs={},
        completed={"a1": StepOutcome(status=StepStatus.COMPLETED, result="ONE", attempts=1)},
        attempts={"a1": 1, "b": 1},
    )
    pool = FakePool([agent])
    r = asyncio.run(Engine(w, pool=pool, registry=pool.specs).run(resume=state))
    assert [c.arguments for c in agent.calls] == [{"text": "ONE+two"}]
    assert r.steps["b"].attempts == 2


def test_real_inprocess_mcp_agent_end_to_end():
    spec = AgentSpec(id="c", transport=TransportKind.INPROCESS, module="tests.agents.counter_agent:server")
    w = wf(
        T("a1", "add", {"a": 2, "b": 3}),
        T("b", "add", {"a": "{{ steps.a1.result }}", "b": 1}, "a1"),
        T("e", "fail", {"message": "bad thing"}),
        agents=[spec],
    )
    r = asyncio.run(Engine(w).run({}))
    assert r.steps["b"].result == 6
    assert r.steps["e"].status == StepStatus.FAILED and "bad thing" in r.steps["e"].error


def test_pull_step_completes_when_reported():
    pull = AgentSpec(id="human", transport=TransportKind.PULL, role="reviewer")
    w = wf(
        StepSpec(step_id="review", assigned_role="reviewer", tool_arguments={"doc": "x"}, timeout=5),
        outputs={"verdict": "{{ steps.review.result }}"},
        agents=[pull],
    )

    async def go():
        eng = Engine(w, pool=FakePool([]))
        task = asyncio.ensure_future(eng.run({}))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if eng.pull.assigned("human"):
                break
        [a] = eng.pull.assigned("human")
        assert a["arguments"] == {"doc": "x"}
        with pytest.raises(PermissionError):
            eng.pull.report("review", result="no", agent_id="someone-else")
        eng.pull.report("review", result={"ok": True}, agent_id="human")
        return await task

    r = asyncio.run(go())
    assert r.outputs == {"verdict": {"ok": True}}


def test_pull_step_times_out():
    pull = AgentSpec(id="human", transport=TransportKind.PULL)
    w = wf(StepSpec(step_id="review", assigned_agent_id="human", timeout=0.05), agents=[pull])
    r = asyncio.run(Engine(w, pool=FakePool([])).run({}))
    assert r.steps["review"].status == StepStatus.FAILED
    assert "not reported within" in r.steps["review"].error
