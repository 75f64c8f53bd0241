"""Shared pieces of the benchmark: result rows, statistics, workflow generators.

The workflows are built as model objects (``Workflow``/``StepSpec``) for the engine rows,
and written as YAML text for the ``runner validate`` rows; both shapes come from the same
generators so the 10,000-step DAG the engine runs is the one ``validate`` reads.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.model import AgentSpec, StepSpec, TransportKind, Workflow

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the base directory for ``bench.agents.noop_agent:server``."""

NOOP_MODULE = "bench.agents.noop_agent:server"
NOOP_SCRIPT = str(ROOT / "bench" / "agents" / "noop_agent.py")
AGENT_ID = "noop"


@dataclass
class Row:
    """One line of the final table: a measured figure next to its budget."""

    row: str  # "1", "2", ... (the brief's numbering, for --only)
    what: str
    value: str
    budget: str
    ok: bool | None  # None: reported without a budget
    note: str = ""

    @property
    def verdict(self) -> str:
        return "–" if self.ok is None else ("pass" if self.ok else "**FAIL**")


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float]) -> str:
    """``min–max`` of the repetitions, to show how noisy a figure was."""
    return f"{min(xs):.4g}–{max(xs):.4g}"


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout holds only the final table."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- agents


def inprocess_agent() -> AgentSpec:
    return AgentSpec(id=AGENT_ID, transport=TransportKind.INPROCESS, module=NOOP_MODULE)


def stdio_agent() -> AgentSpec:
    return AgentSpec(id=AGENT_ID, transport=TransportKind.STDIO, command=sys.executable, args=(NOOP_SCRIPT,))


# --------------------------------------------------------------------------- model workflows


def chain_workflow(n: int, agent: AgentSpec, prefix: str = "s") -> Workflow:
    """``n`` steps, each echoing the previous step's result (``{{ steps.<prev>.result }}``).

    ``prefix`` makes the step ids — and so the template texts — differ between
    repetitions, so that every run pays its own template compilation (the compiled-template
    cache is process-wide).
    """
    steps = [StepSpec(step_id=f"{prefix}0", assigned_agent_id=AGENT_ID, tool_to_call="echo",
                      tool_arguments={"x": "seed"})]
    for i in range(1, n):
        prev = f"{prefix}{i - 1}"
        steps.append(StepSpec(step_id=f"{prefix}{i}", assigned_agent_id=AGENT_ID, tool_to_call="echo",
                              depends_on=(prev,), tool_arguments={"x": f"{{{{ steps.{prev}.result }}}}"}))
    return Workflow(name="bench-chain", steps=tuple(steps), agents=(agent,))


def parallel_workflow(n: int, agent: AgentSpec, ms: float, concurrency: int) -> Workflow:
    """``n`` independent ``sleep(ms)`` steps, at most ``concurrency`` at a time."""
    steps = tuple(StepSpec(step_id=f"p{i}", assigned_agent_id=AGENT_ID, tool_to_call="sleep",
                           tool_arguments={"ms": ms}) for i in range(n))
    return Workflow(name="bench-parallel", steps=steps, agents=(agent,), concurrency=concurrency)


def layered_deps(layers: int, width: int) -> Iterator[tuple[str, tuple[str, ...]]]:
    """``(step_id, depends_on)`` of a ``layers`` × ``width`` DAG.

    Each step depends on 2 or 3 steps of the previous layer (itself, its right neighbour
    and, for even positions, one 37 places on): 2.5 edges a step on average.
    """
    for layer in range(layers):
        for j in range(width):
            sid = f"l{layer}_{j}"
            if layer == 0:
                yield sid, ()
                continue
            prev = layer - 1
            deps = [f"l{prev}_{j}", f"l{prev}_{(j + 1) % width}"]
            if j % 2 == 0:
                other = f"l{prev}_{(j + 37) % width}"
                if other not in deps:
                    deps.append(other)
            yield sid, tuple(deps)


def layered_workflow(layers: int, width: int, agent: AgentSpec, concurrency: int = 16) -> Workflow:
    """The layered DAG with every step calling the no-op tool without arguments."""
    steps = tuple(StepSpec(step_id=sid, assigned_agent_id=AGENT_ID, tool_to_call="noop", depends_on=deps)
                  for sid, deps in layered_deps(layers, width))
    return Workflow(name="bench-layered", steps=steps, agents=(agent,), concurrency=concurrency)


def foreach_workflow(n: int, agent: AgentSpec, concurrency: int = 16) -> Workflow:
    """One ``for_each`` step over ``n`` literal items, each item passed to the tool."""
    step = StepSpec(step_id="each", assigned_agent_id=AGENT_ID, tool_to_call="item",
                    for_each=list(range(n)), tool_arguments={"x": "{{ item }}"})
    return Workflow(name="bench-foreach", steps=(step,), agents=(agent,), concurrency=concurrency)


# --------------------------------------------------------------------------- YAML workflows

_YAML_HEAD = """\
name: {name}
description: Generated by bench/bench.py ({n} steps)
agents:
  - id: noop
    transport: inprocess
    module: {module}
steps:
"""


def _yaml_step(sid: str, deps: Sequence[str]) -> str:
    """One step, ~150 bytes: the 10,000-step file comes out at the SPEC's ~1.5 MB."""
    lines = [f"  - step_id: {sid}", "    assigned_agent_id: noop", "    tool_to_call: echo"]
    if deps:
        lines.append(f"    depends_on: [{', '.join(deps)}]")
        lines.append(f'    tool_arguments: {{x: "{{{{ steps.{deps[0]}.result }}}}"}}')
    else:
        lines.append("    tool_arguments: {x: seed}")
    return "\n".join(lines) + "\n"


def chain_yaml(n: int) -> str:
    """A ``n``-step chain as a workflow file (each step templating the previous result)."""
    parts = [_YAML_HEAD.format(name="bench-chain", n=n, module=NOOP_MODULE)]
    for i in range(n):
        parts.append(_yaml_step(f"s{i}", (f"s{i - 1}",) if i else ()))
    return "".join(parts)


def layered_yaml(layers: int, width: int) -> str:
    """The layered DAG as a workflow file (each step templating its first dependency)."""
    parts = [_YAML_HEAD.format(name="bench-layered", n=layers * width, module=NOOP_MODULE)]
    for sid, deps in layered_deps(layers, width):
        parts.append(_yaml_step(sid, deps))
    return "".join(parts)
