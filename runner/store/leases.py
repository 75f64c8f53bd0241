"""Run leases: who executes a run, whether that process still lives, and for how long.

A lease is the claim of one process (``host:pid:nonce:pidns``) on one run, renewed every
third of its lifetime; a claim by a new owner starts a new epoch, and every write of the
executing process is fenced by owner and epoch (``Store.append_many(fence=…)``).
"""

from __future__ import annotations

import os
import socket
import uuid

from runner.errors import InputInvalid, RunBusy
from runner.model.clock import now_iso
from runner.model.records import Lease
from runner.store.base import Leases


def _pid_namespace() -> str:
    """This process's PID namespace (``4026531836``), or "" where /proc cannot tell."""
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return link.rsplit("[", 1)[-1].rstrip("]")


def lease_owner_id() -> str:
    """Who executes a run: ``host:pid:nonce:pidns``.

    The nonce tells two engines of one process apart; the PID namespace tells a container
    that shares the host's name (``--network host``) from the host, whose PIDs differ.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie, killed but unreaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def lease_is_free(holder: str | None, until: str | None, claimant: str) -> bool:
    """May ``claimant`` take a run whose lease is held by ``holder`` until ``until``?

    Yes when nobody holds it, the claimant already does, the lease has expired, or the
    holder is a process on this host that no longer exists (a runner killed with SIGKILL
    must be resumable at once, not only after its lease runs out).
    """
    if not holder or holder == claimant:
        return True
    if until is None or until < now_iso():
        return True
    parts = holder.split(":")
    if len(parts) < 4 or not parts[1].isdigit():
        return False  # not an id this runner writes: wait for the lease to expire
    host, pid_text, ns = parts[0], parts[1], parts[3]
    if host == socket.gethostname() and ns and ns == _pid_namespace():
        return not _pid_alive(int(pid_text))
    return False


LEASE_TTL_S = 30.0  # a run's lease; its holder renews it every lease_ttl() / 3


def lease_ttl() -> float:
    """The run lease's lifetime: ``RUNNER_LEASE_TTL`` seconds (tests shorten it), else 30 s."""
    raw = os.environ.get("RUNNER_LEASE_TTL")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0 and value == value and value < 86400 * 365:
            return value
        raise InputInvalid(f"RUNNER_LEASE_TTL: expected a positive number of seconds, got {raw!r}")
    return LEASE_TTL_S


def take_lease(store: Leases, run_id: str) -> Lease:
    """Claim ``run_id`` for this process; ``RunBusy`` if a live runner holds it."""
    claim = store.claim_run(run_id, lease_owner_id(), lease_ttl())
    if claim.lease is None:
        raise RunBusy(
            f"run {run_id} is being executed by another runner ({claim.holder}); "
            "wait for it to finish or stop it, then resume"
        )
    return claim.lease


