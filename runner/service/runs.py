"""The run lifecycle: start (optionally queued), execute, resume, retry, cancel, report.

Every face goes through :class:`RunService`: ``runner run`` is ``start`` + ``execute``,
``runner run --detach`` is ``start(queued=True)``, ``runner resume`` executes a queued or
interrupted run, ``runner cancel`` and ``runner steps complete`` write into the store for
whichever process executes the run. Nothing here prints or picks exit codes: errors are
``RunnerError`` subclasses that carry theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine import Engine
from runner.engine.lease import LeaseKeeper
from runner.engine.slots import AgentSlots
from runner.errors import BadArgument, InputInvalid, NotFound, Refused
from runner.load import load_workflow
from runner.model import AgentSpec, Workflow
from runner.model import events as ev
from runner.model.data import NotData, as_data
from runner.model.events import Event, EventSink
from runner.model.ids import new_run_id, workflow_hash
from runner.model.nesting import outer_call, outer_step
from runner.model.outcomes import ResumeState, RunResult, resolve_inputs
from runner.service.registry import AgentDirectory
from runner.service.resume import resume_state
from runner.store.base import Assignment, Lease, RunRecord, Store, WorkflowRecord
from runner.store.leases import take_lease
from runner.template import Masker


@dataclass
class Prepared:
    """A run this process holds the lease of, with the workflow and state to execute it from."""

    run: RunRecord
    workflow: Workflow
    state: ResumeState
    lease: Lease
    reset: list[str] = field(default_factory=list)
    finished: bool = False  # a completed run `resume` has nothing to do for


def has_pull_steps(wf: Workflow) -> bool:
    """Whether some step waits for an agent's report (no ``tool_to_call``, no ``uses``)."""
    return any(s.is_pull for s in wf.all_steps)


def descendants(wf: Workflow, step_id: str) -> set[str]:
    """``step_id`` and every step that depends on it, directly or not."""
    children: dict[str, list[str]] = {}
    for s in wf.steps:
        for d in s.depends_on:
            children.setdefault(d, []).append(s.step_id)
    out = {step_id}
    stack = [step_id]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


