"""Hub ingest: subscribe, validate, commit in batches, then ack the broker, then receipt the kiosk.

The order is the guarantee. Rows are committed first; only then is each MQTT message
acknowledged (paho manual ack) and a receipt published to the kiosk, which deletes its
copy. A crash anywhere before the commit loses nothing: the broker redelivers the
unacked message (persistent session) or, if the broker lost it too, the kiosk resends
after its receipt timeout. A crash after the commit costs a duplicate, absorbed by the
message id. So correctness never depends on the broker keeping anything.

Several workers may run side by side: they join one MQTT 5 shared subscription and the
broker spreads kiosk traffic over them; SQLite serialises their commits.

A message that fails validation is dead-lettered with the reason and its raw bytes,
counted, and acknowledged; it never stops ingest. When the refused envelope's id can be
read, the kiosk of the topic it came on gets a `rejected` receipt so it stops resending
(it only affects ids in that kiosk's own outbox). An id already stored with different
content is refused the same way, never merged.

When the database cannot take a commit (full, failing, locked for long), nothing is acked or
receipted: the batch is retried at its own pace (`IngestConfig.commit_retry`, short and capped
low, apart from the reconnect backoff), the first failure and the recovery are each logged once
(`Outage`), and the worker's `problem` says why, so readiness reports it until a commit succeeds.
"""

from __future__ import annotations

import gc
import json
import logging
import select
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.protocol import EnvelopeError, Receipt, Rejection, Topics
from device.protocol.downlink import parse_delivered
from device.protocol.endpoints import BrokerUrl
from device.protocol.renewal import RenewalReply
from device.protocol.renewal import parse_request as parse_renewal
from device.protocol.retry import Backoff
from device.protocol.topics import DELIVERED, RENEW
from device.protocol.transport import corked, has_buffered_input, no_delay
from hub import audit, downlink
from hub.audit import Actor
from hub.db import DatabaseError, Location, immediate
from hub.fleet import remote_config
from hub.store import CommitResult, HubStore
from hub.uplink import Limits, Sorted, classify

log = logging.getLogger(__name__)


def tune_gc_for_ingest() -> None:
    """Collect cyclic garbage less often; call once per hub process, after startup.

    A batch keeps a thousand validated envelopes (pydantic models) alive until its commit,
    and with CPython's default thresholds the collector walked them again and again:
    validation measured about 25 us per envelope with it, about 7 us without. Ingest makes
    little cyclic garbage (reference counting frees a batch), so rarer collections cost
    little memory; objects alive after startup are frozen out of the collections entirely.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def cause_of(exc: BaseException) -> str:
    """What went wrong, in the error's own words: "database or disk is full", "disk I/O error (SQLITE_IOERR_...)"."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith("SQLITE_IOERR_"):  # "disk I/O error" alone does not say which
        text = f"{text} ({name})"
    return text


class Outage:
    """Work that keeps failing, logged once per change of state and never once per retry.

    The first failure is logged with its cause (with a traceback only when the error is not the
    database's or the file system's, i.e. a bug), a different cause once more, and the recovery once,
    with how long it lasted and how many attempts failed. While failing, `problem` says so for
    readiness checks: "cannot commit: database or disk is full since 2026-05-09T10:00:00Z (12 failed attempts)".
    """

    def __init__(self, failing: str, resumed: str, *, consequence: str = "retrying", logger: logging.Logger = log):
        self.failing_text = failing  # "cannot commit"
        self.resumed_text = resumed  # "commits resumed"
        self.consequence = consequence
        self._log = logger
        self.cause: str | None = None
        self.since: float | None = None  # wall-clock time of the first failure
        self.failures = 0  # failed attempts since then
        self._started = 0.0
        self.outages = 0  # how many times it started failing (for tests and stats)

    @property
    def failing(self) -> bool:
        return self.cause is not None

    @property
    def problem(self) -> str | None:
        if self.cause is None or self.since is None:
            return None
        since = datetime.fromtimestamp(self.since, UTC)
        return f"{self.failing_text}: {self.cause} since {since:%Y-%m-%dT%H:%M:%SZ} ({self.failures} failed attempts)"

    def failed(self, exc: BaseException) -> bool:
        """Count a failed attempt; True when the state changed (it started failing, or for another cause)."""
        cause = cause_of(exc)
        self.failures += 1
        if cause == self.cause:
            return False
        trace = None if isinstance(exc, (*DatabaseError, OSError)) else exc
        if self.cause is None:
            self.since, self._started, self.failures = time.time(), time.monotonic(), 1
            self.outages += 1
            self._log.error("%s: %s; %s", self.failing_text, cause, self.consequence, exc_info=trace)
        else:
            self._log.error("%s: now %s (before: %s)", self.failing_text, cause, self.cause, exc_info=trace)
        self.cause = cause
        return True

    def succeeded(self) -> bool:
        """It worked; True when that ended an outage (logged once, with how long and how many failed attempts)."""
        if self.cause is None:
            return False
        self._log.warning(
            "%s after %.1f s (%d failed attempts; the last cause: %s)",
            self.resumed_text, time.monotonic() - self._started, self.failures, self.cause,
        )  # fmt: skip
        self.cause = self.since = None
        self.failures = 0
        return True


