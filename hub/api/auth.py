"""Bearer tokens for the API, from day one. Per-person login comes with the provider workspace.

Tokens live in ``<data>/api-tokens`` (one per line, created 0600 on first start) and/or
the ``HUB_API_TOKEN`` environment variable; they are compared in constant time and
never logged.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

TOKEN_FILE = "api-tokens"  # noqa: S105 - a file name, not a secret


def load_tokens(data_dir: Path, *, create: bool = True) -> set[str]:
    path = data_dir / TOKEN_FILE
    if create and not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    tokens = set()
    if path.exists():
        tokens = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
    env = os.environ.get("HUB_API_TOKEN", "").strip()
    if env:
        tokens.add(env)
    return tokens


_bearer = HTTPBearer(auto_error=False, description="API token from <data>/api-tokens")


def bearer_guard(tokens: set[str]) -> Callable[[Request], Awaitable[None]]:
    frozen = tuple(tokens)

    async def require_token(request: Request) -> None:
        creds: HTTPAuthorizationCredentials | None = await _bearer(request)
        if creds is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        presented = creds.credentials.encode()
        if not any(secrets.compare_digest(presented, t.encode()) for t in frozen):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return require_token
