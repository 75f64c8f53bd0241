"""Property: mutated workflows, inputs, secrets and tool results never crash the runner.

Hypothesis puts hostile values (huge numbers, NaN, deep nesting, aliases, odd text,
hostile templates) into one place of an ordinary workflow, its inputs file, its secrets
file, or what its tool returns (the ``echo`` tool gives back whatever it is sent), then
drives ``runner validate`` and ``runner run``. Every exit is 0, 1, 2 or 4, never 70,
without a traceback, under the time and memory guard of ``test_hostile_input``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.acceptance.test_hostile_input import HOSTILE_AGENT, guarded

_HOSTILE_SCALARS = [
    "0x" + "f" * 4000,
    "1" + "0" * 5000,
    ".nan",
    "-.inf",
    "!!int ''",
    "!!float ''",
    "!!python/object/apply:os.system ['true']",
    "&a [*a]",
    '"a\\n"',
    '"\\ud800"',
    '"\\0"',
    "[" * 300 + "]" * 300,
    "{{ 10 ** 5000 }}",
    "\"{{ 'x' * 999999 }}{{ 'y' * 999999 }}\"",
    "\"{{ 'x'|center(1500000000) }}\"",
    "\"{{ '%.999999999f'|format(1.0) }}\"",
    '"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"',
    '"{{ steps.a.result.__class__ }}"',
    '"{{ inputs }}"',
    '"{{ secrets.TOKEN }}"',
    "9" * 400,
    "1e400",
    "''",
    "null",
    "[]",
    "{}",
]

_SLOTS = ["NAME", "TIMEOUT", "STEP_TIMEOUT", "ARG", "IF", "EACH", "OUTPUT", "INPUT_DEFAULT", "INPUT_FILE", "SECRET"]

_TEMPLATE = """name: NAME
agents:
  - {id: h, transport: inprocess, module: "hostile_agent:server"}
inputs:
  x: {default: INPUT_DEFAULT}
timeout: TIMEOUT
steps:
  - step_id: a
    tool_to_call: echo
    timeout: STEP_TIMEOUT
    tool_arguments: {value: ARG}
  - step_id: b
    depends_on: [a]
    if: IF
    for_each: EACH
    tool_to_call: echo
    tool_arguments: {value: "{{ item }}"}
outputs:
  out: OUTPUT
  echoed: "{{ steps.a.result }}"
"""

_DEFAULTS = {
    "NAME": "fuzzed",
    "TIMEOUT": "20s",
    "STEP_TIMEOUT": "5s",
    "ARG": '"{{ inputs.x }}"',
    "IF": '"{{ true }}"',
    "EACH": "[1, 2]",
    "OUTPUT": '"{{ steps.b.result }}"',
    "INPUT_DEFAULT": "1",
    "INPUT_FILE": "1",
    "SECRET": "hunter2",
}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.dictionaries(st.sampled_from(_SLOTS), st.sampled_from(_HOSTILE_SCALARS), min_size=1, max_size=3))
def test_mutated_workflows_inputs_secrets_and_results_never_crash(tmp_path: Path, mutations: dict[str, Any]) -> None:
    values = {**_DEFAULTS, **mutations}
    text = _TEMPLATE
    for slot in sorted(_SLOTS, key=len, reverse=True):  # STEP_TIMEOUT before TIMEOUT
        text = text.replace(slot, values[slot])
    work = tmp_path / f"case{abs(hash(frozenset(mutations.items())))}"
    work.mkdir()
    (work / "hostile_agent.py").write_text(HOSTILE_AGENT.read_text())
    wf = work / "wf.yaml"
    wf.write_text(text, encoding="utf-8")
    (work / "inputs.yaml").write_text(f"x: {values['INPUT_FILE']}\n", encoding="utf-8")
    (work / "secrets.yaml").write_text(f"TOKEN: {values['SECRET']}\n", encoding="utf-8")
    rc, _, err = guarded("validate", wf, cwd=work, timeout=60)
    assert rc in (0, 2), err
    rc, _, err = guarded(
        "run", wf, "--store", "memory://", "--inputs", work / "inputs.yaml", "--secrets", work / "secrets.yaml",
        cwd=work, timeout=90,
    )  # fmt: skip
    assert rc in (0, 1, 2, 4), err
