"""The one error tree of runner, with exit codes on the classes.

    RunnerError (70, internal)
    ├── WorkflowInvalid (2)        schema, cycle, reference, template, YAML, unreadable file
    ├── InputInvalid (2)           bad CLI argument, bad --inputs, inputs failing their schema
    ├── StepFailed (1)             a step (and so the run) failed
    ├── RunTimedOut (4)            the run hit its timeout or was cancelled
    ├── AgentError (3)             a required agent could not be started or reached
    ├── StoreError (70)            the store is unreachable, locked, too new, inconsistent
    │   ├── NotFound (2)           an unknown run/workflow id
    │   └── NotStorable (70)       a value JSON cannot hold reached the store; nothing written
    ├── RunBusy (2)                another live runner process is executing that run
    │   └── LeaseLost (2)          this process's lease was taken over: it stopped writing
    ├── Refused (2)                a request the run's state does not allow (a report on a
    │                              step that is not waiting, a cancel of a finished run)
    ├── AuthError (2)              an MCP caller lacks the right to do something
    └── Interrupted (130)          the user pressed Ctrl-C (the run stays resumable)

Like click's exceptions, each class carries its ``exit_code``; the CLI has exactly one
handler that maps an exception to an exit code, so no command picks codes by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

MESSAGE_MAX = 1000  # characters of a problem's message; longer ones are cut


@dataclass(frozen=True)
class Problem:
    """One validation problem, positioned in its source file.

    ``line`` and ``col`` are 1-based and point at the most specific YAML node at fault.
    """

    message: str
    path: str = "$"
    file: str = "<string>"
    line: int = 0
    col: int = 0
    severity: str = "error"
    rank: int = 50  # lower sorts first: YAML errors, then structure, then references

    def __post_init__(self) -> None:
        # A message quoting a 300,000-character value is not a message: cut it here, once,
        # for every producer of problems (the path keeps the exact place).
        if len(self.message) > MESSAGE_MAX:
            cut = f"... ({len(self.message):,} characters)"
            object.__setattr__(self, "message", self.message[: MESSAGE_MAX - len(cut)] + cut)
        if len(self.path) > MESSAGE_MAX:
            object.__setattr__(self, "path", self.path[: MESSAGE_MAX - 3] + "...")

    def format(self) -> str:
        """``file:line:col: message [json.path]`` — the text format of SPEC §2.

        A problem with no position (an unreadable file) is ``file: message [json.path]``:
        no made-up ``0:0``.
        """
        if not self.line:
            return f"{self.file}: {self.message} [{self.path}]"
        return f"{self.file}:{self.line}:{self.col}: {self.message} [{self.path}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "message": self.message,
            "path": self.path,
            "severity": self.severity,
        }


class RunnerError(Exception):
    """Root of every error runner raises on purpose."""

    exit_code: ClassVar[int] = 70

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class WorkflowInvalid(RunnerError):
    """A workflow or pattern file is malformed; carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str, file: str = "<string>") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems, file=file)]
        self.problems: list[Problem] = problems
        first = problems[0].format() if problems else "invalid workflow"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


class InputInvalid(RunnerError):
    """A command-line argument, inputs file or workflow input value is wrong."""

    exit_code = 2


class BadArgument(InputInvalid):
    """One named argument of an API or MCP tool call is wrong; nothing was changed.

    The argument's name travels with the error so an MCP client (often an LLM) is told
    exactly which parameter to fix, not just that the call failed.
    """

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"argument {argument!r}: {reason}")
        self.argument = argument
        self.reason = reason


class StepFailed(RunnerError):
    """A step failed and the run failed with it."""

    exit_code = 1


class RunTimedOut(RunnerError):
    """The run exceeded its timeout or was cancelled."""

    exit_code = 4


class AgentError(RunnerError):
    """An agent could not be started, reached, or does not offer a tool."""

    exit_code = 3

    def __init__(self, message: str, agent_id: str | None = None) -> None:
        super().__init__(message)
        self.agent_id = agent_id


class StoreError(RunnerError):
    """The store is unreachable, locked, of a newer schema version, or inconsistent."""

    exit_code = 70


class StoreUnavailable(StoreError):
    """A store the user can fix: driver not installed, database unreachable, path unwritable, not a database."""

    exit_code = 2


class NotFound(StoreError):
    """An unknown run, workflow or agent id."""

    exit_code = 2

    @classmethod
    def run(cls, run_id: str, url: str) -> NotFound:
        """The one wording of "no such run", wherever a run id is looked up."""
        return cls(f"no run with id {run_id!r} in {url}")


class NotStorable(StoreError):
    """A value JSON cannot hold (NaN, a set, a Python object) was handed to the store.

    Nothing of the transaction was written, and the store itself is fine: the fault is
    upstream (every producer of values checks them first), so this is never worth a
    "resume once the store works again". The engine's journal catches it and fails the run.
    """


class RunBusy(RunnerError):
    """``resume``/``retry`` of a run that another live runner process is executing."""

    exit_code = 2


class LeaseLost(RunBusy):
    """A write fenced by a lease that another process has since taken: nothing was written.

    The run goes on in the process that holds the lease now; this one must stop at once.
    """


class Refused(RunnerError):
    """A request that the run's current state does not allow; nothing was changed."""

    exit_code = 2


class AuthError(RunnerError):
    """A caller is not allowed to do what it asked."""

    exit_code = 2


class Interrupted(RunnerError):
    """The user interrupted the run; it is left resumable."""

    exit_code = 130


@dataclass
class ToolFailure(Exception):
    """A tool call that failed: the tool's own ``isError`` message, a timeout, a lost agent.

    ``retryable`` is False for failures that another attempt cannot fix (sandbox violations,
    unknown tools), so the scheduler does not waste attempts on them.
    """

    message: str
    retryable: bool = True
    agent_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message
