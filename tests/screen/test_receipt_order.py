"""The hub's receipt may come before the screen has recorded its notice: a message goes into the outbox first (which
wakes the forwarder), and the notice is written after. Whatever the order, what reached the clinic reads as reached.

The bad order is forced, not waited for: the outbox's `on_enqueue` hook (what wakes the forwarder) delivers the
hub's receipt for each new message at once, between the enqueue and the notice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from device.protocol.envelope import utc_iso
from device.screen.notices import Notices
from tests.screen.kiosk import NO_PIN, Kiosk, checked_in, post


def receipts_on_enqueue(kiosk: Kiosk) -> list[str]:
    """The hub receipts every message the moment it is stored, before the screen goes on; the ids, in order."""
    outbox = kiosk.agent.outbox
    receipted: list[str] = []

    def receipt_now() -> None:
        ids = [item.id for item in outbox.pending() if item.id not in receipted]
        receipted.extend(ids)
        kiosk.screen.on_receipt(ids)  # what the forwarder's thread calls when the hub's receipt arrives

    outbox.on_enqueue = receipt_now
    return receipted


def test_a_case_receipted_before_its_notice_was_written_reads_as_reached(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    receipted = receipts_on_enqueue(kiosk)
    client = kiosk.client
    checked_in(client, NO_PIN)
    post(client, "/case/q/main", {"value": "A cough"})
    location = post(client, "/case/send").headers["location"]
    envelope_id = location.rsplit("/", 1)[1]
    assert receipted == [envelope_id]  # the receipt came first
    assert client.get(f"{location}/status").json() == {"delivered": True}
    page = client.get(location).text
    assert f'data-delivered-for="{envelope_id}"' in page and "data-waiting-for" not in page
    post(client, "/finish")

    checked_in(client, NO_PIN)
    home = client.get("/home").text
    assert "reached your clinic on" in home and "waiting to be sent" not in home


def test_readings_receipted_before_their_notice_was_written_read_as_reached(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    receipted = receipts_on_enqueue(kiosk)
    client = kiosk.client
    checked_in(client, NO_PIN)
    observation = {
        "code": "8867-4", "value": 72, "unit": "/min", "effective": utc_iso(datetime.now(UTC)),
        "device": {"id": "AA:BB:CC:DD:EE:FF", "type": "ble"},
    }  # fmt: skip
    envelope = kiosk.screen.on_reading({"subject": NO_PIN, "observations": [observation]})
    assert receipted == [getattr(envelope, "id", None)]
    post(client, "/finish")

    checked_in(client, NO_PIN)
    home = client.get("/home").text
    assert "Your readings from" in home and "reached your clinic on" in home
    assert "waiting to be sent" not in home


def test_a_receipt_that_names_no_notice_yet_marks_it_when_it_is_written(tmp_path: Path) -> None:
    notices = Notices(tmp_path / "notices.db")
    try:
        notices.delivered(["m1", "not-a-notice"], 1_800_000_010.0)
        notices.saved("P-1", "case", "m1", 1_800_000_000.0)
        notices.saved("P-1", "case", "m2", 1_800_000_020.0)
        found = {n.message_id: n.delivered_at for n in notices.for_subject("P-1")}
        assert found == {"m1": 1_800_000_010.0, "m2": None}
    finally:
        notices.close()
