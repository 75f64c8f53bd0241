"""Who is calling ``runner serve``: bearer tokens over HTTP, the operator over stdio.

Over HTTP every request carries ``Authorization: Bearer <token>``; the SDK's bearer
middleware asks :class:`RunnerTokenVerifier` and answers 401 itself when it says no. The
operator's token is compared in constant time; an agent's token is hashed and looked up
in the store on every request, so a rotated or deregistered agent's token stops working
at once. The tool layer then reads the verified identity back with :func:`principal_of`.
"""

from __future__ import annotations

import hmac
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from runner.errors import AuthError
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
    # The HTTP request this call came in on is the authority: the SDK's contextvar holds the
    # token of whichever request started the session's task, which a later request with a
    # rotated or different token must not inherit. The contextvar is only a fallback.
    request = getattr(getattr(ctx, "request_context", None), "request", None) if ctx is not None else None
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    token = getattr(user, "access_token", None)
    if token is None:
        token = get_access_token()
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
