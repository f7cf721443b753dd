"""Once the hub has a patient's data, the kiosk's own files no longer hold it: not in the tables, not in the
freed pages of the database file, not in its write-ahead log. Checked on the raw bytes of every file."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from device.attachments import enqueue_attachment
from device.inbox import Inbox
from device.protocol.downlink import CaseAnswerBody, CaseAnswerMessage
from device.protocol.endpoints import BrokerUrl
from device.protocol.ids import new_message_id
from tests.harness import ingest_thread, kiosk_agent, wait_until

FAST = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
WORDS = "Planted-words-QX7Z: a rash on my left wrist"
PHOTO = b"\xff\xd8" + b"Planted-photo-JV3K" * 400 + b"\xff\xd9"


def raw_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def test_a_delivered_case_leaves_no_trace_in_the_kiosk_files(tmp_path: Path, broker_url: BrokerUrl) -> None:
    kiosk_dir = tmp_path / "kiosk"
    with (
        ingest_thread(tmp_path / "hub.db", broker_url),
        kiosk_agent(kiosk_dir, "k-forget", broker_url, **FAST) as agent,
    ):
        photo = enqueue_attachment(agent.outbox, PHOTO, subject="P1")
        agent.outbox.enqueue("case", {
            "case": str(uuid.uuid4()), "subject": "P1", "questionnaire": {"id": "general-intake", "version": 1},
            "answers": [], "text": WORDS, "attachments": [photo], "created": "2026-11-27T10:00:00Z",
        })  # fmt: skip
        # The words and the photo are on the kiosk's disk while they wait (the test would be empty otherwise).
        waiting = raw_bytes(kiosk_dir)
        assert WORDS.encode() in waiting and base64.b64encode(PHOTO[:300])[:40] in waiting
        wait_until(lambda: agent.outbox.backlog().items == 0, 20, "the hub's receipts")
    left = raw_bytes(kiosk_dir)
    assert WORDS.encode() not in left
    assert base64.b64encode(PHOTO[:300])[:40] not in left


def test_an_answer_removed_after_it_was_shown_leaves_no_trace(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.db")
    message = CaseAnswerMessage(
        id=new_message_id(),
        kiosk="k-forget",
        created="2026-11-27T10:00:00Z",  # type: ignore[arg-type]
        body=CaseAnswerBody(case=str(uuid.uuid4()), subject="P1", message="Planted-answer-RT5W apply the cream"),
    )
    inbox.store(message)
    assert b"Planted-answer-RT5W" in raw_bytes(tmp_path)
    inbox.forget([message.id])
    inbox.close()
    assert b"Planted-answer-RT5W" not in raw_bytes(tmp_path)
