"""One handler per step kind: ``tool`` (an MCP call), ``pull`` (an agent's report), ``uses``,
``tool_per_task`` / ``pull_per_task`` (one whose agent or tool is rendered per task).

A handler gets the task, its step and the rendered arguments and returns what the step
produced — ``(result, text, content)`` — or raises ``ToolFailure``. A new step kind is
one new module here and one entry in ``Engine``'s handler table.
"""

from runner.engine.steps.base import Produced, StepHandler, StepRun
from runner.engine.steps.per_task import PerTaskStep
from runner.engine.steps.pull import PullStep
from runner.engine.steps.tool import IDEMPOTENCY_META_KEY, ToolStep
from runner.engine.steps.uses import UsesStep

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "PerTaskStep",
    "Produced",
    "PullStep",
    "StepHandler",
    "StepRun",
    "ToolStep",
    "UsesStep",
]
