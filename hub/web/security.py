"""Who is asking: session cookies for people, with CSRF and Origin checks on every state change.

Every page route depends on `require_user` (or `require_admin`); nothing reaches a handler
without a live, fully logged-in session. For any method other than GET/HEAD/OPTIONS the
request must also carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`), and when the browser sends an Origin it must be this site's.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection

from hub.accounts import sessions, users
from hub.accounts.sessions import Session
from hub.accounts.users import User
from hub.audit import Actor
from hub.workspace import Workspace, from_request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sent by the pages' own polling (charts, fleet table): such requests do not count as activity.
AUTO_REFRESH_HEADER = "x-auto-refresh"


def session_cookie(ws: Workspace) -> str:
    return "__Host-session" if ws.settings.secure_cookies else "session"


def login_csrf_cookie(ws: Workspace) -> str:
    return "__Host-login-csrf" if ws.settings.secure_cookies else "login-csrf"


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@dataclass(frozen=True)
class Principal:
    user: User
    session: Session
    actor: Actor

    @property
    def clinic_id(self) -> str:
        return self.user.clinic_id


workspace = from_request


def client_ip(request: HTTPConnection) -> str | None:
    return request.client.host if request.client else None


def safe_next(path: str | None) -> str:
    """Only a path on this site: never `//host` or a full URL (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/patients"
    return path


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def origin_matches(conn: HTTPConnection) -> bool | None:
    """Whether the Origin the browser sent is this site's; None when none was sent."""
    origin = conn.headers.get("origin")
    if origin is None:
        return None
    return urlsplit(origin).netloc == conn.headers.get("host", "")


def check_origin(request: Request) -> None:
    # No Origin: not every client sends one; the CSRF token still has to match.
    if origin_matches(request) is False:
        raise HTTPException(403, "cross-site request refused (Origin does not match this site)")


async def check_csrf(request: Request, expected: str) -> None:
    check_origin(request)
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf_token")
            presented = value if isinstance(value, str) else None
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def live_session(request: HTTPConnection, ws: Workspace) -> tuple[User, Session] | None:
    """The person behind a request's (or a WebSocket handshake's) session cookie, if the session is live."""
    token = request.cookies.get(session_cookie(ws))
    if not token:
        return None
    now = ws.now()
    # Autocommit statements, no transaction around them: a page's session check reads, and takes the
    # write lock only for its (rare) touch or end, so pages do not queue behind a long attribution pass.
    conn = ws.conn()
    background = request.headers.get(AUTO_REFRESH_HEADER) == "1"
    session = sessions.lookup(conn, token, now, ws.settings.sessions, touch=not background)
    if session is None:
        return None
    user = users.by_id(conn, session.user_id)
    if user is None or user.disabled_at is not None:
        sessions.end(conn, session.id, now, "account disabled")
        return None
    return user, session


async def require_user(request: Request, ws: Workspace = Depends(workspace)) -> Principal:  # noqa: B008
    found = live_session(request, ws)
    if found is None or found[1].stage != "active":
        raise LoginRequired(login_url(request))
    user, session = found
    if request.method not in SAFE_METHODS:
        await check_csrf(request, session.csrf)
    return Principal(user, session, Actor(user.email, user.clinic_id, user.id, client_ip(request)))


async def require_admin(principal: Principal = Depends(require_user)) -> Principal:  # noqa: B008
    if not principal.user.is_admin:
        raise HTTPException(403, "this page is for clinic admins")
    return principal


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def refuse_nul(request: Request) -> None:
    """A NUL character in a parameter or an id is refused (400) on either engine.

    PostgreSQL's text cannot hold one (the query itself fails there), so nothing stored has one: refused
    before any query, the answer is the same whichever engine the hub runs on.
    """
    values = [*request.path_params.values(), *(v for item in request.query_params.multi_items() for v in item)]
    if any("\x00" in str(v) for v in values):
        raise HTTPException(400, "a parameter holds a NUL character")
