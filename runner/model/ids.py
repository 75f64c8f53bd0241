"""Identifiers: a workflow version's content hash and sortable run ids (pure, no I/O)."""

from __future__ import annotations

import hashlib
import time
import uuid


def workflow_hash(text: str) -> str:
    """Content hash of a workflow's exact text (sha256, hex), for versions and resume."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_run_id() -> str:
    """Sortable, unique run ids: time prefix + random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
