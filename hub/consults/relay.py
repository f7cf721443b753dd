"""The signaling relay: which kiosk and which provider are connected, and what passes between them.

Each hub instance registers the sockets it holds in memory: kiosk sockets by kiosk id, provider sockets by
consult id. On SQLite there is one instance (the file is local to it) and that registry is the whole truth.
After a restart the sockets are gone, so consults left waiting or live are ended at start-up
(`store.end_orphans`).

On PostgreSQL several instances (processes, machines) share the database, and a kiosk's socket may be on one
instance while its provider's is on another. Then:
- Who holds which socket is in the database too (`consult_sockets`: side, key, instance, the socket's own id),
  written when a socket attaches and removed when it detaches. Every "is the other side connected?" asks
  there, so the answer is the cluster's.
- Each instance holds a session-level advisory lock on its own instance number, on a connection of its own
  that LISTENs on the instance's channel (a background thread, `notifies()` with a timeout so it can stop).
  A socket row counts only while its instance's lock is held: an instance that dies (killed, partitioned)
  loses the lock with its session, and what it left behind says nothing.
- A message for a socket another instance holds (Joined, Offer, Answer, Message, Form, Vitals, Ended, Queued,
  the close of a replaced kiosk socket) is written to `consult_relay` for that instance, and only the row's id
  is NOTIFYed (payloads stop at 8000 bytes; an offer may be 64 KiB or more). The receiver deletes the rows it
  reads and posts each to its socket; rows for a dead instance are swept with its sockets.
- A kiosk that reconnects through another instance takes its key over; the instance that held the older
  socket is told to close it (CLOSE_REPLACED). A provider's call page open twice is refused, cluster-wide.
- Every `gone_after_s` each instance sweeps what dead instances left: their sockets are gone, and their
  consults end as if those sockets had closed (the other side is told). At start-up an instance ends only
  the consults with no socket on a running instance (`store.orphans`), never those live elsewhere.
- A provider who joined is awaited on the instance that served the join (a socket row without a socket):
  that instance's deadline ends the call if the call page never connects anywhere.

Who may say what:
- A kiosk speaks only for itself: its identity comes from its credential (`/ws/kiosk`), never from a
  message, and it may act only on its own consults.
- A provider's socket belongs to one consult (the one they joined, `/ws/consults/{id}`) and may act only on it.
- Every inbound message is validated with the wire contract (`device.protocol.signaling`). A bad one is
  answered with an `Error` and the socket stays open: nothing a peer sends can close it from here.
  What another instance hands over was validated there, by the instance that holds the sender's socket.

Liveness: both sides ping every `HEARTBEAT_S` and are answered with `pong`. A side whose socket closes, or
that is silent for `gone_after_s`, is gone: a live consult then ends at once (`peer_gone`, ended by the hub)
and the other side is told; a waiting consult whose kiosk is gone ends as `cancelled`. A provider who joins
but whose call page never opens its socket within `provider_connect_s` is gone too.

Threads: message handling reads and writes the database, so it runs in worker threads; each socket is owned
by its own coroutine. The relay never awaits a socket: it posts to the socket's outbound queue through the
socket's own event loop (`call_soon_threadsafe`), so a slow or vanished peer cannot hold up the other side,
and one lock guards the registry and the state changes that go with it. The listening thread delivers what
other instances hand over, and sweeps, under the same lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
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
from hub.consults.store import RELAY_LOCK_CLASS, Consult, ConsultError, EndedBy, Holder, Side
from hub.db import Connection, DatabaseError, PostgresLocation
from hub.db.postgres import PgConnection
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

REPLACED_KIOSK = "replaced by a newer connection from this kiosk"
# The listening thread wakes at least this often (to stop, to sweep); a NOTIFY wakes it at once.
POLL_S = 1.0

FromKiosk = Request | Offer | End | Vitals
FromBrowser = Answer | End | Message | Form


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


class Speaker(Protocol):
    """A socket the relay can talk to: one held here (`Peer`), or one another instance holds (`RemotePeer`)."""

    def post(self, message: BaseModel) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class Peer:
    """One open socket: whose it is, when it was last heard, and its outbound queue on its own event loop."""

    side: Side
    key: str  # the kiosk id, or the consult id of a provider's socket
    actor: Actor  # who it is in the audit log
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue[str | Close]
    name: str = ""  # the provider's name, as the patient sees it
    last_heard: float = field(default_factory=time.monotonic)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # this socket, among the key's sockets over time

    @classmethod
    def open(cls, side: Side, key: str, actor: Actor, *, name: str = "") -> Peer:
        """Made inside the socket's coroutine: the queue and the loop are that socket's."""
        return cls(side, key, actor, asyncio.get_running_loop(), asyncio.Queue(), name)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def post(self, message: BaseModel) -> None:
        self.post_text(message.model_dump_json())

    def post_text(self, text: str) -> None:
        self._put(text)

    def close(self, code: int, reason: str) -> None:
        self._put(Close(code, reason))

    def _put(self, item: str | Close) -> None:
        # RuntimeError: the socket's event loop has stopped, so that peer is gone already.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)


@dataclass(frozen=True)
class RemotePeer:
    """A socket another instance holds: what is posted to it goes through the database to that instance."""

    relay: Relay
    side: Side
    key: str
    holder: Holder

    def post(self, message: BaseModel) -> None:
        conn = self.relay.ws.conn()
        consults.forward(conn, self.holder.instance, self.side, self.key, message=message.model_dump_json())

    def close(self, code: int, reason: str) -> None:
        conn, to = self.relay.ws.conn(), self.holder
        consults.forward(conn, to.instance, self.side, self.key, close=(code, reason), socket=to.socket)


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
        # This instance's number among those sharing a PostgreSQL database; None on SQLite (the only instance).
        self.instance: int | None = None
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None
        self._next_sweep = 0.0
        self._undelivered = False  # reading what was handed over failed: read again at the next wake
        if isinstance(ws.location, PostgresLocation):
            conn = self._listen(None)
            self._next_sweep = time.monotonic() + self.settings.gone_after_s
            self._listener = threading.Thread(
                target=_listening, args=(weakref.ref(self), conn, self._stopping), name="consult-relay", daemon=True
            )
            self._listener.start()

    # -- start-up and shutdown

    def end_orphans(self) -> int:
        """Consults a previous run left waiting or live: their sockets died with it.

        On PostgreSQL only those with no socket on a running instance: others may hold theirs."""
        if self.instance is not None:
            return self._sweep(start_up=True)
        now = self.ws.now()
        with self._lock, self.ws.write() as w:
            orphans = consults.end_orphans(w, now)
            for c in orphans:
                self._audit_end(w, c, "cancelled" if c.state == "waiting" else "peer_gone", "hub", None, now=now)
        return len(orphans)

    def stop(self) -> None:
        """Cancel the deadlines; stop listening, which releases this instance's lock (its sockets count as gone)."""
        with self._lock:
            for timer in self._deadlines.values():
                timer.cancel()
            self._deadlines.clear()
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if self.instance is not None:
            with contextlib.suppress(*DatabaseError):  # the wake-up is a courtesy: the thread wakes within POLL_S
                self.ws.conn().execute("SELECT pg_notify(?, '')", (consults.channel(self.instance),))
        listener.join(timeout=POLL_S * 5)

    # -- sockets arrive and leave

    def attach_kiosk(self, peer: Peer) -> None:
        """A kiosk's socket is open: it replaces an older one of the same kiosk (here or on another instance), and
        learns its queue positions."""
        with self._lock:
            replaced: Holder | None = None
            if self.instance is not None:
                with self.ws.write() as w:
                    replaced = consults.hold(
                        w, "kiosk", peer.key, instance=self.instance, socket=peer.id, now=self.ws.now(), take_over=True
                    )
            old = self._kiosks.get(peer.key)
            self._kiosks[peer.key] = peer
            if old is not None:
                old.close(CLOSE_REPLACED, REPLACED_KIOSK)
            if replaced is not None and replaced.instance != self.instance:
                RemotePeer(self, "kiosk", peer.key, replaced).close(CLOSE_REPLACED, REPLACED_KIOSK)
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
            if peer.key in self._providers or self._hold_provider(peer) is not None:
                peer.close(CLOSE_REPLACED, "this call is already open in another window")
                return
            self._providers[peer.key] = peer
            timer = self._deadlines.pop(peer.key, None)
            if timer is not None:
                timer.cancel()
            kiosk = self._find("kiosk", consult.kiosk)
            if kiosk is None:
                self._end(consult, "peer_gone", "hub", None)
                return
            servers = ice.servers(self.settings.ice, consult.id, ice.turn_clock())
            relay_only = self.settings.ice.relay_only
            kiosk.post(Joined(consult=consult.id, provider=peer.name[:200], ice_servers=servers, relay_only=relay_only))

    def _hold_provider(self, peer: Peer) -> Holder | None:
        """On PostgreSQL: record the provider's socket, unless another instance holds one of this call already."""
        if self.instance is None:
            return None
        with self.ws.write() as w:
            return consults.hold(
                w, "provider", peer.key, instance=self.instance, socket=peer.id, now=self.ws.now(), take_over=False
            )

    def detach(self, peer: Peer) -> None:
        """A socket closed or went silent. Only the registered socket counts (a replaced one changes nothing)."""
        with self._lock:
            registry = self._kiosks if peer.side == "kiosk" else self._providers
            if registry.get(peer.key) is not peer:
                return
            del registry[peer.key]
            if self.instance is not None:
                consults.release(self.ws.conn(), peer.side, peer.key, peer.id)
                if self._find(peer.side, peer.key) is not None:
                    return  # a newer socket of this kiosk, on another instance, has taken over: nothing ends
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
            if self.instance is None:
                awaited = consult_id not in self._providers
            else:  # awaited here, unless the call page is connected already (on any instance)
                with self.ws.write() as w:
                    connected = consults.hold(
                        w, "provider", consult_id, instance=self.instance, socket=None, now=self.ws.now(),
                        take_over=False,
                    )  # fmt: skip
                awaited = connected is None
            if awaited:
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
            if self._find("provider", consult_id) is not None:
                return
            c = consults.by_id(self.ws.conn(), consult_id)
            if c is not None and c.state == "live":
                self._end(c, "peer_gone", "hub", None)
            elif self.instance is not None:
                consults.stop_awaiting(self.ws.conn(), consult_id)

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
        provider = self._find("provider", consult.id)
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
        kiosk = self._find("kiosk", consult.kiosk)
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

    # -- where the sockets are

    def _find(self, side: Side, key: str) -> Speaker | None:
        """The open socket of `key`, here or on another running instance; None: not connected."""
        return self._find_all(side, [key]).get(key)

    def _find_all(self, side: Side, keys: list[str]) -> dict[str, Speaker]:
        registry = self._kiosks if side == "kiosk" else self._providers
        if self.instance is None:
            return {key: registry[key] for key in keys if key in registry}
        found: dict[str, Speaker] = {}
        for key, holder in consults.holders(self.ws.conn(), side, keys, me=self.instance).items():
            if holder.instance != self.instance:
                found[key] = RemotePeer(self, side, key, holder)
            elif (peer := registry.get(key)) is not None:
                found[key] = peer
        return found

    # -- state changes that others must hear about (called with the lock held)

    def _end(self, consult: Consult, reason: Reason, by: EndedBy, actor: Actor | None) -> None:
        """End a consult, audit it, tell the other side and the waiting kiosks (the queue or the estimate moved)."""
        now = self.ws.now()
        with self.ws.write() as w:
            if not self._end_in(w, consult, reason, by, actor, now=now):
                return
        self._tell_ended(consult, reason, by)
        self._send_queue(consult.clinic_id)

    def _end_in(
        self, w: Connection, consult: Consult, reason: Reason, by: EndedBy, actor: Actor | None, *, now: float
    ) -> bool:
        """Inside the caller's write transaction: end and audit; False if it had ended already."""
        result = consults.end(w, consult.id, reason=reason, by=by, now=now)
        if result is None or not result[1]:
            return False
        self._audit_end(w, consult, reason, by, actor, now=now)
        if self.instance is not None:
            consults.stop_awaiting(w, consult.id)
        return True

    def _tell_ended(self, consult: Consult, reason: Reason, by: EndedBy) -> None:
        """After the end is committed: the sides that did not end it hear it, wherever their sockets are."""
        ended = Ended(consult=consult.id, reason=reason)
        if by != "kiosk" and (kiosk := self._find("kiosk", consult.kiosk)) is not None:
            kiosk.post(ended)
        if by != "provider" and (provider := self._find("provider", consult.id)) is not None:
            provider.post(ended)
        timer = self._deadlines.pop(consult.id, None)
        if timer is not None:
            timer.cancel()

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
        queue = consults.waiting(conn, clinic_id)
        peers = self._find_all("kiosk", [c.kiosk for c in queue if only in (None, c.kiosk)])
        for position, c in enumerate(queue, start=1):
            peer = peers.get(c.kiosk)
            if peer is not None and only in (None, c.kiosk):
                estimate = consults.estimate_from(median, position)
                peer.post(Queued(consult=c.id, position=position, estimate_s=estimate))

    # -- several instances on PostgreSQL: listening, delivering, sweeping

    def _listen(self, previous: int | None) -> psycopg.Connection[Any]:
        """A connection of its own that holds this instance's lock and LISTENs on its channel.

        `previous`: the number this instance had before its connection was lost; kept if still free."""
        assert isinstance(self.ws.location, PostgresLocation)
        raw = PgConnection.open(self.ws.location.url).raw
        try:
            tried = [previous] if previous is not None else []
            tried += [1 + secrets.randbelow(2**31 - 2) for _ in range(16)]
            for number in tried:
                row = raw.execute(f"SELECT pg_try_advisory_lock({RELAY_LOCK_CLASS}, {int(number)})").fetchone()
                if row is not None and row[0]:
                    break
            else:
                raise RuntimeError("no free consult relay instance number")
            raw.execute(f"LISTEN {consults.channel(number)}")
            if number != previous:  # rows of a dead instance that had this number are not ours
                consults.forget_instance(PgConnection(raw), number)
        except BaseException:
            raw.close()
            raise
        self.instance = number
        return raw

    def _rejoin(self) -> None:
        """After the listening connection came back: this instance's sockets are recorded again (others may have
        swept them while its lock was gone), except those another instance has taken over since."""
        assert self.instance is not None
        me = self.instance
        with self._lock:
            with self.ws.write() as w:
                taken: list[Peer] = []
                for peer in [*self._kiosks.values(), *self._providers.values()]:
                    other = consults.hold(
                        w, peer.side, peer.key, instance=me, socket=peer.id, now=self.ws.now(), take_over=False
                    )
                    if other is not None:
                        taken.append(peer)
                for consult_id in self._deadlines:
                    consults.hold(w, "provider", consult_id, instance=me, socket=None, now=self.ws.now(),
                                  take_over=False)  # fmt: skip
            for peer in taken:
                (self._kiosks if peer.side == "kiosk" else self._providers).pop(peer.key, None)
                peer.close(CLOSE_REPLACED, "connected to another hub instance meanwhile")
            for peer in self._providers.values():  # a call another instance ended meanwhile: the page hears it now
                consult = consults.by_id(self.ws.conn(), peer.key)
                if consult is not None and consult.state == "ended" and consult.reason is not None:
                    peer.post(Ended(consult=consult.id, reason=consult.reason))
        self._undelivered = True

    def _wake(self, conn: psycopg.Connection[Any]) -> None:
        """One turn of the listening thread: deliver what was handed over, and sweep when it is time."""
        for _ in conn.notifies(timeout=POLL_S):
            if self._stopping.is_set():
                return
            self._deliver()
        if self._undelivered:
            self._deliver()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.settings.gone_after_s
            try:
                self._sweep(start_up=False)
            except Exception:
                log.exception("consult relay: could not sweep what stopped instances left")

    def _deliver(self) -> None:
        """Post what other instances handed over to the sockets held here."""
        assert self.instance is not None
        try:
            handed = consults.take_forwarded(self.ws.conn(), self.instance)
        except DatabaseError:
            log.exception("consult relay: could not read what other instances handed over; trying again")
            self._undelivered = True
            return
        self._undelivered = False
        with self._lock:
            for item in handed:
                registry = self._kiosks if item.side == "kiosk" else self._providers
                peer = registry.get(item.key)
                if peer is None:
                    continue  # gone meanwhile: its detach told the cluster
                if item.message is not None:
                    peer.post_text(item.message)
                elif item.close is not None and peer.id == item.socket:
                    del registry[item.key]  # replaced: its closing changes nothing (see detach)
                    peer.close(*item.close)

    def _sweep(self, *, start_up: bool) -> int:
        """What instances that stopped left: their sockets are gone, and consults left without a side end."""
        now = self.ws.now()
        with self._lock:
            if not start_up and not consults.dead_rows(self.ws.conn()):
                return 0
            ended: list[tuple[Consult, Reason]] = []
            with self.ws.write() as w:
                for c in consults.orphans(w, start_up=start_up):
                    reason: Reason = "cancelled" if c.state == "waiting" else "peer_gone"
                    if self._end_in(w, c, reason, "hub", None, now=now):
                        ended.append((c, reason))
            for c, reason in ended:
                self._tell_ended(c, reason, "hub")
            for clinic_id in sorted({c.clinic_id for c, _ in ended}):
                self._send_queue(clinic_id)
        return len(ended)


