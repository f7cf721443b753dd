"""Case photos to the hub: chunked through the outbox, assembled and hash-checked, served only when whole.

Real parts: a photo prepared by device.camera.photos from a rendered frame, the kiosk agent's
outbox and forwarder, Mosquitto (through a proxy that cuts the path mid-transfer), ingest into
the hub's store (SQLite and PostgreSQL), and the hub API.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from device.attachments import chunk_payloads, enqueue_attachment
from device.camera.photos import prepare
from device.outbox import Outbox
from device.protocol import parse_envelope
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import ATTACHMENT_CHUNK_BYTES, EnvelopeError, encode
from hub.app import create_app
from hub.db import Location, SqliteLocation
from hub.store import Accepted, HubStore
from tests.harness import api_token, ingest_thread, kiosk_agent, wait_until
from tests.netproxy import TcpProxy

FAST = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}


def photo(seed: int = 5, side: int = 1400) -> bytes:
    """A detailed image (noise compresses badly), so the JPEG spans many chunks."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    return prepare(image, max_side=side).data


def hub_api(db: Location) -> TestClient:
    return TestClient(create_app(db), headers={"Authorization": f"Bearer {api_token(db)}"})


def status(db: Location, attachment: str) -> str | None:
    if isinstance(db, SqliteLocation) and not db.path.exists():  # ingest has not made it yet
        return None
    store = HubStore(db)
    try:
        row = store.attachment(attachment)
        return None if row is None else str(row["status"])
    finally:
        store.close()


def test_a_photo_arrives_whole_and_identical(tmp_path: Path, broker_url: BrokerUrl, hub_database: Location) -> None:
    data = photo()
    assert len(data) > 3 * ATTACHMENT_CHUNK_BYTES
    db = hub_database
    with ingest_thread(db, broker_url), kiosk_agent(tmp_path / "k", "k-photo", broker_url, **FAST) as agent:
        attachment = enqueue_attachment(agent.outbox, data, subject="P-9")
        wait_until(lambda: status(db, attachment) == "complete", 30, "the photo assembled at the hub")
        wait_until(lambda: agent.outbox.backlog().items == 0, 15, "the kiosk to drop the receipted chunks")
    api = hub_api(db)
    listed = api.get("/api/v1/kiosks/k-photo/attachments").json()
    assert [(a["id"], a["status"], a["size"], a["subject"]) for a in listed] == [
        (attachment, "complete", len(data), "P-9")
    ]
    got = api.get(f"/api/v1/attachments/{attachment}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == data
    assert got.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    assert TestClient(create_app(db)).get(f"/api/v1/attachments/{attachment}").status_code == 401


def test_a_transfer_cut_midway_resumes_and_completes(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    data = photo(seed=6, side=1800)
    db = hub_database
    proxy = TcpProxy(broker_url.host, broker_url.port)
    via_proxy = BrokerUrl(broker_url.host, proxy.port, False)
    try:
        with ingest_thread(db, broker_url), kiosk_agent(tmp_path / "k", "k-cut", via_proxy, **FAST) as agent:
            wait_until(agent.forwarder.connected.is_set, 10, "the kiosk to connect")
            proxy.cut_after(int(len(data) * 0.5))  # the path goes down halfway through the photo
            attachment = enqueue_attachment(agent.outbox, data)
            wait_until(proxy.cut.is_set, 20, "the cut")
            wait_until(lambda: not agent.forwarder.connected.is_set(), 15, "the kiosk to notice the cut")
            assert status(db, attachment) in (None, "receiving")  # not whole yet
            time.sleep(0.5)
            proxy.restore()
            wait_until(lambda: status(db, attachment) == "complete", 60, "the photo completed after the cut")
            assert agent.forwarder.stats.connects >= 2
    finally:
        proxy.close()
    assert hub_api(db).get(f"/api/v1/attachments/{attachment}").content == data


def _accepted(outbox: Outbox, payloads: list[dict[str, object]]) -> list[Accepted]:
    envelopes = outbox.enqueue_many([("attachment", p) for p in payloads])
    return [Accepted(e, encode(e), time.time(), f"kiosk/{e.kiosk}/up/attachment") for e in envelopes]


def test_chunks_out_of_order_and_repeated_assemble_once(tmp_path: Path, hub_database: Location) -> None:
    data = random.Random(3).randbytes(3 * ATTACHMENT_CHUNK_BYTES + 17)
    items = _accepted(Outbox(tmp_path / "o.db", "k1"), chunk_payloads(data))
    store = HubStore(hub_database)
    store.commit_batch([items[3], items[1]], [])
    store.commit_batch([items[1], items[0], items[3]], [])  # redelivered copies are absorbed
    attachment = items[0].envelope.payload.attachment  # type: ignore[union-attr]
    assert store.attachment(attachment)["status"] == "receiving"  # type: ignore[index]
    store.commit_batch([items[2]], [])
    row = store.attachment(attachment)
    assert row is not None and row["status"] == "complete" and bytes(row["data"]) == data
    store.commit_batch([items[2]], [])  # a late copy changes nothing
    assert store.attachment(attachment)["status"] == "complete"  # type: ignore[index]


def test_bytes_that_do_not_match_the_announced_hash_are_never_served(tmp_path: Path, hub_database: Location) -> None:
    data = random.Random(4).randbytes(ATTACHMENT_CHUNK_BYTES + 5)
    payloads = chunk_payloads(data)
    payloads[1] = {**payloads[1], "sha256": "0" * 64}  # a kiosk bug or a corrupted copy
    payloads[0] = {**payloads[0], "sha256": "0" * 64}
    items = _accepted(Outbox(tmp_path / "o.db", "k1"), payloads)
    db = hub_database
    store = HubStore(db)
    store.commit_batch(items, [])
    attachment = items[0].envelope.payload.attachment  # type: ignore[union-attr]
    assert store.attachment(attachment)["status"] == "corrupt"  # type: ignore[index]
    store.close()
    assert hub_api(db).get(f"/api/v1/attachments/{attachment}").status_code == 409


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"index": 2, "count": 2}, "is not below the chunk count"),
        ({"sha256": "xyz"}, "sha256"),
        ({"media_type": "application/pdf"}, "media_type"),
        ({"data": "not base64!"}, "data"),
    ],
)
def test_malformed_chunks_are_refused_with_the_reason(tmp_path: Path, change: dict[str, object], message: str) -> None:
    payload = {**chunk_payloads(b"jpeg bytes")[0], **change}
    with pytest.raises(EnvelopeError, match=message):
        Outbox(tmp_path / "o.db", "k1").enqueue("attachment", payload)


def test_chunk_envelopes_fit_the_envelope_limit() -> None:
    from device.protocol.envelope import MAX_ENVELOPE_BYTES, ClockInfo, build_envelope

    payload = chunk_payloads(bytes(ATTACHMENT_CHUNK_BYTES))[0]
    env = build_envelope(
        "attachment",
        message_id="01a21bcf-4e34-702e-bc85-b3caf21ade65",
        kiosk="k" * 64,
        seq=10**12,
        clock=ClockInfo(time=datetime.now(UTC), offset_ms=-123456.7, source="hub"),
        payload={**payload, "subject": "S" * 64},
    )
    assert len(encode(env)) < MAX_ENVELOPE_BYTES
    assert parse_envelope(encode(env)).kind == "attachment"
