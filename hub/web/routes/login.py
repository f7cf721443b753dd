"""Login (password, then TOTP when enrolled), logout, and a person's own account settings.

Login answers the same "email or password is wrong" whether the account exists or not,
and spends one argon2 verification either way. Failures are recorded per account and per
client address; while `throttle.retry_after` says wait, attempts are refused with 429
without looking at the password. Each step that raises privilege issues a new session id.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

import segno
from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hub import audit
from hub.accounts import passwords, sessions, throttle, totp, users
from hub.audit import Actor
from hub.web.security import (
    Principal,
    check_csrf,
    client_ip,
    live_session,
    login_csrf_cookie,
    new_login_csrf,
    require_user,
    safe_next,
    session_cookie,
    workspace,
)
from hub.web.templating import TEMPLATES
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]


def _set_session_cookie(response: Response, ws: Workspace, token: str) -> None:
    response.set_cookie(
        session_cookie(ws),
        token,
        max_age=int(ws.settings.sessions.absolute_s),
        path="/",
        secure=ws.settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


def _login_page(request: Request, ws: Workspace, *, next_path: str, error: str | None, status: int) -> Response:
    token = request.cookies.get(login_csrf_cookie(ws)) or new_login_csrf()
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"csrf_token": token, "next": next_path, "error": error, "user": None},
        status_code=status,
    )
    response.set_cookie(
        login_csrf_cookie(ws), token, path="/", secure=ws.settings.secure_cookies, httponly=True, samesite="strict"
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, ws: Ws, next: str = "/patients") -> Response:
    return _login_page(request, ws, next_path=safe_next(next), error=None, status=200)


def _throttle_keys(email: str, ip: str | None) -> list[str]:
    return [f"user:{email.strip().lower()}", f"ip:{ip or '?'}"]


def _wait(ws: Workspace, keys: list[str], now: float) -> float:
    conn = ws.conn()
    window = ws.settings.throttle.window_s
    waits = []
    for key in keys:
        waits.append(throttle.retry_after(throttle.failure_times(conn, key, now - window), now, ws.settings.throttle))
    return max(waits)


def _fail(ws: Workspace, keys: list[str], now: float) -> None:
    with ws.write() as conn:
        throttle.record_failure(conn, keys, now)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    ws: Ws,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/patients",
) -> Response:
    expected = request.cookies.get(login_csrf_cookie(ws), "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the login page and try again")
    next_path = safe_next(next)
    now = ws.now()
    ip = client_ip(request)
    keys = _throttle_keys(email, ip)
    user = users.by_email(ws.conn(), email)
    actor = Actor(email.strip()[:320], user.clinic_id if user else None, user.id if user else None, ip)
    wait = _wait(ws, keys, now)
    if wait > 0:
        with ws.write() as conn:
            audit.record(conn, actor, "login", now, outcome="throttled")
        response = _login_page(
            request,
            ws,
            next_path=next_path,
            error=f"Too many failed attempts. Try again in {int(wait) + 1} s.",
            status=429,
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if not ok or user is None or user.disabled_at is not None:
        _fail(ws, keys, now)
        with ws.write() as conn:
            outcome = "disabled account" if ok and user is not None else "wrong email or password"
            audit.record(conn, actor, "login", now, outcome=f"failed: {outcome}")
        return _login_page(request, ws, next_path=next_path, error="Email or password is wrong.", status=401)
    with ws.write() as conn:
        if passwords.needs_rehash(user.password_hash):
            users.set_password_hash(conn, user.id, passwords.hash_password(password))
        throttle.forget_failures(conn, keys[0])
        stage: sessions.Stage = "mfa" if user.has_totp else "active"
        token, _ = sessions.create(conn, user.id, stage, now, ip=ip, user_agent=request.headers.get("user-agent"))
        audit.record(
            conn, actor, "login", now, outcome="ok" if stage == "active" else "password ok, second factor next"
        )
    target = next_path if stage == "active" else f"/login/totp?next={quote(next_path, safe='')}"
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(response, ws, token)
    response.delete_cookie(login_csrf_cookie(ws), path="/", secure=ws.settings.secure_cookies, httponly=True)
    return response


def _mfa_session(request: Request, ws: Workspace) -> tuple[users.User, sessions.Session]:
    found = live_session(request, ws)
    if found is None or found[1].stage != "mfa":
        raise HTTPException(401, "log in with your password first")
    return found


@router.get("/login/totp", response_class=HTMLResponse)
def totp_form(request: Request, ws: Ws, next: str = "/patients") -> Response:
    if live_session(request, ws) is None:
        return RedirectResponse("/login", status_code=303)
    _, session = _mfa_session(request, ws)
    return TEMPLATES.TemplateResponse(
        request, "login_totp.html", {"csrf_token": session.csrf, "next": safe_next(next), "error": None, "user": None}
    )


@router.post("/login/totp", response_class=HTMLResponse)
async def totp_submit(
    request: Request,
    ws: Ws,
    code: Annotated[str, Form(max_length=20)],
    next: Annotated[str, Form(max_length=2000)] = "/patients",
) -> Response:
    user, session = _mfa_session(request, ws)
    await check_csrf(request, session.csrf)
    now = ws.now()
    ip = client_ip(request)
    keys = _throttle_keys(user.email, ip)
    actor = Actor(user.email, user.clinic_id, user.id, ip)
    wait = _wait(ws, keys, now)
    step = None
    if wait <= 0 and user.totp_secret:
        step = totp.matching_step(user.totp_secret, code, now, user.totp_last_step)
    with ws.write() as conn:
        if step is not None and users.use_totp_step(conn, user.id, step):
            sessions.end(conn, session.id, now, "second factor given")
            agent = request.headers.get("user-agent")
            token, _ = sessions.create(conn, user.id, "active", now, ip=ip, user_agent=agent)
            audit.record(conn, actor, "login", now, outcome="ok")
            done = RedirectResponse(safe_next(next), status_code=303)
            _set_session_cookie(done, ws, token)
            return done
        audit.record(conn, actor, "login", now, outcome="throttled" if wait > 0 else "failed: wrong TOTP code")
    if wait <= 0:
        _fail(ws, keys, now)
    status = 429 if wait > 0 else 401
    error = f"Too many failed attempts. Try again in {int(wait) + 1} s." if wait > 0 else "That code is not right."
    response = TEMPLATES.TemplateResponse(
        request,
        "login_totp.html",
        {"csrf_token": session.csrf, "next": safe_next(next), "error": error, "user": None},
        status_code=status,
    )
    if wait > 0:
        response.headers["Retry-After"] = str(int(wait) + 1)
    return response


@router.post("/logout")
async def logout(principal: User_, ws: Ws) -> Response:
    now = ws.now()
    with ws.write() as conn:
        sessions.end(conn, principal.session.id, now, "logout")
        audit.record(conn, principal.actor, "logout", now)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(session_cookie(ws), path="/", secure=ws.settings.secure_cookies, httponly=True)
    return response


# -- the person's own account -------------------------------------------------------------


def _qr_svg(uri: str) -> str:
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, principal: User_, ws: Ws) -> Response:
    user = principal.user
    secret = None if user.has_totp else totp.new_secret()
    uri = totp.provisioning_uri(secret, user.email) if secret else None
    return TEMPLATES.TemplateResponse(
        request,
        "account.html",
        {
            "user": user,
            "csrf_token": principal.session.csrf,
            "secret": secret,
            "qr_svg": _qr_svg(uri) if uri else None,
            "message": request.query_params.get("message"),
            "error": None,
        },
    )


def _account_error(request: Request, principal: Principal, error: str, status: int = 400) -> Response:
    secret = None if principal.user.has_totp else totp.new_secret()
    uri = totp.provisioning_uri(secret, principal.user.email) if secret else None
    return TEMPLATES.TemplateResponse(
        request,
        "account.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "secret": secret,
            "qr_svg": _qr_svg(uri) if uri else None,
            "message": None,
            "error": error,
        },
        status_code=status,
    )


@router.post("/account/totp/enable")
def totp_enable(
    request: Request,
    principal: User_,
    ws: Ws,
    secret: Annotated[str, Form(pattern=r"^[A-Z2-7]{16,64}$")],
    code: Annotated[str, Form(max_length=20)],
) -> Response:
    now = ws.now()
    step = totp.matching_step(secret, code, now, None)
    if step is None:
        return _account_error(request, principal, "That code does not match: scan the new code and try again.")
    with ws.write() as conn:
        users.set_totp(conn, principal.user.id, secret, step)
        audit.record(conn, principal.actor, "totp_enabled", now)
    return RedirectResponse("/account?message=Two-step+login+is+on.", status_code=303)


@router.post("/account/totp/disable")
def totp_disable(
    request: Request, principal: User_, ws: Ws, password: Annotated[str, Form(max_length=1024)]
) -> Response:
    if not passwords.verify_password(principal.user.password_hash, password):
        return _account_error(request, principal, "Your password is not right.", status=401)
    now = ws.now()
    with ws.write() as conn:
        users.set_totp(conn, principal.user.id, None)
        audit.record(conn, principal.actor, "totp_disabled", now)
    return RedirectResponse("/account?message=Two-step+login+is+off.", status_code=303)


@router.post("/account/password")
def change_password(
    request: Request,
    principal: User_,
    ws: Ws,
    current: Annotated[str, Form(max_length=1024)],
    new: Annotated[str, Form(max_length=1024)],
) -> Response:
    if not passwords.verify_password(principal.user.password_hash, current):
        return _account_error(request, principal, "Your current password is not right.", status=401)
    try:
        new_hash = passwords.hash_password(new)
    except passwords.PasswordPolicyError as exc:
        return _account_error(request, principal, f"New password: {exc}.")
    now = ws.now()
    with ws.write() as conn:
        users.set_password_hash(conn, principal.user.id, new_hash)
        # Every other session of this person ends: a changed password must lock out whoever knew the old one.
        sessions.end_others_after_password_change(conn, principal.user.id, principal.session.id, now)
        audit.record(conn, principal.actor, "password_changed", now)
    return RedirectResponse("/account?message=Password+changed.", status_code=303)
