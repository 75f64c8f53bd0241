"""The engine: drives one run — the scheduler's decisions, agent calls, the event journal.

``runner.engine.deep`` is ``runner validate --deep`` (it connects agents like a run's
preflight does). Faces do not build engines: they call ``runner.service``.
"""

from runner.engine.loop import IDEMPOTENCY_META_KEY, Engine
from runner.model.outcomes import ResumeState, RunResult, resolve_inputs

__all__ = ["IDEMPOTENCY_META_KEY", "Engine", "ResumeState", "RunResult", "resolve_inputs"]
