"""SQL shared by SQLite and PostgreSQL: every statement once, and rows ↔ records.

Statements are written with ``?`` placeholders (psycopg gets ``%s``). Values that are not
scalars (inputs, results, agent records, audit details) are JSON text — never pickles —
so any runner version, ``sqlite3`` or ``psql`` can read them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from runner.errors import NotStorable
from runner.model.events import Event
from runner.model.records import RunRecord, StepRecord, WorkflowRecord

# Built once (json.dumps(**kw) builds one per call). NaN and Infinity are refused: Python
# would write them, but they are not JSON, and no other reader of the store (sqlite3's
# json functions, psql, another language) would take them.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
loads = json.loads


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder itself, made once: ``JSONEncoder.encode`` builds one per call (two Python
# frames, a closure and the encoder, ~3,000 instructions; a chain step encodes three
# values). No circular-reference markers: they are one dict per call there, and a shared
# one is not safe across threads; a cycle ends in RecursionError instead, refused alike.
# Same output as ``_encode`` (compact separators, ASCII, NaN refused); absent where the
# interpreter has no C accelerator, and then ``_encode`` does it.
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
_c_encode: Any = (
    None
    if _make_encoder is None
    else _make_encoder(None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)
)


def to_json(value: Any, what: str) -> str:
    """``value`` as compact JSON text; a value JSON cannot hold is NotStorable, never a pickle."""
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0))
        return _encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotStorable(f"cannot store {what}: {exc}") from None


def one_line(exc: BaseException) -> str:
    """A driver's message on one line: its first line, spaces collapsed (libpq's run on)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[0].split()) if lines else type(exc).__name__


def opt_json(value: Any, what: str) -> str | None:
    return None if value is None else to_json(value, what)


def opt_loads(text: str | None) -> Any:
    return None if text is None else loads(text)


RUN_COLS = (
    "run_id, workflow_name, workflow_hash, status, inputs, outputs, error, "
    "started_at, finished_at, source, attempt, parent_run_id"
)
STEP_COLS = (
    "run_id, step_id, status, attempts, agent_id, result, result_text, error, started_at, finished_at, duration_ms, "
    "content"
)
RUN_READ = RUN_COLS + ", runs_on, worker"  # what reads return (writes leave those two to their owners)
WF_COLS = "name, content_hash, source_text, version, created_at, creator_id, agent_modifiable, origin"
EVENT_COLS = "seq, run_id, ts, type, step_id, attempt, agent_id, error, data"
MSG_COLS = "id, sender_id, recipient_id, content, urgent, created_at, read_at"
PROJECT_COLS = "id, name, description, lead_agent_id, status, created_at"
GOAL_COLS = "id, name, description, project_id, status, created_at"

# Written once for both dialects. ``{for_update}`` / ``{for_update_run}`` lock rows in PostgreSQL.
LOCK_COLS = "file_path, agent_id, exclusive, fencing_token, acquired_at, expires_at"