class ProblemBoard(Protocol):
    """Where a worker says why it cannot store (None: it can): a local holder, or memory its parent process reads."""

    def set(self, problem: str | None) -> None: ...
    def get(self) -> str | None: ...


class LocalProblem:
    """A ProblemBoard for a worker in the reader's own process (a thread, a test)."""

    def __init__(self) -> None:
        self._problem: str | None = None

    def set(self, problem: str | None) -> None:
        self._problem = problem

    def get(self) -> str | None:
        return self._problem


class ReadyFlag(Protocol):
    """Where a worker says it is connected and subscribed: a threading.Event, or a flag its parent process reads."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class IngestConfig:
    broker: BrokerUrl
    client_id: str = "hub-ingest:1"  # the broker binds ids to logins: the user name, a colon, a suffix
    group: str = "ingest"
    batch_max: int = 1000  # messages per transaction; a batch is otherwise what arrived during the last commit
    # Mosquitto allows a manual-ack client only 20 unacked messages unless it asks for more.
    receive_maximum: int = 4000
    max_payload_bytes: int = 1024 * 1024
    dead_letter_keep_bytes: int = 64 * 1024
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    reconnect: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, maximum_s=30.0))
    # Commit retries have their own pacing, short and capped low: a disk-full must not slow the next
    # reconnect (it used to draw on `reconnect`), and commits resume within seconds of space returning.
    commit_retry: Backoff = field(default_factory=lambda: Backoff(initial_s=0.2, maximum_s=5.0))
    # Send the hub's kept messages (case answers) to kiosks; one worker of several is enough.
    send_downlink: bool = True
    # One of several brokers: presence records which broker each kiosk is on, and this worker sends kept messages
    # and retained configurations only to the kiosks on its own (hub.downlink.Route). None: the hub has one broker.
    route: downlink.Route | None = None
    downlink_check_s: float = 1.0
    # The hub's data folder, whose CA signs kiosks' certificate renewals; None: renewals are refused.
    fleet_data: Path | None = None


@dataclass
class IngestStats:
    messages: int = 0
    envelopes: int = 0
    new: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    commits: int = 0
    commit_failures: int = 0
    commit_seconds: float = 0.0  # wall time inside commit_batch (mostly the fsync): ingest reads nothing then


@dataclass
class _Pending(Sorted):
    """A batch in the making: what its messages became, and their packet ids to ack after the commit."""

    mids: list[int] = field(default_factory=list)
    first_at: float | None = None


class IngestWorker:
    def __init__(
        self,
        store_path: str | Path | Location,
        config: IngestConfig,
        *,
        connected: ReadyFlag | None = None,
        problem: ProblemBoard | None = None,
    ) -> None:
        """`connected`: where to report readiness; a process pool passes an event its parent can read.
        `problem`: where to say why commits fail (None once they work); the pool passes shared memory."""
        if config.receive_maximum < config.batch_max:
            raise ValueError("receive_maximum must be at least batch_max, or batches can never fill")
        self.config = config
        self.store = HubStore(store_path)
        self.stats = IngestStats()
        self.connected: ReadyFlag = connected if connected is not None else threading.Event()
        self.problem: ProblemBoard = problem if problem is not None else LocalProblem()
        self.problem.set(None)
        self.commits = Outage(
            "cannot commit", "commits resumed",
            consequence="nothing is acknowledged or receipted until a commit succeeds; retrying",
        )  # fmt: skip
        # The rarer writes: each logged once per change of state too, never once per attempt.
        self._downlink_outage = Outage("cannot send kept messages", "kept messages are sent again")
        self._delivered_outage = Outage(
            "cannot record deliveries", "deliveries are recorded again",
            consequence="the kiosks will be sent those messages again",
        )  # fmt: skip
        self._presence_outage = Outage("cannot record presence", "presence is recorded again")
        self._renewal_outage = Outage(
            "cannot record certificate renewals", "certificate renewals are recorded again",
            consequence="the kiosks will ask again",
        )  # fmt: skip
        self._stop = threading.Event()
        self._pending = _Pending()
        self._limits = Limits(config.max_payload_bytes, config.dead_letter_keep_bytes)
        self._next_downlink = 0.0
        self._client = self._make_client()
        self._ready = False

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._client.socket() is None and not self._connect():
                    self._stop.wait(self.config.reconnect.next_delay())
                    continue
                self._step()
        finally:
            if self._client.socket() is not None:
                self._flush()
                self._ready = False  # a requested disconnect is not worth a warning
                self._client.disconnect()
                self._client.loop_write()
            self.store.close()

    # -- connection ----------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.max_queued_messages_set(0)
        if cfg.broker.tls:
            client.tls_set(ca_certs=cfg.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        # Small receipts and single readings must not wait for Nagle (paho leaves it on).
        client.on_socket_open = no_delay
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self) -> bool:
        cfg = self.config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        try:
            self._client.connect(
                cfg.broker.host,
                cfg.broker.port,
                keepalive=cfg.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except (OSError, ssl.SSLError) as exc:
            log.warning("broker %s unreachable: %s", cfg.broker, exc)
            return False
        return True

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the ingest connection: %s", rc)
            return
        self.config.reconnect.reset()
        client.subscribe([(Topics.shared(self.config.group, Topics.UPLINK_FILTER), 1), (Topics.PRESENCE_FILTER, 1)])
        self._ready = True
        log.info("ingest connected to %s", self.config.broker)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        """Ready only once the broker has the subscription: before its SUBACK, a first session misses messages."""
        if any(code.is_failure for code in codes):
            log.error("the broker refused ingest's subscription: %s", codes)
            return
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if self._ready:
            log.warning("ingest disconnected: %s", rc)
        self._ready = False
        self.connected.clear()
        # Uncommitted and unacked: the broker redelivers, or the kiosk resends. Acks for the
        # old connection's packet ids must never be sent on a new one.
        self._pending = _Pending()

    # -- the loop ------------------------------------------------------------------------

    def _step(self) -> None:
        """Wait for traffic, read everything the socket has, commit it as one batch.

        Group commit: a batch is whatever arrived while the previous one was being
        committed (up to `batch_max`), so a lone reading is committed at once and a
        flood is committed in large transactions, with no timer in between.
        """
        client = self._client
        sock = client.socket()
        if sock is None:
            return
        wlist = [sock] if client.want_write() else []
        # A batch whose commit failed is retried as soon as its retry delay (spent in _flush) is over.
        retry_due = self.commits.failing and self._pending.first_at is not None
        try:
            timeout = 0.0 if retry_due or has_buffered_input(sock) else 1.0
            readable, writable, _ = select.select([sock], wlist, [], timeout)
        except (OSError, ValueError):
            readable, writable = [], []
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if readable or has_buffered_input(sock):
            rc = self._read_available(client, sock)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and writable:
            rc = client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
            self._ready = False
            self.connected.clear()
            self._pending = _Pending()
            if client.socket() is not None:
                client.socket().close()  # type: ignore[union-attr]
                client.loop_read()
            self._stop.wait(self.config.reconnect.next_delay())
            return
        if self._pending.first_at is not None:
            self._flush()
        if self.config.send_downlink and time.monotonic() >= self._next_downlink:
            self._send_downlink()

    def _read_available(self, client: mqtt.Client, sock: Any) -> MQTTErrorCode:
        """Read packets until the socket has no more or the batch is full (paho reads one per call)."""
        rc = client.loop_read()
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and len(self._pending) < self.config.batch_max
            and client.socket() is sock
            and _readable_now(sock)
        ):
            rc = client.loop_read()
        return rc

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        topic = msg.topic  # paho decodes it on every access
        presence_kiosk = Topics.parse_presence(topic)
        if presence_kiosk is not None:
            self._record_presence(presence_kiosk, bytes(msg.payload), now)
            client.ack(msg.mid, msg.qos)
            return
        if topic.endswith(_DELIVERED_SUFFIX):  # a string test: this runs for every reading
            uplink = Topics.parse_uplink(topic)
            if uplink is not None and uplink.leaf == DELIVERED:
                self._record_delivered(uplink.kiosk, bytes(msg.payload), now)
                client.ack(msg.mid, msg.qos)
                return
        if topic.endswith(_RENEW_SUFFIX):
            uplink = Topics.parse_uplink(topic)
            if uplink is not None and uplink.leaf == RENEW:
                self._renew(uplink.kiosk, bytes(msg.payload), now)
                client.ack(msg.mid, msg.qos)
                return
        self.stats.messages += 1
        pending = self._pending
        if pending.first_at is None:
            pending.first_at = time.monotonic()
        if msg.qos > 0:
            pending.mids.append(msg.mid)
        dead_before = len(pending.dead)
        envelopes = classify(topic, bytes(msg.payload), now, pending, self._limits)
        self.stats.envelopes += envelopes
        self.stats.dead_letters += len(pending.dead) - dead_before

    def _flush(self) -> None:
        pending = self._pending
        if pending.first_at is None:
            return
        started = time.perf_counter()
        try:
            result = self.store.commit_batch([a for _, a in pending.accepted], pending.dead)
        except Exception as exc:  # noqa: BLE001 - any failure: nothing acked, retried (Outage logs a bug's traceback)
            # Not acked, not receipted: retried on the next step; the broker holds the messages. What
            # reaches here is the database's trouble (locked, full, I/O): commit_batch sets aside an
            # envelope it cannot store and commits the rest, so no message can fail every retry.
            # Logged once when commits start failing (and once when they resume), not once per retry.
            self.stats.commit_failures += 1
            self.commits.failed(exc)
            self.problem.set(self.commits.problem)  # with the count of failed attempts: readiness shows it retries
            self._stop.wait(self.config.commit_retry.next_delay())
            return
        self.config.commit_retry.reset()
        if self.commits.succeeded():
            self.problem.set(None)
        self.stats.commit_seconds += time.perf_counter() - started
        self._pending = _Pending()
        self.stats.commits += 1
        self.stats.new += len(result.new)
        self.stats.duplicates += len(result.duplicates)
        with corked(self._client.socket() if len(pending.mids) > 1 else None):
            for mid in pending.mids:
                self._client.ack(mid, 1)
            self._publish_receipts(pending, result)

    def _publish_receipts(self, pending: _Pending, result: CommitResult) -> None:
        """Tell each kiosk what is stored and what never will be, so it deletes both from its outbox.

        An envelope the store could not hold (`result.poisoned`) is rejected like an invalid one:
        resending it would only fail again. It is logged once here, without its values.
        """
        self.stats.dead_letters += len(result.conflicts) + len(result.poisoned)
        conflicting = {id(c) for c in result.conflicts}
        poisoned = {id(p.item): p.reason for p in result.poisoned}
        accepted: dict[str, list[str]] = defaultdict(list)
        for kiosk, item in pending.accepted:
            if id(item) in conflicting:
                pending.rejected[kiosk].append(
                    Rejection(id=item.envelope.id, reason="message id already used for different content")
                )
            elif id(item) in poisoned:
                reason = poisoned[id(item)]
                log.warning("kiosk %s: message %s dead-lettered and rejected: %s", kiosk, item.envelope.id, reason)
                pending.rejected[kiosk].append(Rejection(id=item.envelope.id, reason=reason))
            else:
                accepted[kiosk].append(item.envelope.id)
        hub_time = datetime.now(UTC)
        for kiosk in accepted.keys() | pending.rejected.keys():
            try:
                receipt = Receipt(
                    accepted=accepted.get(kiosk, []), rejected=pending.rejected.get(kiosk, []), hub_time=hub_time
                )
                body = receipt.model_dump_json(exclude_none=True)
            except ValueError as exc:  # pydantic's errors are ValueErrors; the batch is committed and acked
                # No receipt: the kiosk resends and its copies are receipted as duplicates then.
                log.warning("kiosk %s: receipt not sent, it could not be encoded: %s", kiosk, type(exc).__name__)
                continue
            # QoS 0: a lost receipt only means the kiosk sends again and gets another (docs/protocol.md).
            self._client.publish(Topics.receipt(kiosk), body, qos=0)

    def _send_downlink(self) -> None:
        """Publish what kiosks have not confirmed yet (hub.downlink decides what is due)."""
        self._next_downlink = time.monotonic() + self.config.downlink_check_s
        if not self._ready:
            return
        now = time.time()
        try:
            with immediate(self.store.conn) as conn:
                pending = downlink.due(conn, now, route=self.config.route)
                for item in pending:
                    self._client.publish(Topics.message(item.kiosk), item.body, qos=1)
                downlink.mark_sent(conn, [p.id for p in pending], now)
                configs = remote_config.unpublished(conn, self.config.route)
                for config in configs:  # retained: a kiosk offline now gets it when it subscribes
                    self._client.publish(Topics.config(config.kiosk), config.body, qos=1, retain=True)
                remote_config.mark_published(conn, configs)
        except DatabaseError as exc:
            self._downlink_outage.failed(exc)  # tried again at the next check
        else:
            self._downlink_outage.succeeded()

    def _record_delivered(self, kiosk: str, payload: bytes, now: float) -> None:
        try:
            ack = parse_delivered(payload)
        except EnvelopeError as exc:
            log.warning("unreadable delivery ack ignored: %s", exc)
            return
        if ack.kiosk != kiosk:
            log.warning("a delivery ack on %s's topic names another kiosk: ignored", kiosk)
            return
        try:
            with immediate(self.store.conn) as conn:
                downlink.mark_delivered(conn, kiosk, ack.ids, now)
        except DatabaseError as exc:
            self._delivered_outage.failed(exc)  # the kiosk will be sent the message again, and ack it again
        else:
            self._delivered_outage.succeeded()

    def _renew(self, kiosk: str, payload: bytes, now: float) -> None:
        """Sign a kiosk's certificate renewal (or say why not) on its downlink; rare, so done at once."""
        try:
            request = parse_renewal(payload)
        except EnvelopeError as exc:
            log.warning("kiosk %s: unreadable certificate renewal ignored: %s", kiosk, exc)
            return  # no request id to answer
        if self.config.fleet_data is None:
            reply = RenewalReply(request=request.request, error="this hub does not renew certificates")
        else:
            # Imported here: cryptography costs each worker memory, and renewals come once in two years.
            from hub.fleet import identities  # noqa: PLC0415

            try:
                with immediate(self.store.conn) as conn:
                    issued = identities.renew_kiosk(
                        conn, identities.FleetPaths(self.config.fleet_data), kiosk, request, now
                    )
                    audit.record(conn, Actor(f"kiosk:{kiosk}", None), "renew_kiosk_certificate", now,
                                 target=f"kiosk:{kiosk}", detail={"serial": format(issued.serial, "x")})  # fmt: skip
            except identities.IdentityError as exc:
                log.warning("kiosk %s: certificate renewal refused: %s", kiosk, exc)
                reply = RenewalReply(request=request.request, error=str(exc))
            except DatabaseError as exc:
                self._renewal_outage.failed(exc)  # no reply: the kiosk asks again
                return
            except Exception:  # a request no check foresaw must not take ingest down
                log.exception("kiosk %s: certificate renewal failed", kiosk)
                reply = RenewalReply(request=request.request, error="the hub could not process this request")
            else:
                self._renewal_outage.succeeded()
                log.info("kiosk %s: certificate renewed, valid until %s", kiosk, f"{issued.not_after:%Y-%m-%d}")
                reply = RenewalReply(request=request.request, cert_pem=issued.cert_pem.decode())
        self._client.publish(Topics.certificate(kiosk), reply.model_dump_json(exclude_none=True), qos=1)

    def _record_presence(self, kiosk: str, payload: bytes, now: float) -> None:
        if not Topics.is_valid_kiosk_id(kiosk):
            return
        try:
            online = json.loads(payload)["online"] if payload else False
        except (ValueError, KeyError, TypeError):
            online = None
        if not isinstance(online, bool):
            log.warning("unreadable presence message ignored (%d bytes)", len(payload))
            return
        try:
            route = self.config.route
            self.store.set_presence(kiosk, online, now, broker=None if route is None else route.broker)
            if online and self.config.send_downlink:
                with immediate(self.store.conn) as conn:
                    downlink.kiosk_online(conn, kiosk)
                    # Again, in case the broker lost its retained copy: the kiosk ignores a version it runs.
                    conn.execute("UPDATE kiosk_configs SET published_version = 0 WHERE kiosk = ?", (kiosk,))
                self._next_downlink = 0.0
        except Exception as exc:  # noqa: BLE001 - a bug shows its traceback once, in Outage
            # Acked all the same: presence is retained at the broker and sent again at the next change.
            self._presence_outage.failed(exc)
        else:
            self._presence_outage.succeeded()


_DELIVERED_SUFFIX = "/up/" + DELIVERED
_RENEW_SUFFIX = "/up/" + RENEW


def _readable_now(sock: Any) -> bool:
    return has_buffered_input(sock) or bool(select.select([sock], [], [], 0)[0])
