"""The foundation: what a workflow is, what a run produces, and the events between them.

Frozen dataclasses and string enums, no I/O: every other layer of runner builds on
these, and nothing here imports anything of runner's but ``runner.errors``.
"""

from runner.model.spec import (
    AgentSpec,
    RetryPolicy,
    RunStatus,
    StepOutcome,
    StepSpec,
    StepStatus,
    StrEnum,
    TransportKind,
    Workflow,
    parse_duration,
)

__all__ = [
    "AgentSpec",
    "RetryPolicy",
    "RunStatus",
    "StepOutcome",
    "StepSpec",
    "StepStatus",
    "StrEnum",
    "TransportKind",
    "Workflow",
    "parse_duration",
]
