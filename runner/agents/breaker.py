"""A circuit breaker per agent (SPEC §5): stop sending work to an agent that keeps failing.

After ``threshold`` consecutive failures the circuit *opens*: selection skips the agent
for ``cooldown`` seconds, so a broken agent costs the run a quick skip instead of a
timeout per step. Then it is *half open*: one call (the probe) goes through; its success
closes the circuit, its failure opens it for another cool-down.

What counts (decided by the caller, ``AgentConnection``): an answer from the agent is a
success, even an ``isError`` result or a refusal of bad arguments (the agent is working;
the step is wrong); timeouts, lost connections, failed restarts and protocol errors are
failures. Pure and clock-free: every method that depends on time takes ``now`` (seconds
on any monotonic clock), so tests drive it with plain numbers. No I/O, no MCP import.
"""

from __future__ import annotations

from enum import Enum


class CircuitState(str, Enum):
    """The breaker's states, spelled as ``find_agents`` and events show them."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a cool-down and a single half-open probe."""

    THRESHOLD = 5
    COOLDOWN = 30.0

    __slots__ = ("threshold", "cooldown", "failures", "opened_at", "_probing")

    def __init__(self, threshold: int | None = None, cooldown: float | None = None) -> None:
        self.threshold = self.THRESHOLD if threshold is None else threshold
        self.cooldown = self.COOLDOWN if cooldown is None else cooldown
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.failures = 0  # consecutive failures since the last success
        self.opened_at: float | None = None  # None while closed
        self._probing = False  # the half-open probe is in flight

    def __repr__(self) -> str:
        opened = "" if self.opened_at is None else f", opened_at={self.opened_at:g}"
        return f"<CircuitBreaker failures={self.failures}/{self.threshold}{opened}>"

    def state(self, now: float) -> CircuitState:
        """``closed``; ``open`` during the cool-down; ``half_open`` once it is over."""
        if self.opened_at is None:
            return CircuitState.CLOSED
        if now - self.opened_at < self.cooldown:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def allows(self, now: float) -> bool:
        """Whether a call may go now (a query: selection uses it to skip the agent).

        False while open, and while half open with the probe already in flight.
        """
        if self.opened_at is None:
            return True
        return now - self.opened_at >= self.cooldown and not self._probing

    def acquire(self, now: float) -> bool:
        """Claim the right to call now; in half-open state only the first caller gets it.

        A caller that got True must report the call's end with ``success``, ``failure``
        or, when it ended without a verdict (cancelled), ``release``.
        """
        if self.opened_at is None:
            return True
        if now - self.opened_at < self.cooldown or self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """The agent answered: close the circuit and forget past failures."""
        self.failures = 0
        self.opened_at = None
        self._probing = False

    def failure(self, now: float) -> None:
        """The agent failed: count it; open at the threshold, re-open after a failed probe.

        A failure reported while the circuit is already open (a call that was in flight
        when it opened) does not extend the cool-down.
        """
        self.failures += 1
        if self.opened_at is None:
            if self.failures >= self.threshold:
                self.opened_at = now
        elif now - self.opened_at >= self.cooldown:
            self.opened_at = now  # the probe (or a straggler after the cool-down) failed
        self._probing = False

    def release(self) -> None:
        """The claimed call ended without a verdict: let another probe through."""
        self._probing = False
