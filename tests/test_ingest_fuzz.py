"""Fuzzing every way data enters: the hub's uplink ingest, and what the kiosk reads from the hub.

Hypothesis feeds arbitrary bytes and, more usefully, valid messages of every kind with one part
deleted, replaced by any JSON value, or joined by an unknown key. What must always hold is what a
person running the hub relies on: nothing raises; every message is either stored or dead-lettered
with a reason; what is stored is stored once, byte for byte; and a parser on the kiosk either
returns a message or says what is wrong with it (EnvelopeError), never anything else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.attachments import chunk_payloads
from device.outbox import Outbox
from device.protocol import EnvelopeError, encode, parse_receipt
from device.protocol.downlink import parse_delivered, parse_message
from device.protocol.provisioning import parse_bundle
from device.protocol.remote_config import parse_config
from device.protocol.renewal import parse_reply as parse_renewal_reply
from device.protocol.renewal import parse_request as parse_renewal_request
from device.protocol.signaling import parse_from_browser, parse_from_kiosk, parse_to_kiosk
from device.simulate import single_reading
from hub.store import HubStore
from hub.uplink import Limits, Sorted, classify

KIOSK = "k-fuzz"
LEAVES = ["observations", "status", "attachment", "case", "consult", "batch", "unknown"]
SEEN = {"accepted": 0}  # valid envelopes the mutation tests got through: the valid path was fuzzed too
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def valid_envelopes(folder: Path) -> list[bytes]:
    """One real envelope of every kind the kiosk sends, through the kiosk's own outbox."""
    import random
    from datetime import UTC, datetime

    box = Outbox(folder / "seed.db", KIOSK)
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    photo = chunk_payloads(b"\xff\xd8 a small jpeg", subject="P1")[0]
    status = {"software_version": "1", "outbox_backlog": 3, "outbox_capacity": 10**6, "uptime_s": 1.0}
    case = {
        "case": "6d1f7e8a-3b7e-4e53-9d39-1f0c2a7c0b11",
        "subject": "P1",
        "questionnaire": {"id": "general-intake", "version": 1},
        "answers": [],
        "text": "a rash on the arm",
        "attachments": [photo["attachment"]],
        "created": "2026-11-27T09:00:00Z",
    }
    envelopes = [
        box.enqueue("observations", single_reading(random.Random(1), now)),
        box.enqueue("status", status),
        box.enqueue("attachment", photo),
        box.enqueue("case", case),
    ]
    box.close()
    return [encode(e) for e in envelopes]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    return valid_envelopes(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStore]:
    hub = HubStore(tmp_path_factory.mktemp("hub") / "hub.db")
    yield hub
    hub.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def paths(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, the root included."""
    found = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths(value, (*here, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += paths(value, (*here, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid envelope with one change: a part deleted, replaced, or an unknown key added."""
    doc = json.loads(draw(st.sampled_from(seeds)))
    where = draw(st.sampled_from(paths(doc)))
    action = draw(st.sampled_from(["delete", "replace", "add"]))
    if not where:
        return json.dumps(draw(json_values)).encode()
    parent = doc
    for step in where[:-1]:
        parent = parent[step]
    if action == "delete":
        del parent[where[-1]]
    elif action == "replace":
        parent[where[-1]] = draw(json_values)
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return json.dumps(doc, allow_nan=True).encode()


def stored_raw(store: HubStore, message_id: str) -> list[bytes]:
    return [r[0].encode() for r in store.conn.execute("SELECT raw FROM messages WHERE id = ?", (message_id,))]


def ingest(store: HubStore, topic: str, payload: bytes) -> Sorted:
    """Classify and commit as a worker would, checking what a person relies on."""
    batch = Sorted()
    envelopes = classify(topic, payload, 1_800_000_000.0, batch, Limits(max_payload_bytes=64 * 1024))
    if not topic.endswith("/batch"):
        assert len(batch) == 1, "a single message is either stored or dead-lettered, never dropped"
    else:
        assert len(batch) == max(envelopes, 1 if batch.dead else 0)
    for letter in batch.dead:
        assert letter.reason and payload.find(letter.raw[:1000]) >= 0
    result = store.commit_batch([a for _, a in batch.accepted], batch.dead)
    # A poison is dead-lettered without stalling ingest, but here it would be a gap in the contract.
    assert result.poisoned == [], f"the contract accepted what the store cannot hold: {result.poisoned[0].reason}"
    assert len(result.new) + len(result.duplicates) + len(result.conflicts) == len(batch.accepted)
    conflicting = {id(c) for c in result.conflicts}
    for _, item in batch.accepted:
        if id(item) not in conflicting:
            assert stored_raw(store, item.envelope.id) == [item.raw], "stored once, byte for byte"
    again = store.commit_batch([a for _, a in batch.accepted], [])
    assert again.new == [], "a redelivered message is a duplicate, never a second row"
    SEEN["accepted"] += len(batch.accepted)
    return batch


@FUZZ
@given(data=st.data(), leaf=st.sampled_from(LEAVES), payload=st.binary(max_size=2048))
def test_arbitrary_bytes_on_any_uplink_topic_are_dead_lettered(
    store: HubStore, data: st.DataObject, leaf: str, payload: bytes
) -> None:
    kiosk = data.draw(st.sampled_from([KIOSK, "other", "", "bad/id", "x" * 80]))
    batch = ingest(store, f"kiosk/{kiosk}/up/{leaf}", payload)
    assert not batch.accepted


@FUZZ
@given(data=st.data(), leaf=st.sampled_from(LEAVES))
def test_every_kind_of_valid_envelope_with_one_part_changed(
    store: HubStore, seeds: list[bytes], data: st.DataObject, leaf: str
) -> None:
    payload = data.draw(mutated(seeds))
    batch = ingest(store, f"kiosk/{KIOSK}/up/{leaf}", payload)
    for _, item in batch.accepted:  # what is accepted is what the contract allows, on its own topic
        assert item.envelope.kiosk == KIOSK and leaf in (item.envelope.kind, "batch")


@FUZZ
@given(data=st.data())
def test_a_batch_of_valid_and_changed_envelopes_keeps_the_valid_ones(
    store: HubStore, seeds: list[bytes], data: st.DataObject
) -> None:
    lines = data.draw(st.lists(st.one_of(st.sampled_from(seeds), mutated(seeds), st.binary(max_size=64)), max_size=6))
    payload = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    batch = ingest(store, f"kiosk/{KIOSK}/up/batch", payload)
    valid = [line for line in lines if line in seeds]
    assert {item.raw for _, item in batch.accepted} >= set(valid)


def test_hostile_shapes_are_dead_lettered_with_a_reason(store: HubStore, seeds: list[bytes]) -> None:
    """Inputs a fuzzer rarely builds by chance: deep nesting, a huge payload, NaN, a wrong kiosk inside."""
    deep = b"[" * 30_000 + b"]" * 30_000  # within the limit below, far past any parser's nesting limit
    huge = seeds[0] + b" " * (64 * 1024)
    nan = seeds[0].replace(b'"value":', b'"value":NaN,"x":', 1)
    foreign = seeds[0].replace(KIOSK.encode(), b"k-other")
    for payload, reason in [
        (deep, "invalid envelope"),
        (huge, "exceeds the hub's limit"),
        (nan, "invalid envelope"),
        (foreign, "does not match topic kiosk"),
    ]:
        batch = ingest(store, f"kiosk/{KIOSK}/up/observations", payload)
        assert [reason in d.reason for d in batch.dead] == [True], (reason, [d.reason for d in batch.dead])


def test_every_dead_letter_of_the_fuzzing_is_in_the_table(store: HubStore) -> None:
    """The dead letters really landed where a person looks (after the fuzz tests above, same module)."""
    assert SEEN["accepted"] > 50, "the mutations hardly ever left an envelope valid: the stored path went unfuzzed"
    count = store.conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    assert count > 100
    empty = store.conn.execute("SELECT count(*) FROM dead_letters WHERE reason = ''").fetchone()[0]
    assert empty == 0


KIOSK_SIDE: list[tuple[str, Callable[[bytes], object]]] = [
    ("receipt", parse_receipt),
    ("downlink message", parse_message),
    ("remote config", parse_config),
    ("provisioning bundle", parse_bundle),
    ("hub signaling", parse_to_kiosk),
    ("delivered ack (hub)", parse_delivered),
    ("certificate renewal request (hub)", parse_renewal_request),
    ("certificate renewal reply", parse_renewal_reply),
    ("kiosk signaling (hub)", parse_from_kiosk),
    ("browser signaling (hub)", parse_from_browser),
]


@pytest.mark.parametrize(("what", "parse"), KIOSK_SIDE, ids=[w for w, _ in KIOSK_SIDE])
def test_parsers_either_parse_or_say_what_is_wrong(what: str, parse: Callable[[bytes], object]) -> None:
    @settings(max_examples=200, deadline=None, database=None)
    @given(raw=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
    def check(raw: bytes) -> None:
        try:
            parse(raw)
        except EnvelopeError as exc:
            assert str(exc), f"{what}: an error without a reason"

    check()
    with pytest.raises(EnvelopeError):
        parse(b"[" * 100_000 + b"]" * 100_000)


def test_the_fuzzed_database_is_still_sound(store: HubStore) -> None:
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with pytest.raises(sqlite3.IntegrityError):  # the exactly-once guard is the primary key itself
        row = store.conn.execute("SELECT * FROM messages LIMIT 1").fetchone()
        if row is None:
            pytest.fail("the fuzzing stored no valid envelope at all")
        marks = ",".join("?" * len(row))
        store.conn.execute(f"INSERT INTO messages VALUES ({marks})", row)


def test_one_id_twice_in_one_batch_with_other_content_stores_the_first_and_refuses_the_second(
    tmp_path: Path, seeds: list[bytes]
) -> None:
    first = next(s for s in seeds if json.loads(s)["kind"] == "observations")
    doc = json.loads(first)
    doc["payload"]["observations"][0]["value"] += 1
    second = json.dumps(doc, separators=(",", ":")).encode()
    store = HubStore(tmp_path / "hub.db")
    try:
        batch = ingest(store, f"kiosk/{KIOSK}/up/batch", b"\n".join([first, second]))
        assert len(batch.accepted) == 2
        assert stored_raw(store, doc["id"]) == [first]
        letters = store.conn.execute("SELECT raw, reason FROM dead_letters").fetchall()
        assert [(raw, "different content" in reason) for raw, reason in letters] == [(second, True)]
    finally:
        store.close()