SQL: dict[str, str] = {
    "version": "SELECT COALESCE(MAX(version), 0) FROM schema_version",
    "record_version": "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
    "run_get": f"SELECT {RUN_READ} FROM runs WHERE run_id = ?",
    "run_lock": f"SELECT {RUN_READ} FROM runs WHERE run_id = ?{{for_update}}",
    "run_exists": "SELECT 1 FROM runs WHERE run_id = ?",
    "run_insert": f"INSERT INTO runs ({RUN_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "run_update": "UPDATE runs SET workflow_name = ?, workflow_hash = ?, status = ?, inputs = ?, outputs = ?, "
    "error = ?, started_at = ?, finished_at = ?, source = ?, attempt = ?, parent_run_id = ? WHERE run_id = ?",
    "run_prefix": "SELECT run_id FROM runs WHERE substr(run_id, 1, CAST(? AS INTEGER)) = ? ORDER BY run_id LIMIT 6",
    "step_get": f"SELECT {STEP_COLS} FROM step_rows WHERE run_id = ? AND step_id = ?",
    "steps_of_run": f"SELECT {STEP_COLS} FROM step_rows WHERE run_id = ? ORDER BY n",
    "step_insert": f"INSERT INTO step_rows ({STEP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "step_update": "UPDATE step_rows SET status = ?, attempts = ?, agent_id = ?, result = ?, result_text = ?, error = ?, "
    "started_at = ?, finished_at = ?, duration_ms = ?, content = ? WHERE run_id = ? AND step_id = ?",
    "run_owner": "SELECT owner, lease_until, epoch FROM runs WHERE run_id = ?{for_update}",
    # An interactive claim (`runner run`, `resume`) takes the run out of the workers' care.
    "run_claim": "UPDATE runs SET owner = ?, lease_until = ?, epoch = ?, worker = NULL WHERE run_id = ?",
    "run_runs_on": "UPDATE runs SET runs_on = ? WHERE run_id = ?",
    "run_fence": "SELECT owner, epoch FROM runs WHERE run_id = ?{for_update}",
    "run_renew": "UPDATE runs SET lease_until = ? WHERE run_id = ? AND owner = ?",
    "run_release": "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?",
    "item_put": "INSERT INTO step_items (run_id, step_id, idx, result) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id, step_id, idx) DO UPDATE SET result = excluded.result",
    "items_clear": "DELETE FROM step_items WHERE run_id = ? AND step_id = ?",
    "items_of_run": "SELECT step_id, idx, result FROM step_items WHERE run_id = ?",
    "items_of_step": "SELECT step_id, idx, result FROM step_items WHERE run_id = ? AND step_id = ?",
    "event_insert": "INSERT INTO events (run_id, ts, type, step_id, attempt, agent_id, error, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    # The same, written only while the run's lease is (owner, epoch): the fence check and
    # the first event of a group commit in one statement (no row inserted: LeaseLost).
    "event_insert_fenced": "INSERT INTO events (run_id, ts, type, step_id, attempt, agent_id, error, data) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND owner = ? AND epoch = ?)",
    "events_of_run": f"SELECT {EVENT_COLS} FROM events WHERE run_id = ? ORDER BY seq",
    "events_after": f"SELECT {EVENT_COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
    "events_after_run": f"SELECT {EVENT_COLS} FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    "wf_by_hash": f"SELECT {WF_COLS} FROM workflows WHERE name = ? AND content_hash = ?",
    "wf_latest": f"SELECT {WF_COLS} FROM workflows WHERE name = ? ORDER BY version DESC LIMIT 1",
    "wf_versions": f"SELECT {WF_COLS} FROM workflows WHERE name = ? ORDER BY version",
    "wf_max": "SELECT COALESCE(MAX(version), 0) FROM workflows WHERE name = ?",
    "wf_insert": f"INSERT INTO workflows ({WF_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "wf_list": f"SELECT {WF_COLS} FROM workflows w "
    "WHERE version = (SELECT MAX(version) FROM workflows v WHERE v.name = w.name) ORDER BY name",
    "agent_put": "INSERT INTO agents (id, data, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
    "agent_get": "SELECT id, data FROM agents WHERE id = ?",
    "agent_list": "SELECT id, data FROM agents ORDER BY id",
    "agent_delete": "DELETE FROM agents WHERE id = ?",
    "token_put": "INSERT INTO tokens (agent_id, token_hash) VALUES (?, ?) "
    "ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash",
    "token_get": "SELECT token_hash FROM tokens WHERE agent_id = ?",
    "token_agent": "SELECT agent_id FROM tokens WHERE token_hash = ?",
    "token_delete": "DELETE FROM tokens WHERE agent_id = ?",
    "msg_insert": "INSERT INTO messages (sender_id, recipient_id, content, urgent, created_at) VALUES (?, ?, ?, ?, ?)",
    "msg_mark": "UPDATE messages SET read_at = ? WHERE id = ? AND read_at IS NULL",
    # File locks (the rules are runner.core.filelocks'; the grant runs in one serialized transaction).
    "lock_purge": "DELETE FROM file_locks WHERE expires_at <= ?",
    "lock_live": f"SELECT {LOCK_COLS} FROM file_locks ORDER BY file_path, agent_id",
    "lock_extend": "UPDATE file_locks SET exclusive = ?, expires_at = ? WHERE file_path = ? AND agent_id = ?",
    "lock_renew": "UPDATE file_locks SET expires_at = ? WHERE file_path = ? AND agent_id = ? AND expires_at > ?",
    "lock_token_next": "INSERT INTO lock_tokens (file_path, last_token) VALUES (?, 1) "
    "ON CONFLICT (file_path) DO UPDATE SET last_token = lock_tokens.last_token + 1",
    "lock_token_get": "SELECT last_token FROM lock_tokens WHERE file_path = ?",
    "lock_insert": f"INSERT INTO file_locks ({LOCK_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
    "lock_get": f"SELECT {LOCK_COLS} FROM file_locks WHERE file_path = ? AND agent_id = ?",
    "lock_of_path": f"SELECT {LOCK_COLS} FROM file_locks WHERE file_path = ? ORDER BY agent_id",
    "lock_delete": "DELETE FROM file_locks WHERE file_path = ? AND agent_id = ?",
    "lock_delete_path": "DELETE FROM file_locks WHERE file_path = ?",
    "project_insert": f"INSERT INTO projects ({PROJECT_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
    "project_get": f"SELECT {PROJECT_COLS} FROM projects WHERE id = ?",
    "project_list": f"SELECT {PROJECT_COLS} FROM projects ORDER BY created_at, id",
    "goal_insert": f"INSERT INTO goals ({GOAL_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
    "goal_get": f"SELECT {GOAL_COLS} FROM goals WHERE id = ?",
    "goal_list": f"SELECT {GOAL_COLS} FROM goals ORDER BY created_at, id",
    "goal_list_project": f"SELECT {GOAL_COLS} FROM goals WHERE project_id = ? ORDER BY created_at, id",
    "audit_insert": "INSERT INTO audit_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
    "record_put": "INSERT INTO records (kind, id, data, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
    "record_get": "SELECT data FROM records WHERE kind = ? AND id = ?",
    "record_list": "SELECT data FROM records WHERE kind = ? ORDER BY created_at, id LIMIT ?",
}


