"""Who is calling ``runner serve``: bearer tokens over HTTP, the operator over stdio.

Over HTTP every request carries ``Authorization: Bearer <token>``; the SDK's bearer
middleware asks :class:`RunnerTokenVerifier` and answers 401 itself when it says no. The
operator's token is compared in constant time; an agent's token is hashed and looked up
in the store on every request, so a rotated or deregistered agent's token stops working
at once. The tool layer then reads the verified identity back with :func:`principal_of`.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from runner.errors import AuthError, InputInvalid
from runner.service.policy import Principal
from runner.service.registry import AgentDirectory

OPERATOR_CLIENT = "operator"
AGENT_CLIENT = "agent:"


class RunnerTokenVerifier:
    """The SDK's ``TokenVerifier`` for the operator token and the registered agents' tokens."""

    def __init__(self, admin_token: str, agents: AgentDirectory) -> None:
        self.admin_token = admin_token
        self.agents = agents

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode("utf-8"), self.admin_token.encode("utf-8")):
            return AccessToken(token=token, client_id=OPERATOR_CLIENT, scopes=[])
        agent_id = self.agents.authenticate(token)
        if agent_id is None:
            return None
        return AccessToken(token=token, client_id=AGENT_CLIENT + agent_id, scopes=[])


def principal_of(ctx: Any, agents: AgentDirectory, default: Principal | None) -> Principal:
    """The caller of this request. ``default`` is used where the transport has no tokens
    (stdio: the connected client is the operator); over HTTP a verified token is required."""
    token = get_access_token()
    if token is None:
        request = getattr(getattr(ctx, "request_context", None), "request", None) if ctx is not None else None
        user = getattr(request, "scope", {}).get("user") if request is not None else None
        token = getattr(user, "access_token", None)
    if token is None:
        if default is not None:
            return default
        raise AuthError("no bearer token: send Authorization: Bearer <token>")
    if token.client_id == OPERATOR_CLIENT:
        return Principal()
    agent_id = token.client_id.removeprefix(AGENT_CLIENT)
    profile = agents.store.get_agent(agent_id)
    if profile is None:
        raise AuthError(f"agent {agent_id!r} is no longer registered")
    return Principal(agent_id=agent_id, role=profile.get("role"))


def admin_token(token_file: str | None, state_dir: Path) -> tuple[str, Path | None]:
    """The operator token: ``RUNNER_ADMIN_TOKEN``, else ``--admin-token-file``, else a new one
    written to ``<state_dir>/admin-token`` (mode 0600). Returns it and the file it came from."""
    env = os.environ.get("RUNNER_ADMIN_TOKEN")
    if env:
        if len(env) < 16:
            raise InputInvalid("RUNNER_ADMIN_TOKEN: must be at least 16 characters")
        return env, None
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputInvalid(f"--admin-token-file {token_file}: {exc}") from None
        if len(text) < 16:
            raise InputInvalid(f"--admin-token-file {token_file}: the token must be at least 16 characters")
        return text, path
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "admin-token"
    token = "radm_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return token, path
