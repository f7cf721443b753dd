"""Ending a dead hub instance's ingest sessions at the brokers, so that its share of the kiosks' traffic goes to
the instances still alive.

Ingest keeps persistent MQTT sessions (a restart picks up what was queued meanwhile), and Mosquitto goes on giving
an offline member of a shared subscription its turn: by design with clean start off (mosquitto issue #1747). So
when an instance loses its machine, half of what the kiosks send waits in its sessions, and reaches a live
instance only as the kiosks' resends once their receipt deadlines pass (`hub bench cluster` measured the drain
falling from 25,344 to 313 readings/s, with a 90 s pause). Connecting once with each dead session's client id,
clean start on and a session expiry of 0, makes the broker discard the session and what it queued; the kiosks
still hold every message without a receipt and send it again, now to the live members.

Which instances are dead is PostgreSQL's to say: each instance holds a session advisory lock on its own name for
as long as it runs (hub/db/lease.py `register_instance`); a lock that can be taken is an instance that is gone.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.protocol.endpoints import BrokerUrl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerLogin:
    """How ingest logs in to a broker (the same login for every worker: the broker binds ids to it)."""

    broker: BrokerUrl
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None


def end_session(login: BrokerLogin, client_id: str, *, timeout_s: float = 10.0) -> bool:
    """Discard the broker's session for `client_id` (and everything queued in it); True once the broker said so."""
    acked = threading.Event()
    refused: list[str] = []
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if login.broker.tls:
        client.tls_set(ca_certs=login.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    if login.username:
        client.username_pw_set(login.username, login.password)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        acked.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0  # this session ends when this connection does
    try:
        client.connect(login.broker.host, login.broker.port, keepalive=10, clean_start=True, properties=props)
    except (OSError, ssl.SSLError) as exc:
        log.warning("could not end session %s on %s: %s", client_id, login.broker, exc)
        return False
    client.loop_start()
    try:
        if not acked.wait(timeout_s) or refused:
            log.warning("could not end session %s on %s: %s", client_id, login.broker, refused or "no answer")
            return False
        return True
    finally:
        client.disconnect()
        client.loop_stop()
