"""The wire contract: what a kiosk may send, and the errors a person reads when it may not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from device.protocol import ClockInfo, EnvelopeError, Topics, encode, new_message_id, parse_envelope, parse_receipt
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import Receipt, build_envelope
from device.protocol.ids import id_time_ms

NOW = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)


def obs(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "code": "8867-4",
        "value": 72,
        "unit": "/min",
        "effective": NOW,
        "device": {"id": "AA:BB:CC:DD:EE:FF", "type": "ble", "model": "HRM"},
    }
    return {**base, **over}


def envelope(**payload_obs: object) -> bytes:
    env = build_envelope(
        "observations",
        message_id=new_message_id(),
        kiosk="kiosk-1",
        seq=1,
        clock=ClockInfo(time=NOW, offset_ms=-12.5, source="hub"),
        payload={"observations": [obs(**payload_obs)]},
    )
    return encode(env)


def test_envelope_round_trips_byte_for_byte() -> None:
    raw = envelope()
    parsed = parse_envelope(raw)
    assert encode(parsed) == raw
    data = json.loads(raw)
    assert data["v"] == 1 and data["kind"] == "observations" and data["kiosk"] == "kiosk-1"
    # One spelling of time: UTC, milliseconds, Z.
    assert data["clock"]["time"] == "2026-11-27T10:00:00.123Z"
    assert data["payload"]["observations"][0]["unit"] == "/min"


def test_times_with_other_offsets_are_stored_as_utc() -> None:
    raw = envelope(effective=NOW.astimezone(timezone(timedelta(hours=-5))))
    assert json.loads(raw)["payload"]["observations"][0]["effective"] == "2026-11-27T10:00:00.123Z"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"unit": "mm[Hg]"}, "unit 'mm[Hg]' is not valid for 8867-4 (Heart rate); use one of: /min"),
        ({"value": 900}, "Heart rate (8867-4) of 900.0 /min is outside the plausible range 10..350"),
        ({"code": "heart"}, "String should match pattern"),
        ({"unit": "beats per minute"}, "String should match pattern"),
        ({"effective": "2026-11-27T10:00:00"}, "an offset (Z or +hh:mm)"),
        ({"device": {"id": "x", "type": "telepathy"}}, "Input should be 'ble', 'camera', 'manual' or 'simulated'"),
    ],
)
def test_bad_readings_are_refused_with_a_reason(over: dict[str, object], message: str) -> None:
    raw = json.loads(envelope())
    raw["payload"]["observations"][0].update(json.loads(json.dumps(over, default=str)))
    with pytest.raises(EnvelopeError) as exc:
        parse_envelope(json.dumps(raw))
    assert message in str(exc.value)
    assert "payload.observations.0" in str(exc.value)


def test_non_finite_values_are_refused() -> None:
    raw = envelope().replace(b'"value":72.0', b'"value":NaN')
    with pytest.raises(EnvelopeError, match="value"):
        parse_envelope(raw)


def test_unknown_codes_pass_with_any_ucum_unit() -> None:
    assert parse_envelope(envelope(code="12345-6", unit="mg/dL", value=4))


def test_unknown_fields_and_versions_are_refused() -> None:
    data = json.loads(envelope())
    data["extra"] = 1
    with pytest.raises(EnvelopeError, match="extra: Extra inputs are not permitted"):
        parse_envelope(json.dumps(data))
    data = json.loads(envelope())
    data["v"] = 2
    with pytest.raises(EnvelopeError, match="v: Input should be 1"):
        parse_envelope(json.dumps(data))


def test_reserved_kinds_are_refused_clearly() -> None:
    data = json.loads(envelope())
    data["kind"] = "consult"
    data["payload"] = {"reason": "chest pain"}
    with pytest.raises(EnvelopeError, match="kind 'consult' is reserved"):
        parse_envelope(json.dumps(data))


def case_payload(**changes: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "case": "0b1e8c2a-1111-4222-8333-444455556666",
        "subject": "P1001",
        "questionnaire": {"id": "general-intake", "version": 1},
        "answers": [{"link_id": "fever", "value": True}, {"link_id": "days", "value": 3},
                    {"link_id": "where", "value": ["chest", "back"]}],
        "text": "Cough since Monday.",
        "attachments": ["5f0c7a1e-2222-4333-8444-555566667777"],
        "vitals": [],
        "created": "2026-11-27T10:00:00Z",
    }  # fmt: skip
    payload.update(changes)
    return payload


def test_a_case_is_accepted_and_checked() -> None:
    data = json.loads(envelope())
    data["kind"] = "case"
    data["payload"] = case_payload()
    env = parse_envelope(json.dumps(data))
    assert env.kind == "case" and env.payload.answers[2].value == ["chest", "back"]  # type: ignore[union-attr]
    for bad, reason in [
        ({"subject": "has space"}, "subject"),
        ({"answers": [{"link_id": "fever", "value": True}, {"link_id": "fever", "value": False}]}, "at most once"),
        ({"text": "x" * 5001}, "text"),
        ({"attachments": ["not-a-uuid"]}, "attachments"),
    ]:
        data["payload"] = case_payload(**bad)
        with pytest.raises(EnvelopeError, match=reason):
            parse_envelope(json.dumps(data))


@pytest.mark.parametrize("garbage", [b"", b"not json", b"[]", b'{"v": 1}', b"\xff\xfe"])
def test_garbage_gives_an_error_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(garbage)


def test_message_ids_are_uuid7_and_strictly_increasing() -> None:
    ids = [new_message_id() for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert abs(id_time_ms(ids[0]) - datetime.now(UTC).timestamp() * 1000) < 5000
    # Same millisecond: still ordered by mint order.
    same = [new_message_id(now_ms=1_800_000_000_000) for _ in range(100)]
    assert same == sorted(same)


def test_topics() -> None:
    assert Topics.uplink("k1", "observations") == "kiosk/k1/up/observations"
    parsed = Topics.parse_uplink("kiosk/k1/up/batch")
    assert parsed is not None and parsed.kiosk == "k1" and parsed.leaf == "batch"
    assert Topics.parse_uplink("kiosk/k1/down/receipt") is None
    assert Topics.parse_presence("kiosk/k1/presence") == "k1"
    assert Topics.receipt("k1") == "kiosk/k1/down/receipt"
    assert Topics.shared("ingest", Topics.UPLINK_FILTER) == "$share/ingest/kiosk/+/up/#"
    assert not Topics.is_valid_kiosk_id("a/b") and not Topics.is_valid_kiosk_id("+")


def test_receipt_round_trip() -> None:
    r = Receipt(accepted=[new_message_id()], hub_time=NOW.replace(microsecond=123000))
    assert parse_receipt(r.model_dump_json()) == r
    with pytest.raises(EnvelopeError):
        parse_receipt(b'{"accepted": 5}')


def test_broker_urls() -> None:
    assert BrokerUrl.parse("mqtts://hub.example:9999") == BrokerUrl("hub.example", 9999, True)
    assert BrokerUrl.parse("mqtt://localhost").port == 1883
    with pytest.raises(ValueError, match="must start with mqtt:// or mqtts://"):
        BrokerUrl.parse("http://x")
