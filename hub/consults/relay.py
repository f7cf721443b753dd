"""The signaling relay: which kiosk and which provider are connected, and what passes between them.

In memory, in one process. The hub serves its web app (pages, API and both sockets) from one process:
`hub serve` runs a single uvicorn server, and its ingest workers never touch sockets. So the open sockets
are registered here and nowhere else: kiosk sockets by kiosk id, provider sockets by consult id. (A second
web process would not see the first one's sockets; that is why there is one.) After a restart the
sockets are gone, so consults left waiting or live are ended at start-up (`store.end_orphans`).

Who may say what:
- A kiosk speaks only for itself: its identity comes from its credential (`/ws/kiosk`), never from a
  message, and it may act only on its own consults.
- A provider's socket belongs to one consult (the one they joined, `/ws/consults/{id}`) and may act only on it.
- Every inbound message is validated with the wire contract (`device.protocol.signaling`). A bad one is
  answered with an `Error` and the socket stays open: nothing a peer sends can close it from here.

Liveness: both sides ping every `HEARTBEAT_S` and are answered with `pong`. A side whose socket closes, or
that is silent for `gone_after_s`, is gone: a live consult then ends at once (`peer_gone`, ended by the hub)
and the other side is told; a waiting consult whose kiosk is gone ends as `cancelled`. A provider who joins
but whose call page never opens its socket within `provider_connect_s` is gone too.

Threads: message handling reads and writes SQLite, so it runs in worker threads; each socket is owned by
its own coroutine. The relay never awaits a socket: it posts to the socket's outbound queue through the
socket's own event loop (`call_soon_threadsafe`), so a slow or vanished peer cannot hold up the other side,
and one lock guards the registry and the state changes that go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from device.protocol.envelope import EnvelopeError
from device.protocol.signaling import (
    MAX_SDP,
    Answer,
    End,
    Ended,
    Error,
    Form,
    Joined,
    Message,
    Offer,
    Ping,
    Pong,
    Queued,
    Reason,
    Request,
    Vitals,
    parse_from_browser,
    parse_from_kiosk,
)
from hub import audit
from hub.audit import Actor
from hub.consults import ice
from hub.consults import store as consults
from hub.consults.store import Consult, ConsultError, EndedBy
from hub.db import Connection
from hub.workspace import Workspace

log = logging.getLogger(__name__)

# An offer's SDP may be 64 KiB, and JSON escaping can double it; nothing legitimate is larger.
MAX_MESSAGE_BYTES = 2 * MAX_SDP + 16 * 1024

# Close codes the sockets use (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401  # no, unknown or revoked kiosk credential; no live session
CLOSE_FORBIDDEN = 4403  # not the provider who joined this consult; a cross-site page
CLOSE_NOT_FOUND = 4404  # no such consult at this clinic
CLOSE_SILENT = 4408  # nothing heard for gone_after_s
CLOSE_REPLACED = 4409  # a newer socket took this one's place, or the call is open in another window

FromKiosk = Request | Offer | End | Vitals
FromBrowser = Answer | End | Message | Form


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(eq=False)
class Peer:
    """One open socket: whose it is, when it was last heard, and its outbound queue on its own event loop."""

    side: Literal["kiosk", "provider"]
    key: str  # the kiosk id, or the consult id of a provider's socket
    actor: Actor  # who it is in the audit log
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue[str | Close]
    name: str = ""  # the provider's name, as the patient sees it
    last_heard: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, side: Literal["kiosk", "provider"], key: str, actor: Actor, *, name: str = "") -> Peer:
        """Made inside the socket's coroutine: the queue and the loop are that socket's."""
        return cls(side, key, actor, asyncio.get_running_loop(), asyncio.Queue(), name)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def post(self, message: BaseModel) -> None:
        self._put(message.model_dump_json())

    def close(self, code: int, reason: str) -> None:
        self._put(Close(code, reason))

    def _put(self, item: str | Close) -> None:
        # RuntimeError: the socket's event loop has stopped, so that peer is gone already.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)


def _error(text: str) -> Error:
    return Error(message=text[:500])


class Relay:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.settings = ws.settings.consults
        self._lock = threading.RLock()
        self._kiosks: dict[str, Peer] = {}
        self._providers: dict[str, Peer] = {}
        self._deadlines: dict[str, threading.Timer] = {}

    # -- start-up and shutdown

    def end_orphans(self) -> int:
        """Consults a previous run left waiting or live: their sockets died with it."""
        now = self.ws.now()
        with self._lock, self.ws.write() as w:
            orphans = consults.end_orphans(w, now)
            for c in orphans:
                self._audit_end(w, c, "cancelled" if c.state == "waiting" else "peer_gone", "hub", None, now=now)
        return len(orphans)

    def stop(self) -> None:
        with self._lock:
            for timer in self._deadlines.values():
                timer.cancel()
            self._deadlines.clear()

    # -- sockets arrive and leave

    def attach_kiosk(self, peer: Peer) -> None:
        """A kiosk's socket is open: it replaces an older one of the same kiosk, and learns its queue positions."""
        with self._lock:
            old = self._kiosks.get(peer.key)
            self._kiosks[peer.key] = peer
            if old is not None:
                old.close(CLOSE_REPLACED, "replaced by a newer connection from this kiosk")
            clinics = {c.clinic_id for c in consults.open_for_kiosk(self.ws.conn(), peer.key) if c.state == "waiting"}
            for clinic_id in clinics:
                self._send_queue(clinic_id, only=peer.key)

    def attach_provider(self, peer: Peer, user_id: int) -> None:
        """The joined provider's call page is connected: the kiosk is told who joined, with the ICE servers."""
        with self._lock:
            consult = consults.by_id(self.ws.conn(), peer.key)
            if consult is None or consult.provider_user_id != user_id:
                peer.close(CLOSE_FORBIDDEN, "not your consult")
                return
            if consult.state == "ended":
                assert consult.reason is not None
                peer.post(Ended(consult=consult.id, reason=consult.reason))
                peer.close(1000, "the consult has ended")
                return
            if peer.key in self._providers:
                peer.close(CLOSE_REPLACED, "this call is already open in another window")
                return
            self._providers[peer.key] = peer
            timer = self._deadlines.pop(peer.key, None)
            if timer is not None:
                timer.cancel()
            kiosk = self._kiosks.get(consult.kiosk)
            if kiosk is None:
                self._end(consult, "peer_gone", "hub", None)
                return
            servers = ice.servers(self.settings.ice, consult.id, ice.turn_clock())
            relay_only = self.settings.ice.relay_only
            kiosk.post(Joined(consult=consult.id, provider=peer.name[:200], ice_servers=servers, relay_only=relay_only))

    def detach(self, peer: Peer) -> None:
        """A socket closed or went silent. Only the registered socket counts (a replaced one changes nothing)."""
        with self._lock:
            registry = self._kiosks if peer.side == "kiosk" else self._providers
            if registry.get(peer.key) is not peer:
                return
            del registry[peer.key]
            if peer.side == "kiosk":
                for c in consults.open_for_kiosk(self.ws.conn(), peer.key):
                    self._end(c, "cancelled" if c.state == "waiting" else "peer_gone", "hub", None)
            else:
                consult = consults.by_id(self.ws.conn(), peer.key)
                if consult is not None and consult.state == "live":
                    self._end(consult, "peer_gone", "hub", None)

    def consult_joined(self, consult_id: str, clinic_id: str) -> None:
        """After a provider joined (the page's POST): the queue moved, and their call page must connect in time."""
        with self._lock:
            self._send_queue(clinic_id)
            if consult_id not in self._providers:
                timer = threading.Timer(self.settings.provider_connect_s, self._provider_never_came, (consult_id,))
                timer.daemon = True
                old = self._deadlines.pop(consult_id, None)
                if old is not None:
                    old.cancel()
                self._deadlines[consult_id] = timer
                timer.start()

    def _provider_never_came(self, consult_id: str) -> None:
        with self._lock:
            self._deadlines.pop(consult_id, None)
            if consult_id in self._providers:
                return
            c = consults.by_id(self.ws.conn(), consult_id)
            if c is not None and c.state == "live":
                self._end(c, "peer_gone", "hub", None)

    # -- messages

    def parse(self, peer: Peer, raw: str | bytes) -> FromKiosk | FromBrowser | None:
        """Validate one inbound message; a ping is answered here. None: nothing more to do (answered or refused)."""
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > MAX_MESSAGE_BYTES:
            peer.post(_error(f"message too large: {size} bytes (at most {MAX_MESSAGE_BYTES})"))
            return None
        try:
            message = parse_from_kiosk(raw) if peer.side == "kiosk" else parse_from_browser(raw)
        except EnvelopeError as exc:
            peer.post(_error(str(exc)))
            return None
        if isinstance(message, Ping):
            peer.post(Pong())
            return None
        return message

    def handle(self, peer: Peer, message: FromKiosk | FromBrowser) -> None:
        """Act on a validated message (in a worker thread). Errors become an `Error` reply, never a closed socket."""
        try:
            with self._lock:
                if peer.side == "kiosk":
                    self._from_kiosk(peer, message)  # type: ignore[arg-type]
                else:
                    self._from_browser(peer, message)  # type: ignore[arg-type]
        except Exception:  # a bug or a database hiccup must not close the socket: the peer is told, we log
            log.exception("consult signaling: could not handle a %s message", message.type)
            peer.post(_error("the hub could not handle that message; try again"))

    def _from_kiosk(self, peer: Peer, message: FromKiosk) -> None:
        if isinstance(message, Request):
            self._request(peer, message)
            return
        consult = consults.by_id(self.ws.conn(), message.consult)
        if consult is None or consult.kiosk != peer.key:
            peer.post(_error(f"no consult {message.consult} at this kiosk"))
            return
        if isinstance(message, End):
            if consult.state != "ended":
                self._end(consult, message.reason, "kiosk", peer.actor)
            return
        if consult.state != "live":
            peer.post(_error(f"consult {consult.id} is {consult.state}, not live"))
            return
        provider = self._providers.get(consult.id)
        if provider is None:
            peer.post(_error(f"the provider of consult {consult.id} is not connected yet"))
            return
        provider.post(message)  # an Offer, or Vitals taken during the call

    def _request(self, peer: Peer, message: Request) -> None:
        now = self.ws.now()
        try:
            with self.ws.write() as w:
                consult, new = consults.request(
                    w,
                    kiosk=peer.key,
                    consult_id=message.consult,
                    subject=message.subject,
                    language=message.language,
                    vitals=message.vitals,
                    now=now,
                )
                if new:
                    actor = Actor(peer.actor.label, consult.clinic_id, None, peer.actor.ip)
                    audit.record(
                        w, actor, "request_consult", now, patient_id=consult.patient_id, target=f"consult:{consult.id}"
                    )
        except ConsultError as exc:
            peer.post(_error(str(exc)))
            return
        if consult.state == "ended":
            assert consult.reason is not None
            peer.post(Ended(consult=consult.id, reason=consult.reason))
        elif consult.state == "waiting":
            self._send_queue(consult.clinic_id, only=None if new else peer.key)  # a retry moves nobody else

    def _from_browser(self, peer: Peer, message: FromBrowser) -> None:
        if message.consult != peer.key:
            peer.post(_error(f"this socket is for consult {peer.key} only"))
            return
        consult = consults.by_id(self.ws.conn(), peer.key)
        if consult is None or consult.state != "live":
            state = "gone" if consult is None else consult.state
            peer.post(_error(f"consult {peer.key} is {state}, not live"))
            return
        if isinstance(message, End):
            self._end(consult, message.reason, "provider", peer.actor)
            return
        kiosk = self._kiosks.get(consult.kiosk)
        if kiosk is None:
            peer.post(_error("the patient's kiosk is not connected"))
            return
        if isinstance(message, Message | Form):
            now = self.ws.now()
            action, detail = (
                ("consult_message", {"chars": len(message.text)})
                if isinstance(message, Message)
                else ("consult_form", {"form": message.form})
            )
            with self.ws.write() as w:
                audit.record(
                    w, peer.actor, action, now, patient_id=consult.patient_id, target=f"consult:{consult.id}",
                    detail=detail,
                )  # fmt: skip
        kiosk.post(message)  # an Answer, a Message for the kiosk screen, or a Form to open there

    # -- state changes that others must hear about (called with the lock held)

    def _end(self, consult: Consult, reason: Reason, by: EndedBy, actor: Actor | None) -> None:
        """End a consult, audit it, tell the other side and the waiting kiosks (the queue or the estimate moved)."""
        now = self.ws.now()
        with self.ws.write() as w:
            result = consults.end(w, consult.id, reason=reason, by=by, now=now)
            if result is None or not result[1]:
                return
            self._audit_end(w, consult, reason, by, actor, now=now)
        ended = Ended(consult=consult.id, reason=reason)
        kiosk = self._kiosks.get(consult.kiosk)
        provider = self._providers.get(consult.id)
        if kiosk is not None and by != "kiosk":
            kiosk.post(ended)
        if provider is not None and by != "provider":
            provider.post(ended)
        timer = self._deadlines.pop(consult.id, None)
        if timer is not None:
            timer.cancel()
        self._send_queue(consult.clinic_id)

    @staticmethod
    def _audit_end(
        w: Connection, consult: Consult, reason: Reason, by: EndedBy, actor: Actor | None, *, now: float
    ) -> None:
        who = actor if actor is not None else Actor("hub", consult.clinic_id)
        who = Actor(who.label, consult.clinic_id, who.user_id, who.ip)
        audit.record(
            w, who, "end_consult", now, patient_id=consult.patient_id, target=f"consult:{consult.id}",
            detail={"reason": reason, "by": by},
        )  # fmt: skip

    def _send_queue(self, clinic_id: str, *, only: str | None = None) -> None:
        """Every waiting kiosk of the clinic (or `only` that one) hears its fresh position and estimate."""
        conn = self.ws.conn()
        median = consults.median_handle_s(conn, clinic_id, self.ws.now())
        for position, c in enumerate(consults.waiting(conn, clinic_id), start=1):
            peer = self._kiosks.get(c.kiosk)
            if peer is not None and only in (None, c.kiosk):
                estimate = consults.estimate_from(median, position)
                peer.post(Queued(consult=c.id, position=position, estimate_s=estimate))
