"""The rules of file locks (leases over glob patterns), shared by every store backend.

A lock is a row ``{file_path, agent_id, exclusive, fencing_token, acquired_at,
expires_at}`` where ``file_path`` is a normalized pattern (:mod:`runner.core.globs`).
Two locks conflict when their path sets overlap, at least one is exclusive, and they
belong to different agents (an agent never blocks itself). Expired locks are free.

The SQL stores apply :func:`decide` to the live rows they load inside the transaction
that grants; the memory store keeps a :class:`LockTable`. Both therefore answer alike,
and the decision is pure: the time comes in as stored ISO timestamps, never read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.core.globs import overlaps

LOCK_FIELDS = ("file_path", "agent_id", "exclusive", "fencing_token", "acquired_at", "expires_at")


def lock_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A lock as callers see it (a copy with the public fields, ``exclusive`` a real bool)."""
    out = {k: row[k] for k in LOCK_FIELDS}
    out["exclusive"] = bool(out["exclusive"])
    out["fencing_token"] = int(out["fencing_token"])
    return out


def conflicting(
    live: Iterable[Mapping[str, Any]], file_path: str, agent_id: str, exclusive: bool
) -> list[dict[str, Any]]:
    """The live locks of other agents that a lock on ``file_path`` would conflict with.

    Ordered by pattern then agent, so the answer does not depend on storage order.
    """
    found = [
        lock_view(row)
        for row in live
        if row["agent_id"] != agent_id
        and (exclusive or bool(row["exclusive"]))
        and overlaps(str(row["file_path"]), file_path)
    ]
    return sorted(found, key=lambda r: (r["file_path"], r["agent_id"]))


def decide(
    live: Iterable[Mapping[str, Any]], file_path: str, agent_id: str, exclusive: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``(conflicts, own)``: what blocks the grant, and the agent's live lock on this very pattern."""
    rows = list(live)
    own = next((lock_view(r) for r in rows if r["file_path"] == file_path and r["agent_id"] == agent_id), None)
    return conflicting(rows, file_path, agent_id, exclusive), own


class LockTable:
    """File locks in process memory (the memory store's); the caller holds its lock and passes the time.

    ``tokens`` counts grants per pattern: a fencing token is never given out twice for a
    pattern, even after the lock it fenced was released or expired.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.tokens: dict[str, int] = {}

    def _purge(self, now: str) -> None:
        for key in [k for k, r in self.rows.items() if r["expires_at"] <= now]:
            del self.rows[key]

    def live(self, now: str) -> list[dict[str, Any]]:
        """Unexpired locks, by pattern then agent."""
        self._purge(now)
        return [lock_view(self.rows[k]) for k in sorted(self.rows)]

    def acquire(self, file_path: str, agent_id: str, exclusive: bool, now: str, expires_at: str) -> dict[str, Any]:
        """``{"granted": True, "renewed", "lock"}`` or ``{"granted": False, "conflicts"}``."""
        self._purge(now)
        conflicts, own = decide(self.rows.values(), file_path, agent_id, exclusive)
        if conflicts:
            return {"granted": False, "conflicts": conflicts}
        key = (file_path, agent_id)
        if own is not None:
            self.rows[key].update(exclusive=exclusive, expires_at=expires_at)
            return {"granted": True, "renewed": True, "lock": lock_view(self.rows[key])}
        token = self.tokens.get(file_path, 0) + 1
        self.tokens[file_path] = token
        self.rows[key] = {
            "file_path": file_path,
            "agent_id": agent_id,
            "exclusive": exclusive,
            "fencing_token": token,
            "acquired_at": now,
            "expires_at": expires_at,
        }
        return {"granted": True, "renewed": False, "lock": lock_view(self.rows[key])}

    def renew(self, file_path: str, agent_id: str, now: str, expires_at: str) -> dict[str, Any] | None:
        """The renewed lock (same token), or None when the agent holds no live lock on the pattern."""
        self._purge(now)
        row = self.rows.get((file_path, agent_id))
        if row is None:
            return None
        row["expires_at"] = expires_at
        return lock_view(row)

    def release(self, file_path: str, agent_id: str, force: bool, now: str) -> list[dict[str, Any]]:
        """Drop the agent's lock on the pattern (``force``: every agent's); the live locks dropped."""
        self._purge(now)
        keys = [k for k in sorted(self.rows) if k[0] == file_path and (force or k[1] == agent_id)]
        return [lock_view(self.rows.pop(k)) for k in keys]
