"""Bearer tokens for the JSON API: one per client, with scopes and a clinic (see hub.accounts.tokens)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.accounts import tokens
from hub.accounts.tokens import ApiToken
from hub.audit import Actor
from hub.workspace import Workspace, from_request

_bearer = HTTPBearer(auto_error=False, description="An API token from `hub token create`")


class TokenPrincipal:
    def __init__(self, token: ApiToken, ip: str | None) -> None:
        self.token = token
        self.clinic_id = token.clinic_id
        self.actor = Actor(token.label, token.clinic_id, None, ip)


def require_scope(scope: str) -> Callable[[Request, Workspace], Awaitable[TokenPrincipal]]:
    async def check(request: Request, ws: Workspace = Depends(from_request)) -> TokenPrincipal:  # noqa: B008
        creds: HTTPAuthorizationCredentials | None = await _bearer(request)
        if creds is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with ws.write() as conn:
            token = tokens.lookup(conn, creds.credentials, ws.now())
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid or revoked bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope not in token.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks the {scope!r} scope")
        return TokenPrincipal(token, request.client.host if request.client else None)

    return check
