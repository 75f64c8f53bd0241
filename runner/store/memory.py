"""The in-memory store: the same behaviour as the SQL stores, kept in dicts.

For tests, ``--store memory://`` and the engine's fastest path. Runs, steps and events go
through the same projection (``projection.apply_event``) as SQLite and PostgreSQL, so the
backends cannot disagree about what an event means. Values are kept by reference (not
JSON round-tripped, which would cost the engine microseconds per event); reads hand out
deep copies, so a caller cannot change the store by mutating what it got back.

Appending checks a batch of events (everything the projection could refuse is refused
there, so a stored event always projects; a refused batch logs nothing, as the SQL
stores' transaction would) and logs it: one list extend. Everything derived from the log
is caught up when something reads it: the runs and steps (the projection) and the
per-run index of the log. Nothing reads them while the engine writes, so a chain step
costs the engine one check per event and one extend, instead of two projections.
A logged event's sequence number is its position in the log, plus one.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from runner.core.filelocks import LockTable
from runner.core.lifecycle import decide_cancel, decide_report, report_body, report_event, still_waiting
from runner.core.projection import CREATING_TYPES, STEP_TYPES, apply_event, unknown_run
from runner.errors import LeaseLost, NotFound, StoreError
from runner.model import events as ev
from runner.model.clock import iso_after, normalize_ts
from runner.model.events import Event, now_iso
from runner.store.base import (
    Assignment,
    Claim,
    Lease,
    RunRecord,
    StepRecord,
    WorkerRecord,
    WorkflowRecord,
    content_hash_of,
    pick_run_id,
)
from runner.store.leases import lease_is_free
from runner.store.memory_workers import MemoryWorkers
from runner.store.migrations import SCHEMA_VERSION

_CHECKED = frozenset({ev.ITEM_COMPLETED, ev.STEP_ASSIGNED})  # the types append looks into further


class MemoryStore(MemoryWorkers):
    """A store that lives as long as the process; one lock makes it safe across threads."""

    shared = False  # only this process can reach it

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._workflows: dict[str, list[WorkflowRecord]] = {}
        self._runs: dict[str, tuple[int, str, RunRecord]] = {}  # run_id -> (n, created_at, record)
        self._steps: dict[str, dict[str, StepRecord]] = {}  # run_id -> step_id -> record, in first-seen order
        self._events: list[Event] = []  # the log: an event's seq is its index + 1
        self._by_run: dict[str, list[tuple[int, Event]]] = {}  # run_id -> (seq, event), the log up to _indexed
        self._indexed = 0  # events of the log in _by_run
        self._projected = 0  # events of the log applied to _runs and _steps
        self._agents: dict[str, tuple[dict[str, Any], str]] = {}
        self._tokens: dict[str, str] = {}
        self._messages: list[dict[str, Any]] = []
        self._file_locks = LockTable()
        self._projects: dict[str, dict[str, Any]] = {}
        self._goals: dict[str, dict[str, Any]] = {}
        self._audit: list[dict[str, Any]] = []
        self._records: dict[str, dict[str, dict[str, Any]]] = {}
        self._leases: dict[str, tuple[str, str]] = {}  # run_id -> (owner, lease_until)
        self._epochs: dict[str, int] = {}  # run_id -> epoch of its latest claim
        self._assignments: dict[tuple[str, str, int], Assignment] = {}  # (run, step, index or -1)
        self._known_runs: set[str] = set()  # runs created, or started by a logged event
        self._workers: dict[str, WorkerRecord] = {}
        self._slots: dict[tuple[str, int], tuple[str, Lease]] = {}

    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def close(self) -> None:
        """Nothing to release; the data stays readable until the object is dropped."""

    # --- workflows --------------------------------------------------------------------
    def put_workflow(self, wf: WorkflowRecord) -> WorkflowRecord:
        digest = content_hash_of(wf)
        with self._lock:
            versions = self._workflows.setdefault(wf.name, [])
            for known in versions:
                if known.content_hash == digest:
                    return copy.copy(known)
            stored = replace(wf, content_hash=digest, version=len(versions) + 1, created_at=wf.created_at or now_iso())
            versions.append(stored)
            return copy.copy(stored)

    def get_workflow(self, name: str, content_hash: str | None = None) -> WorkflowRecord | None:
        with self._lock:
            versions = self._workflows.get(name, [])
            found = [w for w in versions if content_hash in (None, w.content_hash)]
            return copy.copy(found[-1]) if found else None

    def list_workflows(self) -> list[WorkflowRecord]:
        with self._lock:
            return [copy.copy(self._workflows[name][-1]) for name in sorted(self._workflows)]

    def list_workflow_versions(self, name: str) -> list[WorkflowRecord]:
        with self._lock:
            return [copy.copy(w) for w in self._workflows.get(name, [])]

    # --- runs -------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        with self._lock:
            if run.run_id in self._runs:
                raise StoreError(f"run {run.run_id!r} already exists in {self.url}")
            self._catch_up()
            self._runs[run.run_id] = (len(self._runs), run.started_at or now_iso(), copy.deepcopy(run))
            self._steps[run.run_id] = {}
            self._known_runs.add(run.run_id)

    def append_many(self, events: Sequence[Event], fence: Lease | None = None) -> None:
        """Store several events in order, all or none (one lock hold; the SQL stores make it
        one transaction); with ``fence``, only while that lease is the run's latest claim.

        Every event is checked first, then the batch is logged with one extend. The
        engine's hot path (a batch a chain step): the checks are written out here rather
        than called (``projection.is_step_event``, ``creates_run``).
        """
        with self._lock:
            if fence is not None and events:
                run_id = events[0].run_id
                owner = self._leases.get(run_id, (None,))[0]
                if owner != fence.owner or self._epochs.get(run_id, 0) != fence.epoch:
                    raise LeaseLost(
                        f"run {run_id}: this runner's lease (epoch {fence.epoch}) was taken over; nothing written"
                    )
            known = self._known_runs
            started: set[str] | None = None  # runs the batch itself starts
            assigned: list[Event] | None = None
            for event in events:
                run_id, etype = event.run_id, event.type
                if run_id not in known and (started is None or run_id not in started):
                    if etype not in CREATING_TYPES:
                        raise unknown_run(event)
                    if started is None:
                        started = set()
                    started.add(run_id)
                if event.step_id is None and etype in STEP_TYPES:
                    raise StoreError(f"event {etype} for run {run_id!r} has no step_id")
                if etype in _CHECKED:
                    if etype == ev.STEP_ASSIGNED:
                        if assigned is None:
                            assigned = []
                        assigned.append(event)
                    elif type(event.data.get("index")) is not int:
                        raise StoreError(f"event item_completed for run {run_id!r} has no integer index")
            if started is not None:
                known.update(started)
            if assigned is not None:
                for event in assigned:
                    self._assign(event)
            self._events.extend(events)

    def append(self, event: Event) -> None:
        """Check and log ``event``; it is applied to its run and step before the next read."""
        self.append_many((event,))

    def _catch_up(self) -> None:
        """Apply the logged events not yet projected, in order (called under the lock)."""
        events = self._events
        for i in range(self._projected, len(events)):
            self._projected = i + 1  # before: an event is never applied twice
            self._project(events[i])

    def _run_log(self, run_id: str) -> list[tuple[int, Event]]:
        """``(seq, event)`` of one run's events, the index caught up first (under the lock)."""
        events = self._events
        if self._indexed < len(events):
            by_run = self._by_run
            for i in range(self._indexed, len(events)):
                event = events[i]
                entries = by_run.get(event.run_id)
                if entries is None:
                    entries = by_run[event.run_id] = []
                entries.append((i + 1, event))
            self._indexed = len(events)
        return self._by_run.get(run_id, [])

    def _project(self, event: Event) -> None:
        """Apply one checked event to the run and step it concerns."""
        entry = self._runs.get(event.run_id)
        steps = self._steps.get(event.run_id)
        step = steps.get(event.step_id) if steps is not None and event.step_id is not None else None
        change = apply_event(entry[2] if entry else None, step, event)
        if change.run is not None:
            n, created = (entry[0], entry[1]) if entry else (len(self._runs), event.ts)
            self._runs[event.run_id] = (n, created, change.run)
            steps = self._steps.setdefault(event.run_id, {})
        if change.step is not None and steps is not None and event.step_id is not None:
            # The new record shares the old one's items dict (a shallow replace): no copy.
            step = steps[event.step_id] = change.step
        if step is not None:
            if change.clear_items:
                step.items = {}
            if change.item is not None:
                step.items[change.item[0]] = change.item[1]

    def _assign(self, event: Event) -> None:
        d = event.data
        index = d.get("index")
        key = (event.run_id, event.step_id or "", -1 if index is None else int(index))
        known = self._assignments.get(key)
        if known is not None and known.attempt == (event.attempt or 1) and known.status != "waiting":
            return  # a resumed run re-assigns the same attempt: a report made meanwhile stays
        self._assignments[key] = Assignment(
            run_id=event.run_id,
            step_id=event.step_id or "",
            index=index,
            agent_id=event.agent_id,
            attempt=event.attempt or 1,
            arguments=copy.deepcopy(d.get("arguments")),
            assigned_at=event.ts,
            deadline=d.get("deadline"),
        )

    # --- the run lifecycle across processes --------------------------------------------
    def get_signals(self, run_id: str, after_seq: int = 0) -> list[tuple[int, Event]]:
        with self._lock:
            return [
                (s, copy.deepcopy(e)) for s, e in self._run_log(run_id) if s > after_seq and e.type in ev.SIGNAL_TYPES
            ]

    def list_assignments(self, agent_id: str | None = None, run_id: str | None = None) -> list[Assignment]:
        with self._lock:
            self._catch_up()
            out = []
            for a in self._assignments.values():
                if (agent_id is not None and a.agent_id != agent_id) or (run_id is not None and a.run_id != run_id):
                    continue
                run = self._runs.get(a.run_id)
                if run is None or run[2].status not in ("running", "interrupted"):
                    continue
                if still_waiting(self._steps.get(a.run_id, {}).get(a.step_id), a):
                    out.append(replace(copy.deepcopy(a), workflow_name=run[2].workflow_name))
            return sorted(out, key=lambda a: (a.assigned_at, a.run_id, a.step_id))

    def get_assignment(self, run_id: str, step_id: str, index: int | None = None) -> Assignment | None:
        with self._lock:
            found = self._assignments.get((run_id, step_id, -1 if index is None else index))
            return copy.deepcopy(found) if found is not None else None

    def report_step(
        self,
        run_id: str,
        step_id: str,
        agent_id: str,
        *,
        index: int | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> str:
        body = report_body(result, error)
        with self._lock:
            self._catch_up()
            entry = self._runs.get(run_id)
            step = self._steps.get(run_id, {}).get(step_id)
            key = (run_id, step_id, -1 if index is None else index)
            asg = self._assignments.get(key)
            now = now_iso()
            verdict = decide_report(
                entry[2] if entry else None,
                step,
                asg,
                run_id=run_id,
                step_id=step_id,
                agent_id=agent_id,
                body=body,
                now=now,
                url=self.url,
            )
            if verdict == "duplicate":
                return "duplicate"
            assert asg is not None
            self.append(report_event(asg, agent_id, copy.deepcopy(body), error, now))
            status = "failed" if error is not None else "completed"
            self._assignments[key] = replace(
                asg, status=status, reported_at=now, reported_by=agent_id, report=copy.deepcopy(body)
            )
            return "accepted"

    def cancel_run(self, run_id: str) -> str:
        with self._lock:
            self._catch_up()
            entry = self._runs.get(run_id)
            holder, until = self._leases.get(run_id, (None, None))
            alive = holder is not None and not lease_is_free(holder, until, "")
            verdict = decide_cancel(entry[2] if entry else None, run_id=run_id, holder_alive=alive, url=self.url)
            if verdict == "end":
                self.append(Event(type=ev.RUN_CANCELLED, run_id=run_id, error="cancelled", data={"outputs": {}}))
                # Take the lease from whoever held it last (paused past it, it may wake): its
                # writes are refused from now on, so the run stays cancelled.
                if self._leases.pop(run_id, None) is not None:
                    self._epochs[run_id] = self._epochs.get(run_id, 0) + 1
                return "cancelled"
            if verdict == "request":
                self.append(Event(type=ev.RUN_CANCEL_REQUESTED, run_id=run_id))
                return "requested"
            return "already"

    # --- run leases -------------------------------------------------------------------
    def claim_run(self, run_id: str, owner: str, ttl_s: float) -> Claim:
        with self._lock:
            self._catch_up()
            if run_id not in self._runs:
                raise NotFound.run(run_id, self.url)
            holder, until = self._leases.get(run_id, (None, None))
            if not lease_is_free(holder, until, owner):
                return Claim(None, f"{holder} (lease until {until})")
            epoch = self._epochs.get(run_id, 0)
            if holder != owner:
                epoch = self._epochs[run_id] = epoch + 1
            self._leases[run_id] = (owner, iso_after(ttl_s))
            self._runs[run_id][2].worker = None  # an interactive claim: out of the workers' care
            return Claim(Lease(owner, epoch))

    def renew_run(self, run_id: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            if self._leases.get(run_id, (None,))[0] != owner:
                return False
            self._leases[run_id] = (owner, iso_after(ttl_s))
            return True

    def release_run(self, run_id: str, owner: str) -> None:
        with self._lock:
            if self._leases.get(run_id, (None,))[0] == owner:
                del self._leases[run_id]

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            self._catch_up()
            entry = self._runs.get(run_id)
            return copy.deepcopy(entry[2]) if entry else None

    def find_run(self, prefix: str) -> RunRecord:
        with self._lock:
            self._catch_up()
            if prefix in self._runs:
                return copy.deepcopy(self._runs[prefix][2])
            ids = sorted(r for r in self._runs if r.startswith(prefix))[:6]
            return copy.deepcopy(self._runs[pick_run_id(self.url, prefix, ids)][2])

    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        cutoff = normalize_ts(since) if since is not None else None
        with self._lock:
            self._catch_up()
            rows = [
                (created, n, run)
                for n, created, run in self._runs.values()
                if (workflow is None or run.workflow_name == workflow)
                and (status is None or run.status == status)
                and (cutoff is None or created >= cutoff)
            ]
            rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
            return [copy.deepcopy(r[2]) for r in rows[:limit]]

    def get_steps(self, run_id: str) -> list[StepRecord]:
        with self._lock:
            self._catch_up()
            return [copy.deepcopy(s) for s in self._steps.get(run_id, {}).values()]

    def get_step(self, run_id: str, step_id: str) -> StepRecord | None:
        with self._lock:
            self._catch_up()
            step = self._steps.get(run_id, {}).get(step_id)
            return copy.deepcopy(step) if step is not None else None

    def get_events(self, run_id: str) -> list[Event]:
        with self._lock:
            return [copy.deepcopy(e) for _, e in self._run_log(run_id)]

    def get_events_after(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 1000
    ) -> list[tuple[int, Event]]:
        with self._lock:
            if run_id is None:
                events = self._events
                return [(i + 1, copy.deepcopy(events[i])) for i in range(max(0, after_seq), len(events))[:limit]]
            found = [(s, e) for s, e in self._run_log(run_id) if s > after_seq][:limit]
            return [(s, copy.deepcopy(e)) for s, e in found]

    # --- agents and their tokens ------------------------------------------------------
    def put_agent(self, agent_id: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._agents[agent_id] = (copy.deepcopy(data), now_iso())

    def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._agents.get(agent_id)
            return {**copy.deepcopy(entry[0]), "id": agent_id} if entry else None

    def list_agents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**copy.deepcopy(self._agents[a][0]), "id": a} for a in sorted(self._agents)]

    def delete_agent(self, agent_id: str) -> bool:
        with self._lock:
            self._tokens.pop(agent_id, None)
            return self._agents.pop(agent_id, None) is not None

    def put_token(self, agent_id: str, token_hash: str) -> None:
        with self._lock:
            holder = self.agent_for_token(token_hash)
            if holder not in (None, agent_id):
                raise StoreError(f"store {self.url}: token hash already belongs to another agent")
            self._tokens[agent_id] = token_hash

    def get_token_hash(self, agent_id: str) -> str | None:
        with self._lock:
            return self._tokens.get(agent_id)

    def agent_for_token(self, token_hash: str) -> str | None:
        with self._lock:
            return next((a for a, h in self._tokens.items() if h == token_hash), None)

    def delete_token(self, agent_id: str) -> bool:
        with self._lock:
            return self._tokens.pop(agent_id, None) is not None

    # --- messages ---------------------------------------------------------------------
    def add_message(self, sender_id: str, recipient_id: str, content: str, urgent: bool = False) -> dict[str, Any]:
        with self._lock:
            message = {
                "id": len(self._messages) + 1,
                "sender_id": sender_id,
                "recipient_id": recipient_id,
                "content": content,
                "urgent": bool(urgent),
                "created_at": now_iso(),
                "read_at": None,
            }
            self._messages.append(message)
            return dict(message)

    def get_messages(
        self, agent_id: str, since: str | None = None, unread_only: bool = False, mark_read: bool = False
    ) -> list[dict[str, Any]]:
        after = normalize_ts(since) if since is not None else None
        with self._lock:
            found = [
                m
                for m in self._messages
                if m["recipient_id"] == agent_id
                and (after is None or m["created_at"] > after)
                and not (unread_only and m["read_at"] is not None)
            ]
            if mark_read:
                now = now_iso()
                for m in found:
                    if m["read_at"] is None:
                        m["read_at"] = now
            return [dict(m) for m in sorted(found, key=lambda m: (m["created_at"], m["id"]))]

    def sent_messages(self, sender_id: str, since: str | None = None) -> list[dict[str, Any]]:
        after = normalize_ts(since) if since is not None else None
        with self._lock:
            return [
                dict(m)
                for m in self._messages
                if m["sender_id"] == sender_id and (after is None or m["created_at"] > after)
            ]

    # --- file locks -------------------------------------------------------------------
    def acquire_lock(self, file_path: str, agent_id: str, exclusive: bool, ttl_s: float) -> dict[str, Any]:
        with self._lock:
            return self._file_locks.acquire(file_path, agent_id, exclusive, now_iso(), iso_after(ttl_s))

    def renew_lock(self, file_path: str, agent_id: str, ttl_s: float) -> dict[str, Any] | None:
        with self._lock:
            return self._file_locks.renew(file_path, agent_id, now_iso(), iso_after(ttl_s))

    def release_lock(self, file_path: str, agent_id: str, force: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            return self._file_locks.release(file_path, agent_id, force, now_iso())

    def list_locks(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._file_locks.live(now_iso())

    # --- projects and goals -----------------------------------------------------------
    def create_project(
        self, name: str, description: str = "", lead_agent_id: str | None = None, status: str = "active"
    ) -> dict[str, Any]:
        project: dict[str, Any] = {
            "id": "proj_" + os.urandom(8).hex(),
            "name": name,
            "description": description,
            "lead_agent_id": lead_agent_id,
            "status": status,
            "created_at": now_iso(),
        }
        with self._lock:
            self._projects[project["id"]] = project
        return dict(project)

    def get_project(self, project_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._projects.get(project_id)
            return dict(found) if found else None

    def list_projects(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in sorted(self._projects.values(), key=lambda p: (p["created_at"], p["id"]))]

    def create_goal(
        self, name: str, description: str = "", project_id: str | None = None, status: str = "pending"
    ) -> dict[str, Any]:
        goal: dict[str, Any] = {
            "id": "goal_" + os.urandom(8).hex(),
            "name": name,
            "description": description,
            "project_id": project_id,
            "status": status,
            "created_at": now_iso(),
        }
        with self._lock:
            if project_id is not None and project_id not in self._projects:
                raise NotFound(f"no project with id {project_id!r} in {self.url}")
            self._goals[goal["id"]] = goal
        return dict(goal)

    def get_goal(self, goal_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._goals.get(goal_id)
            return dict(found) if found else None

    def list_goals(self, project_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            goals = [g for g in self._goals.values() if project_id is None or g["project_id"] == project_id]
            return [dict(g) for g in sorted(goals, key=lambda g: (g["created_at"], g["id"]))]

    # --- records of the coordination tools ------------------------------------------
    def put_record(self, kind: str, record_id: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._records.setdefault(kind, {})[record_id] = copy.deepcopy(data)

    def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._records.get(kind, {}).get(record_id)
            return copy.deepcopy(found) if found is not None else None

    def list_records(self, kind: str, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._records.get(kind, {}).values())[:limit])

    # --- audit log --------------------------------------------------------------------
    def add_audit(
        self, actor: str, action: str, target: str | None = None, detail: dict[str, Any] | None = None
    ) -> int:
        with self._lock:
            seq = len(self._audit) + 1
            self._audit.append(
                {
                    "seq": seq,
                    "ts": now_iso(),
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "detail": copy.deepcopy(detail),
                }
            )
            return seq

    def list_audit(
        self, actor: str | None = None, action: str | None = None, limit: int = 100, since: str | None = None
    ) -> list[dict[str, Any]]:
        after = normalize_ts(since) if since is not None else None
        with self._lock:
            found = [
                e
                for e in reversed(self._audit)
                if (actor is None or e["actor"] == actor)
                and (action is None or e["action"] == action)
                and (after is None or e["ts"] > after)
            ]
            return copy.deepcopy(found[:limit])
