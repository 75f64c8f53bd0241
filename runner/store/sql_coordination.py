"""The coordination roles on SQL: the agent registry and tokens, messages, file locks,
projects, goals and the audit log.

A mixin of :class:`runner.store.sql.SqlStore`, kept apart from the run log (``sql.py``)
and the run lifecycle (``sql_lifecycle.py``): each public method is one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from runner.core.filelocks import LOCK_FIELDS, decide, lock_view
from runner.errors import NotFound
from runner.model.clock import iso_after, normalize_ts
from runner.model.events import now_iso
from runner.store.sql_rows import (
    GOAL_COLS,
    MSG_COLS,
    PROJECT_COLS,
    changed,
    loads,
    msg_row,
    opt_json,
    opt_loads,
    to_json,
)


class SqlCoordination:
    """Registry, messages, locks, projects, goals, audit; needs SqlStore's ``_tx``, ``_sql`` and helpers."""

    url: str
    _sql: dict[str, str]
    integrity_errors: tuple[type[BaseException], ...]

    # Provided by SqlStore (declared for the type checker).
    def _tx(self, write: bool = True) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _adapt(self, stmt: str) -> str:
        raise NotImplementedError

    def _insert_id(self, stmt: str, params: Sequence[Any], id_col: str) -> int:
        raise NotImplementedError

    # --- agents and their tokens ------------------------------------------------------
    def put_agent(self, agent_id: str, data: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute(self._sql["agent_put"], (agent_id, to_json(data, f"agent {agent_id}"), now_iso()))

    def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's data, with ``id`` set to ``agent_id``."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql["agent_get"], (agent_id,))
            row = cur.fetchone()
        return {**loads(row[1]), "id": row[0]} if row else None

    def list_agents(self) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["agent_list"])
            return [{**loads(r[1]), "id": r[0]} for r in cur.fetchall()]

    def delete_agent(self, agent_id: str) -> bool:
        """Forget the agent and revoke its token; False when it was not registered."""
        with self._tx() as cur:
            cur.execute(self._sql["agent_delete"], (agent_id,))
            deleted = changed(cur)
            cur.execute(self._sql["token_delete"], (agent_id,))
        return deleted

    def put_token(self, agent_id: str, token_hash: str) -> None:
        with self._tx() as cur:
            cur.execute(self._sql["token_put"], (agent_id, token_hash))

    def get_token_hash(self, agent_id: str) -> str | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["token_get"], (agent_id,))
            row = cur.fetchone()
        return row[0] if row else None

    def agent_for_token(self, token_hash: str) -> str | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["token_agent"], (token_hash,))
            row = cur.fetchone()
        return row[0] if row else None

    def delete_token(self, agent_id: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._sql["token_delete"], (agent_id,))
            return changed(cur)

    # --- messages ---------------------------------------------------------------------
    def add_message(self, sender_id: str, recipient_id: str, content: str, urgent: bool = False) -> dict[str, Any]:
        created = now_iso()
        with self._tx():
            mid = self._insert_id(
                self._sql["msg_insert"], (sender_id, recipient_id, content, int(urgent), created), "id"
            )
        return msg_row((mid, sender_id, recipient_id, content, urgent, created, None))

    def get_messages(
        self, agent_id: str, since: str | None = None, unread_only: bool = False, mark_read: bool = False
    ) -> list[dict[str, Any]]:
        """Messages to ``agent_id``, oldest first; ``mark_read`` marks exactly those returned."""
        stmt = f"SELECT {MSG_COLS} FROM messages WHERE recipient_id = ?"
        params: list[Any] = [agent_id]
        if since is not None:
            stmt += " AND created_at > ?"
            params.append(normalize_ts(since))
        if unread_only:
            stmt += " AND read_at IS NULL"
        stmt += " ORDER BY created_at, id"
        with self._tx(write=mark_read) as cur:
            cur.execute(self._adapt(stmt), params)
            messages = [msg_row(r) for r in cur.fetchall()]
            if mark_read:
                now = now_iso()
                unread = [m for m in messages if m["read_at"] is None]
                if unread:
                    cur.executemany(self._sql["msg_mark"], [(now, m["id"]) for m in unread])
                for m in unread:
                    m["read_at"] = now
        return messages

    def sent_messages(self, sender_id: str, since: str | None = None) -> list[dict[str, Any]]:
        """Messages from ``sender_id``, oldest first (for the anti-jam checks)."""
        stmt = f"SELECT {MSG_COLS} FROM messages WHERE sender_id = ?"
        params: list[Any] = [sender_id]
        if since is not None:
            stmt += " AND created_at > ?"
            params.append(normalize_ts(since))
        with self._tx(write=False) as cur:
            cur.execute(self._adapt(stmt + " ORDER BY created_at, id"), params)
            return [msg_row(r) for r in cur.fetchall()]

    # --- file locks -------------------------------------------------------------------
    def _serialize(self, key: str) -> None:
        raise NotImplementedError

    def acquire_lock(self, file_path: str, agent_id: str, exclusive: bool, ttl_s: float) -> dict[str, Any]:
        """Grant or refuse in one transaction that every other acquisition waits for.

        SQLite's ``BEGIN IMMEDIATE`` already admits one writer at a time; PostgreSQL
        takes a transaction-scoped advisory lock. Inside it, the live locks are loaded
        and :func:`decide` (exact glob overlap) runs in Python, so no two processes can
        both see a pattern free and both take it.
        """
        now = now_iso()
        sql = self._sql
        with self._tx() as cur:
            self._serialize("runner.file_locks")
            cur.execute(sql["lock_purge"], (now,))
            cur.execute(sql["lock_live"])
            conflicts, own = decide(_lock_rows(cur.fetchall()), file_path, agent_id, exclusive)
            if conflicts:
                return {"granted": False, "conflicts": conflicts}
            expires = iso_after(ttl_s)
            if own is not None:
                cur.execute(sql["lock_extend"], (int(exclusive), expires, file_path, agent_id))
                return {"granted": True, "renewed": True, "lock": {**own, "exclusive": exclusive, "expires_at": expires}}
            cur.execute(sql["lock_token_next"], (file_path,))
            cur.execute(sql["lock_token_get"], (file_path,))
            token = int(cur.fetchone()[0])
            row = (file_path, agent_id, int(exclusive), token, now, expires)
            cur.execute(sql["lock_insert"], row)
        return {"granted": True, "renewed": False, "lock": lock_view(dict(zip(LOCK_FIELDS, row, strict=True)))}

    def renew_lock(self, file_path: str, agent_id: str, ttl_s: float) -> dict[str, Any] | None:
        """Extend the agent's live lock (same token); None when it holds none (an expired one is none)."""
        expires = iso_after(ttl_s)
        with self._tx() as cur:
            self._serialize("runner.file_locks")
            cur.execute(self._sql["lock_renew"], (expires, file_path, agent_id, now_iso()))
            if not changed(cur):
                return None
            cur.execute(self._sql["lock_get"], (file_path, agent_id))
            rows = _lock_rows(cur.fetchall())
        return rows[0] if rows else None

    def release_lock(self, file_path: str, agent_id: str, force: bool = False) -> list[dict[str, Any]]:
        """Drop the agent's lock on the pattern (``force``: every holder's); the live ones dropped."""
        now = now_iso()
        with self._tx() as cur:
            if force:
                cur.execute(self._sql["lock_of_path"], (file_path,))
            else:
                cur.execute(self._sql["lock_get"], (file_path, agent_id))
            dropped = [r for r in _lock_rows(cur.fetchall()) if r["expires_at"] > now]
            if force:
                cur.execute(self._sql["lock_delete_path"], (file_path,))
            else:
                cur.execute(self._sql["lock_delete"], (file_path, agent_id))
        return dropped

    def list_locks(self) -> list[dict[str, Any]]:
        """Every live lock, by pattern then agent."""
        now = now_iso()
        with self._tx(write=False) as cur:
            cur.execute(self._sql["lock_live"])
            return [r for r in _lock_rows(cur.fetchall()) if r["expires_at"] > now]

    # --- projects and goals -----------------------------------------------------------
    def create_project(
        self, name: str, description: str = "", lead_agent_id: str | None = None, status: str = "active"
    ) -> dict[str, Any]:
        row = ("proj_" + os.urandom(8).hex(), name, description, lead_agent_id, status, now_iso())
        with self._tx() as cur:
            cur.execute(self._sql["project_insert"], row)
        return dict(zip(PROJECT_COLS.split(", "), row, strict=True))

    def get_project(self, project_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["project_get"], (project_id,))
            row = cur.fetchone()
        return dict(zip(PROJECT_COLS.split(", "), row, strict=True)) if row else None

    def list_projects(self) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["project_list"])
            return [dict(zip(PROJECT_COLS.split(", "), r, strict=True)) for r in cur.fetchall()]

    def create_goal(
        self, name: str, description: str = "", project_id: str | None = None, status: str = "pending"
    ) -> dict[str, Any]:
        """A goal, optionally under a project (which must exist)."""
        row = ("goal_" + os.urandom(8).hex(), name, description, project_id, status, now_iso())
        with self._tx() as cur:
            if project_id is not None:
                cur.execute(self._sql["project_get"], (project_id,))
                if cur.fetchone() is None:
                    raise NotFound(f"no project with id {project_id!r} in {self.url}")
            cur.execute(self._sql["goal_insert"], row)
        return dict(zip(GOAL_COLS.split(", "), row, strict=True))

    def get_goal(self, goal_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["goal_get"], (goal_id,))
            row = cur.fetchone()
        return dict(zip(GOAL_COLS.split(", "), row, strict=True)) if row else None

    def list_goals(self, project_id: str | None = None) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            if project_id is None:
                cur.execute(self._sql["goal_list"])
            else:
                cur.execute(self._sql["goal_list_project"], (project_id,))
            return [dict(zip(GOAL_COLS.split(", "), r, strict=True)) for r in cur.fetchall()]

    # --- records of the coordination tools ------------------------------------------
    def put_record(self, kind: str, record_id: str, data: dict[str, Any]) -> None:
        now = now_iso()
        with self._tx() as cur:
            cur.execute(self._sql["record_put"], (kind, record_id, to_json(data, f"{kind} {record_id}"), now, now))

    def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as cur:
            cur.execute(self._sql["record_get"], (kind, record_id))
            row = cur.fetchone()
        return loads(row[0]) if row else None

    def list_records(self, kind: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The ``kind`` collection, oldest first."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql["record_list"], (kind, limit))
            return [loads(r[0]) for r in cur.fetchall()]

    # --- audit log --------------------------------------------------------------------
    def add_audit(
        self, actor: str, action: str, target: str | None = None, detail: dict[str, Any] | None = None
    ) -> int:
        params = (now_iso(), actor, action, target, opt_json(detail, f"audit detail of {action}"))
        with self._tx():
            return self._insert_id(self._sql["audit_insert"], params, "seq")

    def list_audit(
        self, actor: str | None = None, action: str | None = None, limit: int = 100, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first (``since``: strictly after that ISO timestamp)."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("ts > ?")
            params.append(normalize_ts(since))
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        stmt = f"SELECT seq, ts, actor, action, target, detail FROM audit_log{clause} ORDER BY seq DESC LIMIT ?"
        with self._tx(write=False) as cur:
            cur.execute(self._adapt(stmt), (*params, limit))
            rows = cur.fetchall()
        keys = ("seq", "ts", "actor", "action", "target")
        return [{**dict(zip(keys, r[:5], strict=True)), "detail": opt_loads(r[5])} for r in rows]


def _lock_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [lock_view(dict(zip(LOCK_FIELDS, r, strict=True))) for r in rows]