def run_row(r: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=r[0],
        workflow_name=r[1],
        workflow_hash=r[2],
        status=r[3],
        inputs=opt_loads(r[4]) or {},
        outputs=opt_loads(r[5]),
        error=r[6],
        started_at=r[7],
        finished_at=r[8],
        source=r[9],
        attempt=r[10],
        parent_run_id=r[11],
        runs_on=opt_loads(r[12]) if len(r) > 12 else None,
        worker=r[13] if len(r) > 13 else None,
    )


def run_params(run: RunRecord) -> tuple[Any, ...]:
    return (
        run.workflow_name,
        run.workflow_hash,
        run.status,
        to_json(run.inputs, f"inputs of run {run.run_id}"),
        opt_json(run.outputs, f"outputs of run {run.run_id}"),
        run.error,
        run.started_at,
        run.finished_at,
        run.source,
        run.attempt,
        run.parent_run_id,
    )


def step_row(r: Sequence[Any]) -> StepRecord:
    return StepRecord(
        run_id=r[0],
        step_id=r[1],
        status=r[2],
        attempts=r[3],
        agent_id=r[4],
        result=opt_loads(r[5]),
        text=r[6],
        error=r[7],
        started_at=r[8],
        finished_at=r[9],
        duration_ms=r[10],
        content=opt_loads(r[11]),
    )


def step_params(s: StepRecord) -> tuple[Any, ...]:
    return (
        s.status,
        s.attempts,
        s.agent_id,
        opt_json(s.result, f"result of step {s.step_id}"),
        s.text,
        s.error,
        s.started_at,
        s.finished_at,
        s.duration_ms,
        opt_json(s.content, f"content of step {s.step_id}"),
    )


def wf_row(r: Sequence[Any]) -> WorkflowRecord:
    return WorkflowRecord(
        name=r[0],
        content_hash=r[1],
        source_text=r[2],
        version=r[3],
        created_at=r[4],
        creator_id=r[5],
        agent_modifiable=bool(r[6]),
        origin=r[7],
    )


def event_row(r: Sequence[Any]) -> tuple[int, Event]:
    data = loads(r[8]) if r[8] else {}
    return r[0], Event(
        type=r[3], run_id=r[1], ts=r[2], step_id=r[4], attempt=r[5], agent_id=r[6], error=r[7], data=data
    )


def msg_row(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "sender_id": r[1],
        "recipient_id": r[2],
        "content": r[3],
        "urgent": bool(r[4]),
        "created_at": r[5],
        "read_at": r[6],
    }


def changed(cur: Any) -> bool:
    """Whether the cursor's last statement touched a row (DB-API ``rowcount``: an int, -1 if unknown)."""
    count: int = cur.rowcount
    return count > 0