class RunService:
    """Runs in one store, for one set of agents and secrets.

    ``local_pull``: allow pull steps on a store no other process can reach (``memory://``),
    for an embedding that reports through this same object (the MCP server, tests).
    ``pool``: agent sessions shared by every run executed here (tests pass a ``FakePool``).
    """

    def __init__(
        self,
        store: Store,
        *,
        registry: Sequence[AgentSpec] = (),
        secrets: Mapping[str, str] | None = None,
        local_pull: bool = False,
        pool: Any = None,
        base_dir: str | None = None,
    ) -> None:
        self.store = store
        self.pool = pool  # an AgentPool shared by the runs this service executes (None: one per run)
        self.base_dir = base_dir  # where relative agent paths resolve (default: the workflow file's directory)
        self.registry = list(registry)
        self.secrets = dict(secrets or {})
        self.local_pull = local_pull

    # -- start ----------------------------------------------------------------------------
    def start(self, wf: Workflow, inputs: Mapping[str, Any], *, queued: bool = False) -> tuple[str, Lease | None]:
        """Store a new run: ``queued`` for any process to execute, else claimed by this one.

        Inputs are checked first (``InputInvalid``, nothing stored). Returns the run id and,
        unless queued, this process's lease on it.
        """
        values = resolve_inputs(wf, inputs)
        self._check_reachable(wf, queued)
        text = wf.source_text or ""
        h = workflow_hash(text)
        self.store.put_workflow(
            WorkflowRecord(name=wf.name, content_hash=h, source_text=text, agent_modifiable=wf.agent_modifiable)
        )
        run_id = new_run_id()
        masked = Masker(self.secrets.values()).mask(values) if self.secrets else values
        self.store.create_run(
            RunRecord(
                run_id=run_id,
                workflow_name=wf.name,
                workflow_hash=h,
                # A queued run becomes `queued` (claimable) with its run_queued event: a
                # worker must never see it between the two writes.
                status="pending",
                inputs=masked,
                source=str(Path(wf.source).resolve()) if wf.source else None,
                runs_on=sorted(wf.runs_on) or None,
            )
        )
        if queued:
            self.store.append(
                Event(
                    type=ev.RUN_QUEUED, run_id=run_id, data={"workflow": wf.name, "workflow_hash": h, "inputs": masked}
                )
            )
            return run_id, None
        return run_id, take_lease(self.store, run_id)

    def _check_reachable(self, wf: Workflow, queued: bool) -> None:
        if self.store.shared or self.local_pull:
            return
        if queued:
            raise InputInvalid(
                f"--detach: a queued run must be kept in a store other processes can reach, not {self.store.url} "
                "(use the default SQLite store or PostgreSQL)"
            )
        if has_pull_steps(wf):
            pulls = ", ".join(s.step_id for s in wf.all_steps if s.is_pull)
            raise InputInvalid(
                f"workflow {wf.name} has pull step(s) ({pulls}) that wait for a report from another process, "
                f"but {self.store.url} cannot be reached by any other process; use the default SQLite store "
                "or PostgreSQL (--store)"
            )

    # -- execute ----------------------------------------------------------------------------
    def prepare(
        self,
        run_id: str,
        *,
        lease: Lease | None = None,
        inputs: Mapping[str, Any] | None = None,
        from_step: str | None = None,
        new_attempt: bool = False,
        force: bool = False,
        workflow: Workflow | None = None,
    ) -> Prepared:
        """Claim ``run_id`` (unless ``lease`` is ours already) and read what executing it needs.

        The lease first, then the state: read before it, the state could be stale by the
        time this process runs it (another runner finishing the run in between).
        """
        found = self.find_run(run_id)
        if lease is None:
            lease = take_lease(self.store, found.run_id)
        try:
            run = self.find_run(found.run_id)
            if run.status == "cancelled" and not new_attempt:
                raise Refused(f"run {run.run_id} was cancelled; `runner retry {run.run_id}` runs it again")
            wf = workflow if workflow is not None else self.load_workflow_of(run, force)
            if workflow is None:  # `start` checked the workflow it was given
                self._check_reachable(wf, False)
            reset: set[str] = set()
            if from_step is not None:
                if from_step not in {s.step_id for s in wf.steps}:
                    if outer_call(from_step) and outer_step(from_step) in {s.step_id for s in wf.steps}:
                        top = outer_step(from_step)
                        raise InputInvalid(
                            f"--from: {from_step!r} is a step of the nested run of {top!r}, which is "
                            f"retried whole: use --from {top}"
                        )
                    raise InputInvalid(
                        f"--from: no step {from_step!r} in workflow {wf.name} "
                        f"(steps: {', '.join(s.step_id for s in wf.steps)})"
                    )
                reset = descendants(wf, from_step)
                # A reset `uses:` step runs its whole nested run again: its steps' rows are reset too.
                reset |= {
                    r.step_id
                    for r in self.store.get_steps(run.run_id)
                    if outer_call(r.step_id) and outer_step(r.step_id) in reset
                }
            fresh = run.status in ("queued", "pending")
            if fresh:
                state = ResumeState(run_id=run.run_id, inputs=dict(inputs if inputs is not None else run.inputs))
                state.fresh = True
            else:
                state = resume_state(self.store, run.run_id, wf, reset=sorted(reset), new_attempt=new_attempt)
            state.cancel_after = run.finished_at
            finished = run.status == "completed" and from_step is None and not fresh
            return Prepared(run=run, workflow=wf, state=state, lease=lease, reset=sorted(reset), finished=finished)
        except BaseException:
            self.release(run_id=found.run_id, lease=lease)
            raise

    def release(self, *, run_id: str, lease: Lease) -> None:
        """Give the lease back (a prepared run that will not be executed)."""
        try:
            self.store.release_run(run_id, lease.owner)
        except Exception:  # noqa: BLE001 - the caller's error is the one to report
            pass

    def engine(
        self,
        prepared: Prepared,
        *,
        sinks: Sequence[EventSink] = (),
        on_progress: Callable[[str, float, float | None, str | None], None] | None = None,
        keeper: LeaseKeeper | None = None,
        slots: AgentSlots | None = None,
    ) -> Any:
        """The engine that executes ``prepared`` (the CLI keeps it to report partial results).

        A worker passes its heartbeat (``keeper``: it renews this run's lease with its
        others) and its process-wide agent ``slots``.
        """
        eng = Engine(
            prepared.workflow,
            store=self.store,
            sinks=sinks,
            registry=self._with_registered(),
            secrets=self.secrets,
            lease=prepared.lease,
            on_progress=on_progress,
            pool=self.pool,
            base_dir=self.base_dir,
        )
        eng.keeper, eng.slots = keeper, slots
        return eng

    async def execute(self, prepared: Prepared, *, sinks: Sequence[EventSink] = (), engine: Any = None) -> RunResult:
        """Drive a prepared run to its end (the lease is released when it ends)."""
        eng = engine if engine is not None else self.engine(prepared, sinks=sinks)
        result: RunResult = await eng.run(None, resume=prepared.state, reset=prepared.reset)
        return result

    async def run(self, wf: Workflow, inputs: Mapping[str, Any], *, sinks: Sequence[EventSink] = ()) -> RunResult:
        """Create and execute a run in this process: ``start`` + ``prepare`` + ``execute``."""
        run_id, lease = self.start(wf, inputs)
        prepared = self.prepare(run_id, lease=lease, inputs=resolve_inputs(wf, inputs), workflow=wf)
        return await self.execute(prepared, sinks=sinks)

    def load_workflow_of(self, run: RunRecord, force: bool = False) -> Workflow:
        """The workflow of a stored run; refuse if its file changed since, unless ``force``.

        Agents registered over MCP (``runner serve``) are known as pull agents here too, so a
        run of a workflow an agent defined can be resumed by any runner process.
        """
        registry = self._with_registered()
        src = run.source
        if src and Path(src).is_file():
            text = Path(src).read_text(encoding="utf-8")
            if workflow_hash(text) != run.workflow_hash and not force:
                raise InputInvalid(
                    f"workflow file {src} changed since run {run.run_id} started; "
                    f"resuming could mix two versions (use --force to resume anyway)"
                )
            return load_workflow(src, registry=registry)
        rec = self.store.get_workflow(run.workflow_name, run.workflow_hash)
        if rec is None:
            raise NotFound(f"the workflow of run {run.run_id} is neither at {src!r} nor in the store")
        return load_workflow(rec.source_text, file=src or f"<stored {run.workflow_name}>", registry=registry)

    def _with_registered(self) -> list[AgentSpec]:
        known = {a.id for a in self.registry}
        return [*self.registry, *(a for a in AgentDirectory(self.store).specs() if a.id not in known)]

    # -- from any process -------------------------------------------------------------------
    def cancel(self, run_id: str) -> str:
        """``cancelled`` (it was queued or interrupted), ``requested`` (its executor will stop it), ``already``."""
        run = self.find_run(run_id)
        return self.store.cancel_run(run.run_id)

    def report(
        self,
        run_id: str,
        step_id: str,
        agent_id: str,
        *,
        result: Any = None,
        error: str | None = None,
        index: int | None = None,
    ) -> str:
        """An agent's report on its pull step: ``accepted`` or ``duplicate``; ``Refused`` otherwise."""
        try:  # stored, then a step's result: JSON data only (checked before anything is looked up)
            result = as_data(result)
        except NotData as exc:
            raise BadArgument("result", str(exc)) from None
        run = self.find_run(run_id)
        if self.store.get_assignment(run.run_id, step_id, index) is None:
            self._explain_no_assignment(run, step_id)
        if self.secrets:
            masker = Masker(self.secrets.values())
            result = masker.mask(result)
            error = masker.mask_text(error) if error is not None else None
        return self.store.report_step(run.run_id, step_id, agent_id, index=index, result=result, error=error)

    def _explain_no_assignment(self, run: RunRecord, step_id: str) -> None:
        """Say precisely why ``step_id`` has no assignment: unknown, a tool step, or not started yet."""
        rec = self.store.get_workflow(run.workflow_name, run.workflow_hash)
        if rec is not None:
            try:
                wf = load_workflow(rec.source_text, file=f"<stored {run.workflow_name}>", registry=self.registry)
            except Exception:  # noqa: BLE001 - the stored text is only used for a better message
                wf = None
            if wf is not None:
                spec = next((s for s in wf.all_steps if s.step_id == step_id), None)
                if spec is None:
                    ids = ", ".join(s.step_id for s in wf.all_steps)
                    raise Refused(f"run {run.run_id} (workflow {wf.name}) has no step {step_id!r}; its steps: {ids}")
                if not spec.is_pull:
                    raise Refused(
                        f"step '{step_id}' of run {run.run_id} is not a pull step (it calls "
                        f"{spec.tool_to_call or spec.uses or 'an inline workflow'!r}); only pull steps take reports"
                    )
        step = self.store.get_step(run.run_id, step_id)
        status = step.status if step is not None else "pending"
        raise Refused(f"step '{step_id}' of run {run.run_id} is not waiting for a report (it is {status})")

    def assigned_steps(self, agent_id: str | None = None, run_id: str | None = None) -> list[Assignment]:
        """Pull steps waiting for a report, oldest first."""
        rid = self.find_run(run_id).run_id if run_id is not None else None
        return self.store.list_assignments(agent_id=agent_id, run_id=rid)

    # -- reads ------------------------------------------------------------------------------
    def find_run(self, run_id: str) -> RunRecord:
        """The run with this id (or unique id prefix); ``NotFound`` (exit 2) otherwise."""
        return self.store.find_run(run_id)

    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        return self.store.list_runs(workflow=workflow, status=status, since=since, limit=limit)
