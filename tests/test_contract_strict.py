"""The wire contract is strict: what an outside tester sent and the hub used to coerce and store is refused.

Each case is an envelope as a device maker would write it, sent through `parse_envelope` (the hub's
JSON path), and the reason must say what is wrong. The kiosk's own producers (`build_envelope`) go
through the same checks, and the published schema says the same things.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from device.protocol import ClockInfo, EnvelopeError, parse_envelope, parse_receipt
from device.protocol.envelope import (
    ATTACHMENT_CHUNK_BYTES,
    MAX_WIRE_INT,
    Receipt,
    build_envelope,
    encode,
    envelope_json_schema,
)
from device.protocol.vitals import VITALS
from hub.db import Location
from hub.store import HubStore
from hub.uplink import Sorted, classify

OBSERVATION: dict[str, Any] = {
    "code": "59408-5",
    "value": 97,
    "unit": "%",
    "effective": "2026-11-27T09:58:41.250Z",
    "device": {"id": "C4:7F:51:0A:12:9E", "type": "ble"},
}
HEAD: dict[str, Any] = {
    "v": 1,
    "id": "01a21c71-67c8-70be-a4de-b9a707b172d5",
    "kiosk": "clinic-north-02",
    "seq": 7,
    "clock": {"time": "2026-11-27T09:58:43.912Z", "offset_ms": -12.0, "source": "hub"},
}


def observations(**changes: Any) -> dict[str, Any]:
    return {**HEAD, "kind": "observations", "payload": {"observations": [{**OBSERVATION, **changes}]}}


def status(**changes: Any) -> dict[str, Any]:
    payload = {"software_version": "0.1.0", "outbox_backlog": 3, "outbox_capacity": 1000, "uptime_s": 60.0}
    return {**HEAD, "kind": "status", "payload": {**payload, **changes}}


def case(answers: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {
        "case": "0b1e8c2a-1111-4222-8333-444455556666",
        "subject": "P1001",
        "questionnaire": {"id": "general-intake", "version": 1},
        "answers": answers,
        "created": "2026-11-27T10:00:00Z",
    }
    return {**HEAD, "kind": "case", "payload": payload}


def attachment(**changes: Any) -> dict[str, Any]:
    payload = {
        "attachment": "5f0c7a1e-2222-4333-8444-555566667777",
        "media_type": "image/jpeg",
        "size": 3,
        "sha256": "0" * 64,
        "index": 0,
        "count": 1,
        "data": "QUJD",
    }
    return {**HEAD, "kind": "attachment", "payload": {**payload, **changes}}


def refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(EnvelopeError) as exc:
        parse_envelope(json.dumps(doc))
    return str(exc.value)


# --- what the outside tester found ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (observations(value=True), 'payload.observations.0.value: Input should be a valid number, got true'),
        (observations(value="72"), 'payload.observations.0.value: Input should be a valid number, got "72"'),
        ({**observations(), "seq": "7"}, 'seq: Input should be a valid integer, got "7"'),
        ({**observations(), "seq": True}, "seq: Input should be a valid integer, got true"),
        ({**observations(), "seq": 7.5}, "seq: Input should be a valid integer, got 7.5"),
        ({**observations(), "clock": {**HEAD["clock"], "offset_ms": "12"}},
         'clock.offset_ms: Input should be a valid number, got "12"'),
        (observations(quality="0.9"), 'payload.observations.0.quality: Input should be a valid number, got "0.9"'),
        (observations(device_user=True),
         "payload.observations.0.device_user: Input should be a valid integer, got true"),
        ({**observations(), "v": True}, "v: Input should be 1, got true"),
    ],
    ids=["value true", "value text", "seq text", "seq true", "seq fraction", "offset text", "quality text",
         "device_user true", "v true"],
)  # fmt: skip
def test_a_value_of_another_json_type_is_refused_not_coerced(doc: dict[str, Any], reason: str) -> None:
    assert refusal(doc) == reason


@pytest.mark.parametrize(
    ("time", "what"),
    [
        (1764237523, "got 1764237523"),
        ("1764237523", 'got "1764237523"'),
        ("2026-11-27 09:58:41Z", 'got "2026-11-27 09:58:41Z"'),
        ("2026-11-27T09:58:41", "an offset (Z or +hh:mm)"),
        ("2026-11-27T09:58Z", "seconds"),
        ("1899-12-31T23:00:00Z", "year 1900 to 2999"),
        ("0001-01-01T00:00:00+01:00", "year 1900 to 2999"),  # was in year 0 once turned to UTC: the store failed
        ("2026-02-30T09:58:41Z", "day value is outside expected range"),
        ("2026-11-27T23:59:60Z", "e.g. 2026-11-27T09:58:43.912Z"),  # RFC 3339 leap second: no Python datetime
    ],
)
def test_times_are_rfc3339_text_only(time: object, what: str) -> None:
    for doc, where in [
        (observations(effective=time), "payload.observations.0.effective: "),
        ({**observations(), "clock": {"time": time}}, "clock.time: "),
        (case([]) | {"payload": case([])["payload"] | {"created": time}}, "payload.created: "),
    ]:
        reason = refusal(doc)
        assert reason.startswith(where) and what in reason, reason


def test_rfc3339_spellings_are_accepted_and_stored_as_utc() -> None:
    for time in ["2026-11-27t04:58:41.25-05:00", "2026-11-27T09:58:41.250000000Z", "2026-11-27T09:58:41.25z"]:
        env = parse_envelope(json.dumps(observations(effective=time)))
        assert json.loads(encode(env))["payload"]["observations"][0]["effective"] == "2026-11-27T09:58:41.250Z"


def test_numbers_keep_to_the_wire_bound() -> None:
    bound = f"Input should be less than or equal to {MAX_WIRE_INT}"
    for big in (2**53, 2**64):
        assert refusal({**observations(), "seq": big}) == f"seq: {bound}, got {big}"
        assert refusal(observations(device_sequence=big)).startswith(f"payload.observations.0.device_sequence: {bound}")
        assert refusal(status(outbox_backlog=big)).startswith(f"payload.outbox_backlog: {bound}")
        assert refusal(status(outbox_capacity=big)).startswith(f"payload.outbox_capacity: {bound}")
        assert refusal(status(config_version=big)).startswith(f"payload.config_version: {bound}")
        assert refusal(case([{"link_id": "days", "value": big}])).startswith("payload.answers.0.value")
        assert refusal(observations(code="12345-6", value=big)).startswith(f"payload.observations.0.value: {bound}")
    assert refusal(observations(device_user=256)).endswith("less than or equal to 255, got 256")
    assert refusal(attachment(index=4096, count=4096)).startswith(
        "payload.index: Input should be less than or equal to 4095"
    )


def test_an_integer_written_with_a_zero_fraction_is_that_integer() -> None:
    """JSON Schema counts 7.0 as the integer 7; so does the hub, and stores 7."""
    env = parse_envelope(json.dumps({**observations(), "seq": 7.0}))
    assert env.seq == 7 and isinstance(env.seq, int)


def test_the_largest_allowed_integers_are_stored_by_the_hub(hub_database: Location) -> None:
    """The bound is one both stores hold: a status at the bound is committed and read back exactly."""
    doc = status(outbox_backlog=MAX_WIRE_INT, outbox_capacity=MAX_WIRE_INT, config_version=MAX_WIRE_INT)
    doc["seq"] = MAX_WIRE_INT
    into = Sorted()
    classify("kiosk/clinic-north-02/up/status", json.dumps(doc).encode(), 1.0, into)
    assert not into.dead and len(into.accepted) == 1
    store = HubStore(hub_database)
    try:
        store.commit_batch([item for _, item in into.accepted], [])
        kiosk = store.kiosk("clinic-north-02")
        assert kiosk is not None
        assert kiosk["outbox_backlog"] == MAX_WIRE_INT and kiosk["last_seq"] == MAX_WIRE_INT
    finally:
        store.close()


def test_one_past_the_bound_is_dead_lettered_and_told_to_the_kiosk() -> None:
    doc = status(outbox_backlog=2**64)
    into = Sorted()
    classify("kiosk/clinic-north-02/up/status", json.dumps(doc).encode(), 1.0, into)
    assert not into.accepted and len(into.dead) == 1
    (rejection,) = into.rejected["clinic-north-02"]
    assert rejection.id == HEAD["id"] and "outbox_backlog: Input should be less than or equal to" in rejection.reason


# --- answers keep their JSON type ---------------------------------------------------------------------------


def test_case_answers_keep_their_json_type() -> None:
    answers = [
        {"link_id": "fever", "value": True},
        {"link_id": "days", "value": 1},
        {"link_id": "temp", "value": 1.5},
        {"link_id": "whole", "value": 1.0},
        {"link_id": "note", "value": "1"},
        {"link_id": "where", "value": ["chest"]},
    ]
    env = parse_envelope(json.dumps(case(answers)))
    values = [a.value for a in env.payload.answers]  # type: ignore[union-attr]
    assert [type(v) for v in values] == [bool, int, float, float, str, list]
    assert json.loads(encode(env))["payload"]["answers"] == answers


# --- base64 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["QUJD\nREVG", "QUJ", "QUJD!", "QUJD REVG", 12])
def test_chunk_data_is_canonical_base64(data: object) -> None:
    reason = refusal(attachment(data=data))
    assert reason.startswith("payload.data: Input should be standard base64"), reason


def test_an_empty_chunk_is_refused() -> None:
    assert refusal(attachment(data="")) == f"payload: a chunk carries 1 to {ATTACHMENT_CHUNK_BYTES} bytes, this one 0"


def test_the_longest_chunk_text_must_end_in_padding() -> None:
    whole = ATTACHMENT_CHUNK_BYTES // 3 * 4 + 4  # one group past the last unpadded length
    ok = "A" * (whole - 1) + "="
    env = parse_envelope(json.dumps(attachment(data=ok, size=ATTACHMENT_CHUNK_BYTES)))
    assert len(env.payload.data) == ATTACHMENT_CHUNK_BYTES  # type: ignore[union-attr]
    assert f"a chunk carries 1 to {ATTACHMENT_CHUNK_BYTES} bytes" in refusal(attachment(data="A" * whole))


# --- the kiosk side: build_envelope checks what the hub checks ----------------------------------------------


def _build(payload: dict[str, Any], kind: str = "observations") -> Any:
    clock = ClockInfo(time=datetime(2026, 11, 27, 9, 58, 43, 912000, tzinfo=UTC), offset_ms=-12, source="hub")
    return build_envelope(kind, message_id=HEAD["id"], kiosk=HEAD["kiosk"], seq=7, clock=clock, payload=payload)


def test_a_kiosk_refuses_to_store_what_the_hub_would_refuse() -> None:
    effective = datetime(2026, 11, 27, 9, 58, 41, tzinfo=UTC)
    good = {**OBSERVATION, "effective": effective}
    assert _build({"observations": [good]}).payload.observations[0].value == 97.0
    with pytest.raises(EnvelopeError, match=r"value: Input should be a valid number, got true"):
        _build({"observations": [{**good, "value": True}]})
    with pytest.raises(EnvelopeError, match="effective: Input should be an RFC 3339 date-time"):
        _build({"observations": [{**good, "effective": datetime(2026, 11, 27, 9, 58, 41)}]})  # naive
    with pytest.raises(EnvelopeError, match="value: Input should be a finite number"):
        _build({"observations": [{**good, "code": "12345-6", "value": float("nan")}]})
    with pytest.raises(EnvelopeError, match="cannot be written as JSON"):
        _build({"observations": [{**good, "device": object()}]})


def test_receipts_the_hub_sends_are_read_back() -> None:
    receipt = Receipt(accepted=[HEAD["id"]], hub_time=datetime(2026, 11, 27, 9, 58, 47, 320000, tzinfo=UTC))
    assert parse_receipt(receipt.model_dump_json(exclude_none=True)) == receipt
    with pytest.raises(EnvelopeError, match="hub_time: Input should be an RFC 3339 date-time string, got 1764237527"):
        parse_receipt(json.dumps({"v": 1, "kind": "receipt", "hub_time": 1764237527}))


# --- the published schema says the same -------------------------------------------------------------------


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_every_number_in_the_schema_has_the_wire_bound() -> None:
    numbers = [
        n for n in _walk(envelope_json_schema()) if isinstance(n, dict) and n.get("type") in ("integer", "number")
    ]
    assert len(numbers) > 15
    for n in numbers:
        low, high = (n["const"], n["const"]) if "const" in n else (n.get("minimum"), n.get("maximum"))
        assert low is not None and high is not None and -MAX_WIRE_INT <= low <= high <= MAX_WIRE_INT, n


def test_the_schema_lists_every_known_vital_and_no_reserved_kind() -> None:
    schema = envelope_json_schema()
    rows = schema["$defs"]["Observation"]["anyOf"]
    published = {
        (r["properties"]["code"]["const"], r["properties"]["unit"]["const"]): (
            r["properties"]["value"]["minimum"],
            r["properties"]["value"]["maximum"],
        )
        for r in rows
        if "const" in r["properties"]["code"]
    }
    assert published == {(c, u): rng for c, spec in VITALS.items() for u, rng in spec.units.items()}
    assert [r["properties"]["code"]["not"]["enum"] for r in rows if "not" in r["properties"]["code"]] == [list(VITALS)]
    kinds = {
        schema["$defs"][ref.split("/")[-1]]["properties"]["kind"]["const"]
        for ref in schema["discriminator"]["mapping"].values()
    }
    assert kinds == {"observations", "status", "attachment", "case"}
