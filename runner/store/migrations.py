"""The SQL schema, as forward-only migrations shared by SQLite and PostgreSQL.

Each entry of :data:`MIGRATIONS` is one script; migration *N* (1-based) takes a database
from schema version N-1 to N and is recorded in ``schema_version`` in the same
transaction. The dialects differ in one place only, the auto-numbered key column,
spelled ``{seq_pk}`` here. Everything else (JSON as TEXT, timestamps as ISO 8601 TEXT in
UTC, booleans as INTEGER 0/1) is written once. Never edit a published migration: append
a new one.
"""

from __future__ import annotations

import re

BOOTSTRAP = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"

MIGRATIONS: list[str] = [
    # 1: everything the runner, the CLI and the MCP server keep.
    """
    CREATE TABLE workflows (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        source_text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        creator_id TEXT,
        agent_modifiable INTEGER NOT NULL DEFAULT 0,
        origin TEXT NOT NULL DEFAULT 'operator',
        PRIMARY KEY (name, version),
        UNIQUE (name, content_hash)
    );
    CREATE TABLE runs (
        n {seq_pk},
        run_id TEXT NOT NULL UNIQUE,
        workflow_name TEXT NOT NULL,
        workflow_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        inputs TEXT,
        outputs TEXT,
        error TEXT,
        started_at TEXT,
        finished_at TEXT,
        source TEXT,
        attempt INTEGER NOT NULL DEFAULT 1,
        parent_run_id TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX runs_by_time ON runs (created_at);
    CREATE INDEX runs_by_workflow ON runs (workflow_name, created_at);
    CREATE INDEX runs_by_status ON runs (status, created_at);
    CREATE TABLE steps (
        n {seq_pk},
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        agent_id TEXT,
        result TEXT,
        result_text TEXT,
        error TEXT,
        started_at TEXT,
        finished_at TEXT,
        duration_ms DOUBLE PRECISION,
        UNIQUE (run_id, step_id)
    );
    CREATE TABLE step_items (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        result TEXT,
        PRIMARY KEY (run_id, step_id, idx)
    );
    CREATE TABLE events (
        seq {seq_pk},
        run_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        step_id TEXT,
        attempt INTEGER,
        agent_id TEXT,
        error TEXT,
        data TEXT
    );
    CREATE INDEX events_by_run ON events (run_id, seq);
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE messages (
        id {seq_pk},
        sender_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        content TEXT NOT NULL,
        urgent INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        read_at TEXT
    );
    CREATE INDEX messages_by_recipient ON messages (recipient_id, created_at);
    CREATE INDEX messages_by_sender ON messages (sender_id, created_at);
    CREATE TABLE locks (
        file_path TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        lead_agent_id TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE goals (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        project_id TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX goals_by_project ON goals (project_id);
    CREATE TABLE audit_log (
        seq {seq_pk},
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
    );
    CREATE TABLE tokens (
        agent_id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE
    )
    """,
    # 2: a step's content blocks (`steps.<id>.content` must survive a resume), and the
    # lease of the process executing a run (`resume` must not run a run that is alive).
    """
    ALTER TABLE steps ADD COLUMN content TEXT;
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_until TEXT
    """,
    # 3: the run lifecycle in the store. The lease's epoch fences every write of the
    # executing process; pull steps wait in `assignments` for a report from any process;
    # the executing process polls its run's signals (reports, cancel requests) through a
    # partial index that costs nothing for the engine's own events.
    """
    ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE assignments (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        agent_id TEXT,
        attempt INTEGER NOT NULL,
        arguments TEXT,
        assigned_at TEXT NOT NULL,
        deadline TEXT,
        status TEXT NOT NULL,
        reported_at TEXT,
        reported_by TEXT,
        report TEXT,
        PRIMARY KEY (run_id, step_id, idx)
    );
    CREATE INDEX assignments_by_status ON assignments (status, agent_id);
    CREATE INDEX events_signals ON events (run_id, seq) WHERE type IN ('step_reported', 'run_cancel_requested')
    """,
    # 4: the documents of the coordination tools of `runner serve` (collaboration
    # sessions, assistance requests, evaluations, delegated tasks), one collection per kind.
    """
    CREATE TABLE records (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX audit_by_ts ON audit_log (ts)
    """,
    # 5: scale out. `runner worker` processes register in `workers` (one heartbeat each);
    # a run says which labels its worker needs (`runs_on`, JSON) and which worker last
    # claimed it (`worker`: NULL once an interactive runner claims it, so a crashed
    # `runner run` is left for `runner resume`, not taken over).
    """
    ALTER TABLE runs ADD COLUMN runs_on TEXT;
    ALTER TABLE runs ADD COLUMN worker TEXT;
    CREATE INDEX runs_by_owner ON runs (owner);
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        labels TEXT NOT NULL,
        concurrency INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        ttl DOUBLE PRECISION NOT NULL,
        stopped_at TEXT
    )
    """,
    # 6: file locks become leases over glob patterns (SPEC §5): several holders of one
    # pattern (shared locks), whether each is exclusive, and a fencing token drawn from a
    # per-pattern counter that outlives the locks, so a token is never given out twice.
    # Live exclusive leases of the old table carry over with token 1.
    """
    CREATE TABLE file_locks (
        id {seq_pk},
        file_path TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        exclusive INTEGER NOT NULL,
        fencing_token BIGINT NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        UNIQUE (file_path, agent_id)
    );
    CREATE INDEX file_locks_by_expiry ON file_locks (expires_at);
    CREATE TABLE lock_tokens (
        file_path TEXT PRIMARY KEY,
        last_token BIGINT NOT NULL
    );
    INSERT INTO file_locks (file_path, agent_id, exclusive, fencing_token, acquired_at, expires_at)
        SELECT file_path, agent_id, 1, 1, acquired_at, expires_at FROM locks;
    INSERT INTO lock_tokens (file_path, last_token) SELECT file_path, 1 FROM locks;
    DROP TABLE locks
    """,
    # 7: empty (a change planned for it was measured and not kept); it only records the
    # version, so the numbers of the migrations after it never change.
    "",
    # 8: an agent's `max_concurrency` across every process sharing the store: one row per
    # slot, held by a run's lease (holder = its owner, at its epoch). A slot whose run no
    # longer holds that lease (ended, handed back, its worker dead past the lease) is free,
    # so a killed worker never leaks slots and nothing has to renew them.
    """
    CREATE TABLE IF NOT EXISTS agent_slots (
        agent_id TEXT NOT NULL,
        slot INTEGER NOT NULL,
        holder TEXT,
        run_id TEXT,
        epoch INTEGER,
        taken_at TEXT,
        PRIMARY KEY (agent_id, slot)
    )
    """,
    # 9: a run's step rows may lag behind its event log (``sql_steps.py``): NULL, the rows
    # hold every step event (every run written before this version); a number, they hold
    # exactly the step events up to that ``seq``, and readers fold the rest onto them. The
    # table is renamed because its rows mean something new: a runner of schema 8 still
    # running when this one migrates (a worker not yet upgraded) fails on its next step
    # instead of reading lagging rows as complete and calling finished steps again.
    """
    ALTER TABLE runs ADD COLUMN steps_lag BIGINT;
    ALTER TABLE steps RENAME TO step_rows
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# Every table the migrations create (a SQLite file holding anything else is not a runner store).
RUNNER_TABLES = frozenset(
    {"schema_version"}
    | {m.group(1) for script in MIGRATIONS for m in re.finditer(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", script)}
    | {m.group(1) for script in MIGRATIONS for m in re.finditer(r"ALTER TABLE \w+ RENAME TO (\w+)", script)}
)


def statements(script: str, seq_pk: str) -> list[str]:
    """Split one migration into statements (none of ours has a ``;`` inside a literal)."""
    return [s.strip() for s in script.replace("{seq_pk}", seq_pk).split(";") if s.strip()]
