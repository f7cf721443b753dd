"""Moves outbox items to the hub over MQTT and deletes them only on the hub's receipt.

Why receipts and not PUBACK: a broker's PUBACK says the broker has the message, not
that the hub committed it. With default Mosquitto settings, acknowledged messages were
lost three ways here (a slow subscriber's queue overflowing, the hub offline past the
queue cap, the broker killed before its autosave). So the outbox is the only truth:
everything still in it is unconfirmed, and is sent again after a reconnect or when a
receipt is overdue. The hub de-duplicates by message id, so resending is always safe.

The forwarder is one thread driving paho's external-loop API with ``select`` over the
MQTT socket and a wake-up pipe: no locks shared with paho callbacks (they run on this
thread), an enqueue in the same process wakes it at once, and when idle it sleeps in
``select`` (about one outbox poll a second, for enqueues from other processes).

Reconnecting: whatever ends a connection attempt before a successful CONNACK (a TCP or TLS
failure, a CONNACK that says no, the broker closing the socket after CONNECT, no CONNACK in
time) is one failed attempt, and the next one waits the backoff; only a successful CONNACK
resets it. A refused kiosk used to reconnect at once, about 2,000 times a second, because
only a failed TCP connect was followed by a wait. Failures are logged once per cause, not
once per attempt, and a refusal (which needs a person) is an alert in the kiosk's status.

Backoff per cause (issue 25): only a failed connection attempt advances the reconnect backoff.
A PUBACK that says the broker did not pass a message on (0x10 "no matching subscribers", which
a restarted broker answers until the hub's ingest has subscribed again, or a failure code) brings
that message's resend forward by the `resend` backoff, which advances once per resend round and
resets with the next receipt. Advancing the reconnect backoff there made a kiosk wait 30 to 50 s
after a broker restart. Such a resend does not double the receipt timeout either: the hub was
not silent, it was not there yet.

Outbox writes are not connection failures either. A receipted item whose delete fails (a full
disk) is kept in memory, never sent again, and its delete is retried with its own backoff; it
used to end the connection ("forwarder step failed; reconnecting") and everything was sent
again from the oldest, about once a second. Each such state change is logged once.

Several brokers (issue "No single broker either"): Mosquitto does not cluster, so a kiosk may be
given an ordered list and fails over between them. It connects to the first; an attempt that fails
for any cause (unreachable, no CONNACK in time, refused, untrusted) moves on to the next broker at
once, and the reconnect backoff is waited once per round (every broker tried once), not per broker:
a second broker is no use if reaching it costs the backoff of the first. A working connection that
is lost is first tried again on the same broker after the backoff, as with one broker; only when that
attempt fails does the kiosk move on. Nothing else changes on a failover: a new connection starts
again from the oldest unreceipted item in the outbox, whichever broker it is on, and the hub stores
each message id once and receipts duplicates again, so a message sent through the old broker and
again through the new one is stored once. Failures are logged once per cause per broker; what
`link_problem` and the status alert report is the run as a whole (a refusal, which needs a person,
before an unreachable broker), so a kiosk refused everywhere it can reach still raises the alert.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.inbox import Inbox
from device.outbox import Outbox, OutboxItem, OutboxWriteError
from device.protocol import EnvelopeError, StatusAlert, Topics, parse_receipt
from device.protocol.downlink import Delivered, parse_message
from device.protocol.endpoints import BrokerUrl, broker_list
from device.protocol.retry import Backoff
from device.protocol.topics import BATCH, DELIVERED
from device.protocol.transport import corked, no_delay

log = logging.getLogger(__name__)

BROKER_REFUSED = "broker_refused"  # the broker answered and said no: credentials, certificate, ban
BROKER_UNTRUSTED = "broker_untrusted"  # this kiosk could not verify the broker's certificate
BROKER_UNREACHABLE = "broker_unreachable"  # no answer: network, DNS, broker down, no CONNACK in time
# Conditions that do not heal by themselves: they become status alerts. An unreachable broker is
# only logged: the hub sees the kiosk go quiet, and the outbox alerts when the backlog grows.
NEEDS_A_PERSON = frozenset({BROKER_REFUSED, BROKER_UNTRUSTED})
# CONNACK reason codes that mean "not this kiosk" rather than "not now" (MQTT 5, 3.2.2.2).
_IDENTITY_REFUSALS = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})
_UNTRUSTED = "this kiosk does not trust the broker's certificate — wrong CA file or host name, or it expired?"
_TLS_FAILED = "TLS with the broker failed — not a TLS port, or no TLS version or cipher in common?"
_UNREACHABLE = "cannot reach the broker"


@dataclass
class ForwarderConfig:
    kiosk_id: str
    # One broker, or several in the order to try them (checked by `broker_list`; see the module docstring).
    broker: BrokerUrl | Sequence[BrokerUrl]
    keepalive_s: int = 30
    batch_max_items: int = 500
    batch_max_bytes: int = 256 * 1024
    # Messages awaiting a receipt. Small on purpose: readings that arrive while the window is full
    # travel together in the next batch, so a busy kiosk sends fewer, larger messages.
    window_messages: int = 4
    receipt_timeout_s: float = 10.0
    receipt_timeout_max_s: float = 120.0
    poll_interval_s: float = 1.0
    # Receipted items are deleted in batches, at most this late: one write transaction per
    # receipt made the forwarder's deletes contend with enqueues for the outbox's write lock.
    delete_delay_s: float = 0.2
    delete_batch: int = 1000
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 7 * 24 * 3600
    ca_file: str | None = None
    # A provisioned kiosk (device/identity.py): its client certificate and key, its MQTT password.
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    # Advanced only by failed connection attempts (see the module docstring).
    reconnect: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, maximum_s=60.0))
    # The resend of a message the broker did not pass on (PUBACK 0x10 or a failure): once per resend round,
    # reset by a receipt. After a broker restart ingest subscribes again within about a second.
    resend: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, maximum_s=60.0))
    # Retrying a delete of receipted items that failed (a full disk): the items are not sent meanwhile.
    delete_retry: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, maximum_s=30.0))
    brokers: tuple[BrokerUrl, ...] = field(init=False)  # `broker` as checked, always a tuple

    def __post_init__(self) -> None:
        self.brokers = broker_list(self.broker)


@dataclass
class ForwarderStats:
    connects: int = 0
    messages_sent: int = 0
    items_sent: int = 0
    items_receipted: int = 0
    items_rejected: int = 0
    resends: int = 0
    publish_failures: int = 0
    broker_acks: int = 0  # outbox messages the broker took (PUBACK): not delivery, which only a receipt proves
    connect_attempts: int = 0
    connect_failures: int = 0  # attempts that ended before a successful CONNACK, whatever the cause
    unrouted: int = 0  # PUBACKs with 0x10 "no matching subscribers" (the hub's ingest not subscribed)
    delete_failures: int = 0  # failed attempts to delete receipted items (or file rejected ones)
    failovers: int = 0  # attempts moved on to another broker of the list after a failed one


@dataclass(frozen=True)
class LinkProblem:
    """Why the kiosk has no connection: one per run of failures with the same cause.

    The cause (`code`, `reason`) is a fixed sentence and the error text is kept apart in `detail`:
    the same refusal does not always read the same (a broker refusing a certificate sends a TLS
    alert, or only closes the socket when its close races the kiosk's CONNECT), and a cause that
    flickered between wordings would be logged again at every flicker.
    Frozen and replaced whole, so another thread (the agent's status) reads a consistent one.
    With several brokers, the forwarder keeps one per broker, and `link_problem` is the run as a whole:
    the cause of the broker it names, the attempts on all of them, since the first failure on any.
    """

    code: str  # BROKER_REFUSED, BROKER_UNTRUSTED or BROKER_UNREACHABLE
    reason: str  # for a person: what failed, and the likely cause
    since: float  # wall-clock time of the first failure of this run
    attempts: int = 1  # failed attempts of this run: repeats are counted, not logged
    detail: str | None = None  # the error text; a TLS alert, the broker's own words, is kept over others
    broker: str | None = None  # the broker this cause was seen on: a person needs it to tell brokers apart
    brokers: int = 1  # brokers the kiosk tries in turn

    def cause(self) -> str:
        """The cause without the broker: what stays the same across a run (and is logged once)."""
        return self.reason if self.detail is None else f"{self.reason} ({self.detail})"

    def describe(self) -> str:
        return self.cause() if self.broker is None else f"{self.broker}: {self.cause()}"

    def alert(self) -> StatusAlert | None:
        """The status alert for this problem; None when it heals by itself (see NEEDS_A_PERSON)."""
        if self.code not in NEEDS_A_PERSON:
            return None
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        which = "the hub's broker" if self.brokers == 1 else f"any of the hub's {self.brokers} brokers"
        return StatusAlert(
            code=self.code,
            message=f"Cannot connect to {which}: {self.describe()} ({tries}; retrying with backoff)."[:500],
            since=datetime.fromtimestamp(self.since, UTC),
        )

    def same_cause(self, other: LinkProblem | None) -> bool:
        """Whether `other` is this run's cause as already reported (only its count may differ)."""
        return other is not None and dataclasses.replace(other, since=self.since, attempts=self.attempts) == self


@dataclass
class _InFlight:
    remaining: set[str]
    sent_at: float
    deadline: float
    refused: bool = False  # the broker did not pass it on: its deadline was brought forward by `resend`


class Forwarder:
    def __init__(self, outbox: Outbox, config: ForwarderConfig, inbox: Inbox | None = None) -> None:
        self.outbox = outbox
        self.inbox = inbox
        self.config = config
        self.stats = ForwarderStats()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._client = self._make_client()
        self._ready = False  # CONNACK received on the current connection
        self._connecting_since: float | None = None
        # An attempt runs from connect() to a successful CONNACK; whatever ends it before that is a failure,
        # and the first cause noted (code, reason, detail) is the one reported.
        self._attempting = False
        self._attempt_failure: tuple[str, str, str | None] | None = None
        self._started = False  # the first connect of run() does not wait
        # The broker of the list connected to, or being tried (an index into config.brokers), and how many
        # attempts in a row have failed since the last connection was lost (or the first one began): every
        # len(brokers) of them is a round, and only a new round waits the backoff.
        self._at = 0
        self._failed_in_row = 0
        # Each broker's own run of failures since the last successful CONNACK (logged once per cause and broker).
        self._problems: dict[BrokerUrl, LinkProblem] = {}
        self._link: LinkProblem | None = None  # the run as a whole, from _problems
        # Told (before, after) when link_problem changes, not when only its count grows; on the network thread.
        self.on_link_change: Callable[[LinkProblem | None, LinkProblem | None], None] | None = None
        self._inflight: dict[int, _InFlight] = {}
        self._mid_of: dict[str, int] = {}
        self._sent_upto = 0  # highest seq published on this connection
        self._receipt_timeout = config.receipt_timeout_s
        # Receipted, not yet deleted (a dict as an ordered set). Lost in a crash they are only sent again,
        # and the hub receipts the copies without storing them twice. While a delete fails they stay here
        # and are skipped when the outbox is read, so a receipted item is never sent again from memory.
        self._receipted: dict[str, None] = {}
        self._rejections: dict[str, str] = {}  # rejected by the hub, not yet moved to the `rejected` table
        self._delete_due: float | None = None  # monotonic time of the next delete attempt
        self._delete_problem: str | None = None  # why deleting fails now (logged once per change)
        self._delete_failed_attempts = 0
        # The resend round brought forward by a PUBACK that says "not passed on"; None when none is due.
        self._refused_due: float | None = None
        self._refused_reason: str | None = None  # logged once per run of such PUBACKs
        self._last_offset_write = 0.0
        self.connected = threading.Event()
        # Told the ids the hub has committed (from the network thread), e.g. so the screen can say "delivered".
        self.on_receipt: Callable[[list[str]], None] | None = None
        self.on_config: Callable[[bytes], None] | None = None  # a retained remote config (the agent applies it)
        self._closed = False
        self._wake_pending = False
        # A partial batch is waiting for the window to empty: no need to read the outbox until a receipt.
        self._holding_partial = False
        # Set while a message is in flight: what an enqueue adds then waits for a receipt (or a receipt
        # deadline) anyway (Nagle's rule in _fill_window, or a full window), and either of those wakes the
        # loop by itself, so wake() skips the pipe. On a busy kiosk that spares a loop wake-up (a pipe
        # write, a select return, a GIL hand-over) per reading. Cleared before the outbox is read again.
        self._quiet = False

    # -- public --------------------------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe nudge: new items were enqueued, or stop() was called."""
        if self._closed or self._wake_pending or self._quiet:
            return  # a wake-up is already on its way, or due anyway; the loop reads the outbox after clearing flags
        self._wake_pending = True
        # A full pipe means the loop is already due to wake.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    @property
    def link_problem(self) -> LinkProblem | None:
        """Why the kiosk cannot connect now (None once a CONNACK has said yes); safe from any thread."""
        return self._link

    @property
    def broker(self) -> BrokerUrl:
        """The broker connected to (see `connected`), or the one being tried; safe from any thread."""
        brokers = self.config.brokers
        return brokers[self._at % len(brokers)]

    def stop(self) -> None:
        self._stop.set()
        self._quiet = False
        self.wake()

    def run(self) -> None:
        """Forward until stop(); reconnects with backoff and jitter on any failure."""
        try:
            while not self._stop.is_set():
                if self._client.socket() is None:
                    self._reconnect()
                    continue
                try:
                    self._step()
                except Exception:
                    # A bug or a corrupt row must not end forwarding for good: start over from the outbox.
                    log.exception("forwarder step failed; reconnecting")
                    self._drop_connection("internal error")
        finally:
            with contextlib.suppress(Exception):
                self._delete_receipted()
            self._shutdown()

    # -- connection ----------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.kiosk_id,  # the broker binds client ids to logins (hub/fleet/kiosk_guard.c)
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if cfg.brokers[0].tls:  # all of them or none (broker_list)
            client.tls_set(
                ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file, cert_reqs=ssl.CERT_REQUIRED
            )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        client.will_set(Topics.presence(cfg.kiosk_id), b'{"online":false}', qos=1, retain=True)
        # Small receipts and single readings must not wait for Nagle (paho leaves it on).
        client.on_socket_open = no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _reconnect(self) -> None:
        """The one place a connection starts, so every way one ends is followed by the backoff.

        Any pass of the loop that finds no socket comes here: the previous attempt, if it never got
        a successful CONNACK, is recorded as failed, and the next attempt goes to the next broker of the
        list. Every round of attempts but the very first waits a jittered backoff delay first, also
        after losing a working connection (a fleet that lost its broker together must not return
        together, and two kiosks sharing a client id must not take over from each other in a tight
        loop); the delay only grows until a CONNACK says yes. With one broker a round is one attempt.
        """
        brokers = len(self.config.brokers)
        if self._attempting:
            self._attempt_failed()
            self._failed_in_row += 1
            if brokers > 1:
                self._at = (self._at + 1) % brokers
                self.stats.failovers += 1
        else:
            self._failed_in_row = 0  # a working connection was lost: a new round, on the same broker first
        if self._started and self._failed_in_row % brokers == 0:
            self._sleep(self.config.reconnect.next_delay())
            if self._stop.is_set():
                return
        self._started = True
        self._connect()

    def _connect(self) -> None:
        cfg = self.config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        self._attempting = True
        self._attempt_failure = None
        self.stats.connect_attempts += 1
        # paho reports why a socket failed only in its log (e.g. the TLS alert of a broker that refuses
        # this kiosk's certificate after the handshake, as TLS 1.3 does): listen while connecting only.
        self._client.on_log = self._on_attempt_log
        broker = self.broker
        try:
            self._client.connect(
                broker.host,
                broker.port,
                keepalive=cfg.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except ssl.SSLCertVerificationError as exc:
            detail = getattr(exc, "verify_message", None) or str(exc)
            self._note_failure(BROKER_UNTRUSTED, _UNTRUSTED, detail)
            return
        except ssl.SSLError as exc:  # TLS 1.2 hears the broker's verdict on its certificate in the handshake
            self._note_failure(BROKER_REFUSED, self._closed_reason() if _tls_alert(str(exc)) else _TLS_FAILED, str(exc))
            return
        except OSError as exc:
            self._note_failure(BROKER_UNREACHABLE, _UNREACHABLE, str(exc))
            return
        self._connecting_since = time.monotonic()

    def _on_attempt_log(self, _c: mqtt.Client, _u: Any, level: int, buf: str) -> None:
        if level == LogLevel.MQTT_LOG_ERR:  # e.g. "failed to receive on socket: [SSL: ...] ... alert ..."
            self._note_failure(BROKER_REFUSED, self._closed_reason(), buf)

    def _closed_reason(self) -> str:
        """One cause for every way a broker turns the kiosk away without a CONNACK (see LinkProblem)."""
        closed = "the broker closed the connection before accepting this kiosk"
        if self.broker.tls:
            return f"{closed} — certificate revoked, expired or from another CA, or not allowed?"
        return f"{closed} — not allowed?"

    def _note_failure(self, code: str, reason: str, detail: str | None = None) -> None:
        """The cause of the current attempt's failure; the first one noted is the root, later ones follow."""
        if self._attempting and self._attempt_failure is None:
            self._attempt_failure = (code, reason, detail)

    def _attempt_failed(self) -> None:
        """Count a failed attempt; log only a new cause, so a refused kiosk logs one line, not thousands.

        One exception: a run that so far only saw the socket close learns the broker's own words
        (a TLS alert such as "certificate revoked") and says so, once. With several brokers each has
        its own run (the causes of two brokers alternating must not log a line per attempt), and the
        listener hears of the run as a whole (`_summary`) when its cause changes, not its count.
        """
        self._attempting = False
        self._client.on_log = None
        self.stats.connect_failures += 1
        code, reason, detail = self._attempt_failure or (BROKER_REFUSED, self._closed_reason(), None)
        self._attempt_failure = None
        broker = self.broker
        known = self._problems.get(broker)
        brokers = len(self.config.brokers)
        if known is not None and (known.code, known.reason) == (code, reason):
            sharper = detail is not None and _tls_alert(detail) and not (known.detail and _tls_alert(known.detail))
            problem = dataclasses.replace(
                known, attempts=known.attempts + 1, detail=detail if sharper else known.detail
            )
            news = sharper
        else:
            problem = LinkProblem(code, reason, time.time(), detail=detail, broker=str(broker), brokers=brokers)
            news = True
        self._problems[broker] = problem
        if news:
            then = "retrying with backoff" if brokers == 1 else f"trying the next of {brokers} brokers"
            log.log(
                logging.ERROR if code in NEEDS_A_PERSON else logging.WARNING,
                "cannot connect to %s: %s; %s (repeats are counted, not logged)",
                broker,
                problem.cause(),
                then,
            )
        before, self._link = self._link, self._summary()
        if not self._link.same_cause(before):
            self._link_changed(before, self._link)

    def _summary(self) -> LinkProblem:
        """The run as a whole: a broker's cause that needs a person before any other (a kiosk that some broker
        refuses and none lets in needs one), else the first broker's of the list; every broker's attempts."""
        problems = [self._problems[b] for b in self.config.brokers if b in self._problems]
        first = next((p for p in problems if p.code in NEEDS_A_PERSON), problems[0])
        return dataclasses.replace(
            first, since=min(p.since for p in problems), attempts=sum(p.attempts for p in problems)
        )

    def _link_changed(self, before: LinkProblem | None, after: LinkProblem | None) -> None:
        if self.on_link_change is not None:
            try:
                self.on_link_change(before, after)
            except Exception:
                log.exception("link change listener failed")

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            hint = " — revoked, or wrong credentials?" if rc.value in _IDENTITY_REFUSALS else ""
            self._note_failure(BROKER_REFUSED, f"the broker refused this kiosk: {rc}{hint}", None)
            return
        self._ready = True
        self._connecting_since = None
        self._attempting = False
        self._attempt_failure = None
        client.on_log = None
        self.stats.connects += 1
        self.config.reconnect.reset()
        link, self._link = self._link, None
        self._problems.clear()
        # Everything still in the outbox is unconfirmed: start again from the oldest.
        self._reset_window()
        client.subscribe(Topics.downlink_filter(self.config.kiosk_id), qos=1)
        client.publish(Topics.presence(self.config.kiosk_id), b'{"online":true}', qos=1, retain=True)
        self.connected.set()
        if link is None:
            log.info("connected to %s", self.broker)
        else:
            since = datetime.fromtimestamp(link.since, UTC).isoformat(timespec="seconds")
            failures = "1 failed attempt" if link.attempts == 1 else f"{link.attempts} failed attempts"
            log.info("connected to %s after %s since %s (%s)", self.broker, failures, since, link.describe())
            self._link_changed(link, None)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if self._ready:
            log.warning("disconnected from broker %s: %s", self.broker, rc)
        self._ready = False
        self.connected.clear()
        self._reset_window()

    def _drop_connection(self, why: str) -> None:
        if self._attempting:
            self._note_failure(BROKER_UNREACHABLE, why)  # logged once per cause, with the failed attempt
        else:
            log.warning("dropping broker connection: %s", why)
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._client.loop_read()  # lets paho notice the closed socket and run on_disconnect
        self._ready = False
        self.connected.clear()
        self._connecting_since = None
        self._reset_window()

    # -- the loop ------------------------------------------------------------------------

    def _step(self) -> None:
        client = self._client
        sock = client.socket()
        if sock is None:
            return
        now = time.monotonic()
        timeout = self.config.poll_interval_s
        if self._inflight:
            timeout = min(timeout, max(0.0, min(f.deadline for f in self._inflight.values()) - now))
        if self._delete_due is not None:
            timeout = min(timeout, max(0.0, self._delete_due - now))
        wlist = [sock] if client.want_write() else []
        try:
            rlist: list[Any] = [sock, self._wake_r]
            readable, writable, _ = select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError):
            self._drop_connection("socket error in select")
            return
        if self._wake_r in readable:
            self._drain_wake_pipe()
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if sock in readable:
            rc = client.loop_read(max_packets=100)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and sock in writable:
            rc = client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()  # keepalive: a silent dead path is noticed here
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
            self._ready = False
            self.connected.clear()
            self._reset_window()
            if client.socket() is not None:
                self._drop_connection(f"paho error {rc}")
            return
        if self._delete_due is not None and time.monotonic() >= self._delete_due:
            self._delete_receipted()
        if not self._ready:
            if self._connecting_since and time.monotonic() - self._connecting_since > self.config.connect_timeout_s:
                self._drop_connection(f"no answer to CONNECT within {self.config.connect_timeout_s:g} s")
            return
        self._check_receipt_deadlines()
        self._fill_window()

    def _delete_receipted(self) -> None:
        """Delete receipted items and file rejected ones. What cannot be written (a full disk) stays in memory,
        is skipped when the outbox is read (see `_unsent`), and is retried after the `delete_retry` backoff:
        never a reconnect, never a resend, one log line when deleting starts failing and one when it works."""
        problem: OutboxWriteError | None = None
        if self._rejections:
            try:
                self.stats.items_rejected += self.outbox.reject(self._rejections.items())
                self._rejections.clear()
            except OutboxWriteError as exc:
                self.stats.items_rejected += exc.removed
                problem = exc
        if self._receipted:
            try:
                self.stats.items_receipted += self.outbox.remove(self._receipted)
                self._receipted.clear()
            except OutboxWriteError as exc:
                self.stats.items_receipted += exc.removed
                problem = problem or exc
        if problem is None:
            self._delete_due = None
            self.config.delete_retry.reset()
            if self._delete_problem is not None:
                log.warning(
                    "outbox deletes work again after %d failed attempt(s) (%s)",
                    self._delete_failed_attempts,
                    self._delete_problem,
                )
                self._delete_problem = None
                self._delete_failed_attempts = 0
            return
        self.stats.delete_failures += 1
        self._delete_failed_attempts += 1
        self._delete_due = time.monotonic() + self.config.delete_retry.next_delay()
        if problem.cause != self._delete_problem:
            log.warning(
                "%s; %d receipted item(s) are kept in memory and not sent again, and deleting them is retried with "
                "backoff (repeats are counted, not logged)",
                problem,
                len(self._receipted) + len(self._rejections),
            )
            self._delete_problem = problem.cause

    def _fill_window(self) -> None:
        """Publish as many messages as the window has room for, read in one query and sent as one burst.

        Nagle's rule, for messages: a batch that is not full goes out only when nothing is in
        flight. A busy kiosk then sends one growing batch per round trip instead of a message
        per reading (each costs a publish, a PUBACK and a receipt), while a lone reading on an
        idle link still leaves at once. Full batches (a backlog) fill the whole window. While anything is in
        flight, the outbox is read again only when a receipt (or a receipt deadline) frees room: see `_quiet`.
        """
        cfg = self.config
        free = cfg.window_messages - len(self._inflight)
        self._quiet = self._ready and bool(self._inflight)
        if not self._ready or free <= 0 or (self._holding_partial and self._inflight):
            return
        self._holding_partial = False
        items = self._unsent(free * cfg.batch_max_items, free * cfg.batch_max_bytes)
        if not items:
            return
        packed = pack(items, cfg.batch_max_items, cfg.batch_max_bytes)
        messages = sendable(packed, cfg.batch_max_items, cfg.batch_max_bytes, in_flight=bool(self._inflight))
        self._holding_partial = len(messages) < len(packed)
        if not messages:
            return
        with corked(self._client.socket() if len(messages) > 1 else None):
            for message in messages:
                self._publish(message)
                if not self._ready:
                    return
        self._quiet = bool(self._inflight)

    def _unsent(self, limit: int, max_bytes: int) -> list[OutboxItem]:
        """The next outbox items to send after `_sent_upto`, leaving out those whose receipt is held in memory
        because their delete has not happened yet (or failed): a receipted item is never sent again."""
        while True:
            items = self.outbox.pending(self._sent_upto, limit, max_bytes)
            if not items or not (self._receipted or self._rejections):
                return items
            unsent = [i for i in items if i.id not in self._receipted and i.id not in self._rejections]
            if unsent:
                return unsent
            self._sent_upto = items[-1].seq  # all of them receipted already: read on past them

    def _publish(self, items: list[OutboxItem]) -> None:
        kiosk = self.config.kiosk_id
        if len(items) == 1:
            topic, body = Topics.uplink(kiosk, items[0].kind), items[0].body
        else:
            topic, body = Topics.uplink(kiosk, BATCH), b"\n".join(item.body for item in items)
        info = self._client.publish(topic, body, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._drop_connection(f"publish failed: {info.rc}")
            return
        now = time.monotonic()
        ids = {item.id for item in items}
        self._inflight[info.mid] = _InFlight(ids, now, now + self._receipt_timeout)
        for message_id in ids:
            self._mid_of[message_id] = info.mid
        self._sent_upto = items[-1].seq
        self.stats.messages_sent += 1
        self.stats.items_sent += len(items)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        # 0x10 "no matching subscribers" or any failure: the broker did not pass it on.
        if not (rc.is_failure or rc.value == 0x10):
            if mid in self._inflight:
                self.stats.broker_acks += 1
            return
        self.stats.publish_failures += 1
        if rc.value == 0x10:
            self.stats.unrouted += 1
        flight = self._inflight.get(mid)
        if flight is not None:
            # The connection is fine: the resend backoff, not the reconnect one, and advanced once per resend
            # round however many messages of the window come back refused.
            if self._refused_due is None:
                self._refused_due = time.monotonic() + self.config.resend.next_delay()
            flight.deadline = min(flight.deadline, self._refused_due)
            flight.refused = True
        if str(rc) != self._refused_reason:
            self._refused_reason = str(rc)
            hint = " (the hub's ingest is not subscribed: a broker restart, or ingest down)" if rc.value == 0x10 else ""
            log.warning(
                "broker did not pass message %d on: %s%s; resending with backoff until a receipt (not logged again)",
                mid,
                rc,
                hint,
            )

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == Topics.message(self.config.kiosk_id):
            self._keep(client, bytes(msg.payload))
            return
        if msg.topic == Topics.config(self.config.kiosk_id):
            if self.on_config is not None and msg.payload:
                try:
                    self.on_config(bytes(msg.payload))
                except Exception:
                    log.exception("remote config listener failed")
            return
        if msg.topic == Topics.certificate(self.config.kiosk_id):
            return  # an answer to `kiosk renew`, which has its own connection
        if msg.topic != Topics.receipt(self.config.kiosk_id):
            log.info("ignoring downlink message on %s", msg.topic)
            return
        try:
            receipt = parse_receipt(bytes(msg.payload))
        except EnvelopeError as exc:
            log.error("malformed receipt ignored: %s", exc)
            return
        received = time.monotonic()
        if self._refused_reason is not None:
            log.warning("the hub receipts again (after the broker did not pass messages on: %s)", self._refused_reason)
            self._refused_reason = None
        self.config.resend.reset()
        if receipt.accepted:
            self._receipted.update(dict.fromkeys(receipt.accepted))
            if len(self._receipted) >= self.config.delete_batch and self._delete_problem is None:
                self._delete_due = received
            elif self._delete_due is None:
                self._delete_due = received + self.config.delete_delay_s
            if self.on_receipt is not None:
                try:
                    self.on_receipt(list(receipt.accepted))
                except Exception:
                    log.exception("receipt listener failed")
        if receipt.rejected:
            self._rejections.update((r.id, r.reason) for r in receipt.rejected)
            log.error("hub rejected %d item(s); kept in the local rejected table", len(receipt.rejected))
            if self._delete_problem is None:
                self._delete_receipted()
        sent_at = self._settle([*receipt.accepted, *(r.id for r in receipt.rejected)])
        if sent_at is not None:
            self._receipt_timeout = self.config.receipt_timeout_s
            self._estimate_clock_offset(receipt.hub_time, sent_at, received)

    def _keep(self, client: mqtt.Client, raw: bytes) -> None:
        """Store a hub message (once per id, on disk), then say so; every copy is acknowledged."""
        if self.inbox is None:
            return
        try:
            message = parse_message(raw)
        except EnvelopeError as exc:
            log.error("malformed downlink message ignored: %s", exc)
            return
        if message.kiosk != self.config.kiosk_id:
            log.error("downlink message for another kiosk ignored")
            return
        try:
            stored = self.inbox.store(message)
        except sqlite3.Error as exc:  # e.g. a full disk: not acknowledged, so the hub sends it again
            log.error("could not store a %s from the hub (%s); not acknowledged", message.kind, exc)
            return
        if stored:
            log.info("stored a %s from the hub", message.kind)
        ack = Delivered(kiosk=self.config.kiosk_id, ids=[message.id]).model_dump_json().encode()
        client.publish(Topics.uplink(self.config.kiosk_id, DELIVERED), ack, qos=1)

    def _settle(self, ids: list[str]) -> float | None:
        """Forget receipted ids; return the send time of a message fully receipted, if any."""
        sent_at = None
        for message_id in ids:
            mid = self._mid_of.pop(message_id, None)
            if mid is None:
                continue
            flight = self._inflight.get(mid)
            if flight is None:
                continue
            flight.remaining.discard(message_id)
            if not flight.remaining:
                del self._inflight[mid]
                self._quiet = False  # nothing of this message in flight: enqueues may wake the loop again
                sent_at = flight.sent_at
        return sent_at

    def _estimate_clock_offset(self, hub_time: datetime, sent_mono: float, received_mono: float) -> None:
        """NTP-style: the hub stamped the receipt somewhere between our send and receive."""
        rtt = received_mono - sent_mono
        now_wall = time.time()
        if rtt > 2.0 or now_wall - self._last_offset_write < 60:
            return
        midpoint_wall = now_wall - rtt / 2
        offset_ms = (hub_time.astimezone(UTC).timestamp() - midpoint_wall) * 1000
        self._last_offset_write = now_wall  # on failure too: tried again a minute later, not at every receipt
        try:
            self.outbox.set_clock_offset(round(offset_ms, 1), "hub")
        except OutboxWriteError as exc:  # a full disk: the deletes' failure is what gets logged
            log.debug("clock offset not recorded: %s", exc)

    def _check_receipt_deadlines(self) -> None:
        if not self._inflight:
            return
        now = time.monotonic()
        due = [f for f in self._inflight.values() if f.deadline <= now]
        if not due:
            return
        self.stats.resends += 1
        if not all(f.refused for f in due):
            log.warning(
                "receipt overdue for %d message(s): sending everything unreceipted again",
                len(self._inflight),
            )
            self._receipt_timeout = min(self._receipt_timeout * 2, self.config.receipt_timeout_max_s)
        # else: brought forward because the broker did not pass them on (logged once in _on_publish); the hub
        # was not silent, so the receipt timeout does not grow.
        self._reset_window()

    def _reset_window(self) -> None:
        """Forget what is in flight: everything still in the outbox will be sent again."""
        if (self._receipted or self._rejections) and self._delete_problem is None:
            # Receipted items must not be among what is sent again. Should the delete fail they stay in
            # memory and `_unsent` skips them; while it fails, only its own backoff retries it.
            self._delete_receipted()
        self._inflight.clear()
        self._mid_of.clear()
        self._sent_upto = 0
        self._quiet = False
        self._refused_due = None

    # -- plumbing ------------------------------------------------------------------------

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        # Cleared after draining: a wake() from now on writes again, and one that came
        # before enqueued items this loop iteration will see anyway.
        self._wake_pending = False

    def _sleep(self, seconds: float) -> None:
        """Back off, waking early only for stop() (an enqueue must not cut a backoff short)."""
        self._stop.wait(seconds)

    def _shutdown(self) -> None:
        if self._client.socket() is not None and self._ready:
            self._client.publish(Topics.presence(self.config.kiosk_id), b'{"online":false}', qos=1, retain=True)
            self._client.loop_write()
            self._ready = False
            self._client.disconnect()
            self._client.loop_write()

    def close(self) -> None:
        """Release the wake-up pipe; call after run() has returned."""
        if not self._closed:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)


def _tls_alert(detail: str) -> bool:
    """A TLS alert is the broker's explicit verdict (e.g. "sslv3 alert certificate revoked")."""
    return "alert" in detail.lower()


def sendable(
    messages: list[list[OutboxItem]], max_items: int, max_bytes: int, *, in_flight: bool
) -> list[list[OutboxItem]]:
    """Nagle's rule for batches: every message but a last one that is not full; that one too when nothing
    (else) is in flight. Full means `max_items` items or at least half of `max_bytes` (a photo chunk is
    one item but a full message)."""
    if not messages:
        return []
    last = messages[-1]
    full = len(last) >= max_items or sum(len(i.body) + 1 for i in last) >= max_bytes // 2
    if full or not (in_flight or len(messages) > 1):
        return messages
    return messages[:-1]


def pack(items: list[OutboxItem], max_items: int, max_bytes: int) -> list[list[OutboxItem]]:
    """Split items, in order, into messages of at most `max_items` and about `max_bytes` (one oversized item
    travels alone; the outbox refuses envelopes larger than the hub accepts, so it still fits a message)."""
    messages: list[list[OutboxItem]] = []
    current: list[OutboxItem] = []
    size = 0
    for item in items:
        if current and (len(current) >= max_items or size + len(item.body) + 1 > max_bytes):
            messages.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item.body) + 1  # the newline between batch lines
    if current:
        messages.append(current)
    return messages
