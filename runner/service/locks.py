"""File locks as leases over glob patterns: the service behind ``acquire_file_lock``,
``renew_file_lock``, ``release_file_lock`` and ``check_file_lock`` (SPEC §5).

Why leases over globs: an agent about to refactor ``src/**/*.py`` must be able to say so
in one lock, and another agent's lock on ``src/a/b.py`` must then be refused — decided
exactly on the two patterns (:mod:`runner.core.globs`), never by comparing strings. A
lock expires unless renewed, so a crashed agent cannot hold files forever, and each grant
carries a fencing token that grows per pattern: a writer that lost its lease can be told
apart from the one holding it now by the token it presents.

Arguments are checked here and a bad one raises ``BadArgument`` naming it before the
store is touched. Who may act as which agent (and who may ``force``) is the server's
business; this layer implements what it is asked to.
"""

from __future__ import annotations

import math
from typing import Any

from runner.core.globs import normalize_pattern, overlaps, witness
from runner.errors import BadArgument, Refused
from runner.service.registry import check_id
from runner.store.base import Store

MAX_TTL_SECONDS = 86400.0


def check_pattern(value: Any, argument: str = "file_path") -> str:
    """The normalized pattern, or ``BadArgument`` saying what is wrong with it."""
    if not isinstance(value, str):
        raise BadArgument(argument, f"must be a path or glob pattern (a string), not {type(value).__name__}")
    try:
        return normalize_pattern(value)
    except ValueError as exc:
        raise BadArgument(argument, str(exc)) from None


def check_ttl(value: Any, argument: str = "ttl_seconds") -> float:
    """A lease length: a finite number of seconds, more than 0 and at most a day."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadArgument(argument, f"must be a number of seconds, not {value!r}")
    if not 0 < value <= MAX_TTL_SECONDS:
        raise BadArgument(argument, f"must be more than 0 and at most {MAX_TTL_SECONDS:g} seconds, not {value:g}")
    return float(value)


def _check_bool(value: Any, argument: str) -> bool:
    if not isinstance(value, bool):
        raise BadArgument(argument, f"must be true or false, not {value!r}")
    return value


class FileLocks:
    """Lease locks over one store (memory, SQLite or PostgreSQL: atomic across processes)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def acquire(
        self, agent_id: str, file_path: str, exclusive: bool = True, ttl_seconds: float = 300
    ) -> dict[str, Any]:
        """Take a lease on every path ``file_path`` matches, or say who holds what in the way.

        Two locks conflict when their path sets overlap, at least one is exclusive, and
        they belong to different agents. The same agent acquiring the identical pattern
        again extends its lease and keeps its token (``renewed``). A refusal lists each
        conflicting lock with ``example``, a path both patterns match.
        """
        check_id(agent_id, "agent_id")
        pattern = check_pattern(file_path)
        _check_bool(exclusive, "exclusive")
        ttl = check_ttl(ttl_seconds)
        out = self.store.acquire_lock(pattern, agent_id, exclusive, ttl)
        if not out["granted"]:
            return {
                "granted": False,
                "file_path": pattern,
                "agent_id": agent_id,
                "exclusive": exclusive,
                "conflicts": [
                    {
                        "file_path": c["file_path"],
                        "agent_id": c["agent_id"],
                        "exclusive": c["exclusive"],
                        "expires_at": c["expires_at"],
                        "example": witness(c["file_path"], pattern),
                    }
                    for c in out["conflicts"]
                ],
            }
        return {"granted": True, **out["lock"], "renewed": bool(out["renewed"]), "ttl_seconds": ttl}

    def renew(self, agent_id: str, file_path: str, ttl_seconds: float = 300) -> dict[str, Any]:
        """Extend the agent's live lease by ``ttl_seconds`` from now, keeping its fencing token.

        ``Refused`` (nothing changed) when the agent holds no live lock on exactly this
        pattern: an expired lease is gone, since another agent may have taken the files.
        """
        check_id(agent_id, "agent_id")
        pattern = check_pattern(file_path)
        ttl = check_ttl(ttl_seconds)
        lock = self.store.renew_lock(pattern, agent_id, ttl)
        if lock is None:
            raise Refused(
                f"argument 'file_path': {agent_id!r} holds no live lock on {pattern!r} "
                "(never acquired, released, or expired); acquire it again"
            )
        return {"renewed": True, **lock, "ttl_seconds": ttl}

    def release(self, agent_id: str, file_path: str, force: bool = False) -> dict[str, Any]:
        """Give the lease back (``force``: whoever holds the pattern — the operator's, checked by the server).

        Releasing a lock not held is not an error (a retried release must not fail):
        ``released`` is then false and ``reason`` says why.
        """
        check_id(agent_id, "agent_id")
        pattern = check_pattern(file_path)
        _check_bool(force, "force")
        dropped = self.store.release_lock(pattern, agent_id, force=force)
        out: dict[str, Any] = {
            "released": bool(dropped),
            "file_path": pattern,
            "agent_id": agent_id,
            "force": force,
            "locks": dropped,
        }
        if not dropped:
            who = "nobody holds a" if force else f"{agent_id!r} holds no"
            out["reason"] = f"{who} live lock on exactly {pattern!r} (never acquired, already released, or expired)"
        return out

    def check(self, file_path: str) -> dict[str, Any]:
        """Every live lock whose path set overlaps ``file_path`` (a path or a pattern).

        ``locked`` is true when there is any; ``exclusive`` when one of them is exclusive,
        i.e. when nobody else could take even a shared lock on ``file_path`` now.
        """
        pattern = check_pattern(file_path)
        found = [
            {**lock, "example": witness(lock["file_path"], pattern)}
            for lock in self.store.list_locks()
            if overlaps(lock["file_path"], pattern)
        ]
        return {
            "file_path": pattern,
            "locked": bool(found),
            "exclusive": any(lock["exclusive"] for lock in found),
            "locks": found,
        }
