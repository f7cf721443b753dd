"""The two live-consult sockets: the kiosk's (`/ws/kiosk`) and the provider's call page's (`/ws/consults/{id}`).

Neither is on the app's exempt list, and neither can use the pages' login dependency (a WebSocket has no
redirect to offer), so each authenticates itself before it reads a single message:

- `/ws/kiosk`: `Authorization: Bearer <kiosk credential>` (`hub kiosks credential`). A device has no session;
  its identity is the credential's kiosk, never anything a message says.
- `/ws/consults/{id}`: the provider's session cookie, exactly as for pages, plus this site's Origin (a
  browser always sends one on a WebSocket handshake, and there is no CSRF token to fall back on); only the
  provider who joined that consult, at its clinic.

Refused sockets are accepted and closed at once with the reason's code (4401 no credential or session,
4403 not yours or cross-site, 4404 no such consult): nothing they send is read. (Closing before accepting
would reach real clients as a bare HTTP 403, without the reason.) Open sockets re-check their credential
or session every `recheck_s` (revoked, logged out, account disabled) and close if it has gone.

This module is the edge: it owns the sockets (read, write, watch for silence); `hub.consults.relay`
decides what each message means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from hub.accounts import kiosk_credentials, sessions, users
from hub.audit import Actor
from hub.consults import store as consults
from hub.consults.relay import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_SILENT,
    CLOSE_UNAUTHENTICATED,
    Close,
    Peer,
    Relay,
)
from hub.web.security import client_ip, live_session, origin_matches, session_cookie
from hub.workspace import Workspace

log = logging.getLogger(__name__)
router = APIRouter()


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.accept()
    await websocket.close(code, reason)


def _bearer(header: str | None) -> str | None:
    scheme, _, secret = (header or "").partition(" ")
    return (secret.strip() or None) if scheme.lower() == "bearer" else None


@router.websocket("/ws/kiosk")
async def kiosk_socket(websocket: WebSocket) -> None:
    ws: Workspace = websocket.app.state.workspace
    relay: Relay = websocket.app.state.consult_relay
    secret = _bearer(websocket.headers.get("authorization"))
    kiosk = None
    if secret is not None:
        kiosk = await run_in_threadpool(lambda: kiosk_credentials.kiosk_for(ws.conn(), secret))
    if kiosk is None or secret is None:
        await _refuse(websocket, CLOSE_UNAUTHENTICATED, "unknown or revoked kiosk credential")
        return
    digest = kiosk_credentials.digest(secret)
    await websocket.accept()
    peer = Peer.open("kiosk", kiosk, Actor(f"kiosk:{kiosk}", None, None, client_ip(websocket)))
    await _serve(
        websocket,
        peer,
        relay,
        attach=lambda: relay.attach_kiosk(peer),
        still_allowed=lambda: kiosk_credentials.still_valid(ws.conn(), kiosk, digest),
        revoked="the kiosk credential was revoked or replaced",
    )


@router.websocket("/ws/consults/{consult_id}")
async def provider_socket(websocket: WebSocket, consult_id: str) -> None:
    ws: Workspace = websocket.app.state.workspace
    relay: Relay = websocket.app.state.consult_relay
    if origin_matches(websocket) is not True:
        await _refuse(websocket, CLOSE_FORBIDDEN, "cross-site socket refused (Origin missing or not this site)")
        return
    found = await run_in_threadpool(live_session, websocket, ws)
    if found is None or found[1].stage != "active":
        await _refuse(websocket, CLOSE_UNAUTHENTICATED, "log in first")
        return
    user, _ = found
    consult = await run_in_threadpool(lambda: consults.get(ws.conn(), user.clinic_id, consult_id))
    if consult is None:
        await _refuse(websocket, CLOSE_NOT_FOUND, "no such consult")
        return
    if consult.provider_user_id != user.id:
        await _refuse(websocket, CLOSE_FORBIDDEN, "only the provider who joined this consult")
        return
    token = websocket.cookies[session_cookie(ws)]
    await websocket.accept()
    actor = Actor(user.email, user.clinic_id, user.id, client_ip(websocket))
    peer = Peer.open("provider", consult_id, actor, name=user.name)

    def still_allowed() -> bool:
        # Being on a call is activity: the check touches the session, so a long call does not log out.
        conn = ws.conn()
        session = sessions.lookup(conn, token, ws.now(), ws.settings.sessions, touch=True)
        person = users.by_id(conn, session.user_id) if session is not None else None
        return person is not None and person.disabled_at is None

    await _serve(
        websocket,
        peer,
        relay,
        attach=lambda: relay.attach_provider(peer, user.id),
        still_allowed=still_allowed,
        revoked="your session has ended",
    )


async def _serve(
    websocket: WebSocket,
    peer: Peer,
    relay: Relay,
    *,
    attach: Callable[[], None],
    still_allowed: Callable[[], bool],
    revoked: str,
) -> None:
    """Read, write and watch one accepted socket until it closes, goes silent or loses its right to be open."""
    await run_in_threadpool(attach)
    tasks = [
        asyncio.ensure_future(_read(websocket, peer, relay)),
        asyncio.ensure_future(_write(websocket, peer)),
        asyncio.ensure_future(_watch(peer, relay, still_allowed, revoked)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await run_in_threadpool(relay.detach, peer)
            close = next((r for r in results if isinstance(r, Close)), None)
            if close is not None and websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                    await websocket.close(close.code, close.reason)


async def _read(websocket: WebSocket, peer: Peer, relay: Relay) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        peer.heard()
        text, data = message.get("text"), message.get("bytes")
        parsed = relay.parse(peer, text if text is not None else data or b"")
        if parsed is not None:
            await run_in_threadpool(relay.handle, peer, parsed)


async def _write(websocket: WebSocket, peer: Peer) -> None:
    while True:
        item = await peer.outbox.get()
        if isinstance(item, Close):
            await websocket.close(item.code, item.reason)
            return
        await websocket.send_text(item)


async def _watch(peer: Peer, relay: Relay, still_allowed: Callable[[], bool], revoked: str) -> Close:
    """A peer silent past `gone_after_s` is gone; one whose credential or session ended must go."""
    settings = relay.settings
    tick = min(0.25, settings.gone_after_s / 4)
    next_check = time.monotonic() + settings.recheck_s
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        if now - peer.last_heard > settings.gone_after_s:
            log.info("consult signaling: %s %s silent for %.1f s: gone", peer.side, peer.key, now - peer.last_heard)
            return Close(CLOSE_SILENT, f"nothing heard for {settings.gone_after_s:g} s")
        if now >= next_check:
            next_check = now + settings.recheck_s
            if not await run_in_threadpool(still_allowed):
                return Close(CLOSE_UNAUTHENTICATED, revoked)