def _listening(ref: weakref.ref[Relay], conn: psycopg.Connection[Any] | None, stopping: threading.Event) -> None:
    """The listening thread: until the relay stops (or is dropped), deliver, sweep, and reconnect when cut off.

    It holds the relay only for one turn at a time, so an app dropped without being stopped takes its
    listener down with it. On the way out the instance's lock is released, so others see its sockets gone."""
    backoff = POLL_S / 2
    try:
        while not stopping.is_set():
            relay = ref()
            if relay is None:
                return
            try:
                conn = _turn(relay, conn)
                backoff = POLL_S / 2
                continue
            except psycopg.Error as exc:
                if conn is not None and not (conn.closed or conn.broken):
                    log.exception("consult relay: listening failed")
                elif _database_gone(exc):
                    log.warning("consult relay: the database is gone (%s); relaying stops", exc)
                    return
                else:
                    log.warning("consult relay: lost the listening connection (%s); reconnecting", exc)
                    if conn is not None:
                        conn.close()
                    conn = None
            except Exception:
                log.exception("consult relay: listening failed")
            finally:
                del relay
            stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)
    finally:
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock_all()")  # at once, not whenever the server notices the close
            conn.close()


def _turn(relay: Relay, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any]:
    """One turn of the listening thread, connecting again first if the connection was lost."""
    if conn is None:
        conn = relay._listen(relay.instance)
        try:
            relay._rejoin()
        except BaseException:
            conn.close()  # and try the whole again: the lock is back only with this instance's sockets recorded
            raise
    relay._wake(conn)
    return conn


def _database_gone(exc: psycopg.Error) -> bool:
    """The database itself was dropped (a test's, a decommissioned one): nothing is left to relay."""
    text = str(exc)  # a refused connection carries no SQLSTATE, only the server's words
    return exc.sqlstate == "3D000" or ('database "' in text and "does not exist" in text)
