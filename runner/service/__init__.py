"""The service layer: the one API the faces (CLI, MCP server, workers) call."""

from runner.service.runs import Prepared, RunService, descendants, resume_state

__all__ = ["Prepared", "RunService", "descendants", "resume_state"]
