"""A message the contract lets through but the database cannot hold is dead-lettered and rejected, never retried.

Issue 18, point 1: an envelope whose `seq` was 2^64 passed validation, then failed every commit of its
batch ("Python int too large to convert to SQLite INTEGER"), so its worker never committed again and
other kiosks' readings stopped being receipted. The contract is being narrowed; these tests are about
the next gap between it and storage, whatever it is: the store finds the envelopes at fault, stores the
rest once, and ingest rejects them so their kiosk stops resending.

Poisons are built with pydantic's `model_construct`, past the contract, so the tests hold whatever the
contract refuses tomorrow (it now refuses 2^64 and year 1 itself). End to end, the gap is a store narrower
than the contract, and a real message whose dead letter SQLite could not hold (it stalled ingest the same way).
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import BaseModel

import hub.ingest
from device.protocol import ClockInfo, Receipt, Topics, new_message_id, parse_receipt
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import AnyEnvelope, build_envelope, encode
from device.simulate import single_reading
from hub.db import Location, PostgresLocation
from hub.store import Accepted, DeadLetter, HubStore
from hub.uplink import Sorted, classify
from tests.harness import hub_rows, ingest_thread, wait_until

M = TypeVar("M", bound=BaseModel)
KIOSK_A, KIOSK_B = "k-a", "k-b"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RECEIVED = 1_800_000_000.0
TOO_BIG = 2**64  # one past SQLite's INTEGER
TOO_BIG_REASON = "could not be stored: Python int too large to convert to SQLite INTEGER"
YEAR_ONE = "0001-01-01T00:00:00+01:00"  # valid ISO-8601 with an offset; in UTC it would be year 0
YEAR_ONE_REASON = "could not be stored: date value out of range"
STATUS = {"software_version": "1", "outbox_backlog": 3, "outbox_capacity": 10**6, "uptime_s": 1.0}
CASE = {
    "case": "6d1f7e8a-3b7e-4e53-9d39-1f0c2a7c0b11",
    "subject": "P1",
    "questionnaire": {"id": "general-intake", "version": 1},
    "created": "2026-11-27T09:00:00Z",
}


def envelope(kind: str, kiosk: str, seq: int, payload: Any) -> AnyEnvelope:
    return build_envelope(
        kind, message_id=new_message_id(), kiosk=kiosk, seq=seq, clock=ClockInfo(time=NOW), payload=payload
    )


def reading(kiosk: str, seq: int, rng: random.Random) -> AnyEnvelope:
    return envelope("observations", kiosk, seq, single_reading(rng, NOW))


def accepted(env: AnyEnvelope, raw: bytes | None = None) -> Accepted:
    return Accepted(env, encode(env) if raw is None else raw, RECEIVED, Topics.uplink(env.kiosk, env.kind))


def constructed(model: M, **changes: Any) -> M:
    """`model` with `changes`, not validated: what a gap in the contract would let through."""
    return type(model).model_construct(**{**dict(model), **changes})


def with_first_observation(env: Any, **changes: Any) -> Any:
    first = constructed(env.payload.observations[0], **changes)
    return constructed(env, payload=constructed(env.payload, observations=[first]))


def year_one_raw(env: AnyEnvelope) -> bytes:
    """The bytes a kiosk would send for `env` with its reading's time in year 1 (encode cannot write it)."""
    doc = json.loads(encode(env))
    doc["payload"]["observations"][0]["effective"] = YEAR_ONE
    return json.dumps(doc, separators=(",", ":")).encode()


def poison_seq(rng: random.Random) -> Accepted:
    return accepted(constructed(reading(KIOSK_A, 3, rng), seq=TOO_BIG))


def poison_device_sequence(rng: random.Random) -> Accepted:
    return accepted(with_first_observation(reading(KIOSK_A, 3, rng), device_sequence=TOO_BIG))


def poison_outbox_backlog(_rng: random.Random) -> Accepted:
    status: Any = envelope("status", KIOSK_A, 3, STATUS)
    return accepted(constructed(status, payload=constructed(status.payload, outbox_backlog=TOO_BIG)))


def poison_questionnaire_version(_rng: random.Random) -> Accepted:
    case: Any = envelope("case", KIOSK_A, 3, CASE)
    version = constructed(case.payload.questionnaire, version=TOO_BIG)
    return accepted(constructed(case, payload=constructed(case.payload, questionnaire=version)))


def poison_year_one(rng: random.Random) -> Accepted:
    env = reading(KIOSK_A, 3, rng)
    effective = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    return accepted(with_first_observation(env, effective=effective), year_one_raw(env))


# PostgreSQL's own words for the same failures (its primary message, what it quotes left out).
PG_REASONS = {
    "seq 2^64": 'could not be stored: value "…" is out of range for type bigint',  # as COPY says it
    "device_sequence 2^64": 'could not be stored: value "…" is out of range for type bigint',
    "status outbox_backlog 2^64": "could not be stored: bigint out of range",
    "case questionnaire version 2^64": "could not be stored: bigint out of range",
    "reading time in year 1": YEAR_ONE_REASON,
}


def too_big_reason(where: Location) -> str:
    return PG_REASONS["seq 2^64"] if isinstance(where, PostgresLocation) else TOO_BIG_REASON


POISONS: dict[str, tuple[Callable[[random.Random], Accepted], str]] = {
    "seq 2^64": (poison_seq, TOO_BIG_REASON),
    "device_sequence 2^64": (poison_device_sequence, TOO_BIG_REASON),
    "status outbox_backlog 2^64": (poison_outbox_backlog, TOO_BIG_REASON),
    "case questionnaire version 2^64": (poison_questionnaire_version, TOO_BIG_REASON),
    "reading time in year 1": (poison_year_one, YEAR_ONE_REASON),
}


def message_ids(store: HubStore) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT id FROM messages ORDER BY id")]


def dead_letters(store: HubStore) -> list[tuple[Any, ...]]:
    return list(store.conn.execute("SELECT message_id, kiosk_hint, reason, count, raw FROM dead_letters"))


# -- the store ---------------------------------------------------------------------------------------


def test_a_poison_envelope_is_dead_lettered_and_the_rest_of_its_batch_stored_once(hub_database: Location) -> None:
    store = HubStore(hub_database)
    TOO_BIG_REASON = too_big_reason(hub_database)
    rng = random.Random(1)
    goods = [reading(KIOSK_A, 1, rng), reading(KIOSK_B, 1, rng), reading(KIOSK_A, 2, rng)]
    poison = poison_seq(rng)
    goods += [reading(KIOSK_B, 2, rng), reading(KIOSK_A, 4, rng)]
    batch = [accepted(e) for e in goods[:3]] + [poison] + [accepted(e) for e in goods[3:]]
    good_ids = sorted(e.id for e in goods)

    result = store.commit_batch(batch, [])

    assert sorted(result.new) == good_ids and result.duplicates == [] and result.conflicts == []
    assert [(p.item, p.reason) for p in result.poisoned] == [(poison, TOO_BIG_REASON)]  # for the caller to reject
    assert message_ids(store) == good_ids
    assert store.counts()["observations"] == len(goods)
    assert dead_letters(store) == [(poison.envelope.id, KIOSK_A, TOO_BIG_REASON, 1, poison.raw)]
    assert [(k["id"], k["last_seq"]) for k in store.kiosks()] == [(KIOSK_A, 4), (KIOSK_B, 2)]

    again = store.commit_batch(batch, [])  # the broker redelivers it all, or the kiosks resend

    assert again.new == [] and sorted(again.duplicates) == good_ids
    assert [p.item for p in again.poisoned] == [poison]
    assert message_ids(store) == good_ids and store.counts()["observations"] == len(goods)
    assert dead_letters(store) == [(poison.envelope.id, KIOSK_A, TOO_BIG_REASON, 2, poison.raw)]
    store.close()


@pytest.mark.parametrize("name", list(POISONS))
def test_each_way_an_envelope_can_fail_the_store_is_set_aside_alone(hub_database: Location, name: str) -> None:
    make, reason = POISONS[name]
    if isinstance(hub_database, PostgresLocation):
        reason = PG_REASONS[name]
    store = HubStore(hub_database)
    rng = random.Random(2)
    goods = [reading(KIOSK_A, 1, rng), envelope("status", KIOSK_A, 2, STATUS), reading(KIOSK_B, 1, rng)]
    poison = make(rng)

    result = store.commit_batch([accepted(goods[0]), poison, *map(accepted, goods[1:])], [])

    assert sorted(result.new) == sorted(e.id for e in goods)
    assert [(p.item, p.reason) for p in result.poisoned] == [(poison, reason)]
    assert message_ids(store) == sorted(e.id for e in goods)
    assert dead_letters(store) == [(poison.envelope.id, KIOSK_A, reason, 1, poison.raw)]
    store.close()


def test_splitting_a_batch_keeps_duplicates_and_conflicts_as_the_whole_batch_would(tmp_path: Path) -> None:
    """Good envelopes land in different parts of a split batch; each is still written exactly once."""
    rng = random.Random(3)
    earlier = reading(KIOSK_A, 1, rng)
    a, b, c, d = (reading(KIOSK_B, seq, rng) for seq in range(1, 5))
    b_other = accepted(b, encode(b).replace(b'"seq":2', b'"seq":2 '))  # b's id, other bytes
    poison = poison_seq(rng)
    batch = [accepted(a), accepted(earlier), accepted(b), poison, accepted(a), accepted(c), b_other, accepted(d)]

    outcomes = []
    for folder, items in (("with", batch), ("without", [i for i in batch if i is not poison])):
        store = HubStore(tmp_path / folder / "hub.db")
        store.commit_batch([accepted(earlier)], [])
        result = store.commit_batch(items, [])
        outcomes.append(
            (sorted(result.new), sorted(result.duplicates), [c.raw for c in result.conflicts], store.counts())
        )
        assert store.raw_messages(KIOSK_B) == [(e.seq, encode(e).decode()) for e in (a, b, c, d)]
        store.close()

    with_poison, without = outcomes
    assert (
        with_poison[:3] == without[:3] == (sorted([a.id, b.id, c.id, d.id]), sorted([a.id, earlier.id]), [b_other.raw])
    )
    counts_with, counts_without = with_poison[3], without[3]
    assert counts_with == {**counts_without, "dead_letters": counts_without["dead_letters"] + 1}


def test_finding_one_poison_in_a_full_batch_takes_a_few_attempts_and_one_commit(tmp_path: Path) -> None:
    """The split is paid for only by a batch that failed, and then cheaply: halving, one fsync."""
    store = HubStore(tmp_path / "hub.db")
    rng = random.Random(4)
    batch = [accepted(reading(KIOSK_B, seq, rng)) for seq in range(1, 1001)]
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)

    store.commit_batch(batch[:500], [])
    assert "SAVEPOINT ingest_part" not in statements and statements.count("COMMIT") == 1  # the common path
    statements.clear()

    batch[617] = poison_seq(rng)
    result = store.commit_batch(batch, [])

    assert [p.item for p in result.poisoned] == [batch[617]]
    assert len(result.new) == 499 and len(result.duplicates) == 500
    assert statements.count("SAVEPOINT ingest_part") <= 2 * math.ceil(math.log2(len(batch))) + 1
    assert statements.count("COMMIT") == 1
    store.close()


def test_a_dead_letter_that_sqlite_could_not_hold_is_stored_escaped(tmp_path: Path) -> None:
    """Dead-lettering is the last resort for a bad message, so it must not fail on the message too."""
    store = HubStore(tmp_path / "hub.db")
    good = reading(KIOSK_A, 1, random.Random(5))
    odd = DeadLetter.build(
        Topics.uplink(KIOSK_A, "observations"),
        "invalid \ud800",
        b"{}",
        RECEIVED,
        kiosk_hint="k\udcff",
        message_id="\ud800",
    )
    # Real bytes with the same trouble: JSON spells a lone surrogate "\ud800"; no outbox can hold such an id.
    into = Sorted()
    classify(Topics.uplink(KIOSK_A, "observations"), b'{"id":"\\ud800","kiosk":"k-a"}', RECEIVED, into)
    assert into.rejected == {}

    result = store.commit_batch([accepted(good)], [odd, *into.dead])

    assert result.new == [good.id]
    letters = {r[2]: r[:2] for r in dead_letters(store)}
    assert letters["invalid \\ud800"] == ("\\ud800", "k\\udcff")
    assert [r for r in letters if r.startswith("invalid envelope: ")] != []
    store.close()


def test_a_database_failure_is_still_raised_for_the_caller_to_retry(tmp_path: Path) -> None:
    """Locked, full or failing disks are not the messages' fault: nothing may be dead-lettered for them."""

    class FailingDisk(HubStore):
        @staticmethod
        def _insert_messages(conn: sqlite3.Connection, rows: Any, committed_at: float) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    store = FailingDisk(tmp_path / "hub.db")
    with pytest.raises(sqlite3.OperationalError):
        store.commit_batch([accepted(reading(KIOSK_A, 1, random.Random(6)))], [])
    assert store.counts() == {"kiosks": 0, "messages": 0, "observations": 0, "dead_letters": 0}
    store.close()


# -- ingest, through a real Mosquitto --------------------------------------------------------------

SEAM_SEQ = 2**53 - 1  # within any contract; the store below pretends its storage cannot hold it


class NarrowStore(HubStore):
    """A store narrower than the contract: how the next gap between the two would look to ingest."""

    @staticmethod
    def _insert_messages(conn: sqlite3.Connection, rows: Any, committed_at: float) -> None:
        if any(head[2] == SEAM_SEQ for head, _, _ in rows):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        HubStore._insert_messages(conn, rows, committed_at)


def mqtt_client(url: BrokerUrl, name: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.connect(url.host, url.port)
    c.loop_start()
    return c


def receipts_of(url: BrokerUrl, kiosks: list[str]) -> tuple[mqtt.Client, dict[str, list[Receipt]]]:
    """Every receipt the hub sends these kiosks, from the moment this returns."""
    got: dict[str, list[Receipt]] = {k: [] for k in kiosks}
    subscribed = threading.Event()
    listener = mqtt_client(url, "receipts")
    listener.on_message = lambda _c, _u, m: got[m.topic.split("/")[1]].append(parse_receipt(bytes(m.payload)))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.subscribe([(Topics.receipt(k), 1) for k in kiosks])
    assert subscribed.wait(5), "the receipt listener was not subscribed"
    return listener, got


def receipted(receipts: list[Receipt]) -> set[str]:
    return {i for r in receipts for i in r.accepted}


@pytest.mark.parametrize("poison", ["seam: seq the store cannot hold", "dead letter: id with a lone surrogate"])
def test_a_message_the_hub_cannot_store_is_rejected_and_other_kiosks_go_on(
    tmp_path: Path, broker_url: BrokerUrl, monkeypatch: pytest.MonkeyPatch, poison: str
) -> None:
    db = tmp_path / "hub.db"
    rng = random.Random(7)
    topic = Topics.uplink(KIOSK_A, "observations")
    if poison.startswith("seam"):
        monkeypatch.setattr(hub.ingest, "HubStore", NarrowStore)
        poison_env = reading(KIOSK_A, SEAM_SEQ, rng)
        raw, expected = encode(poison_env), TOO_BIG_REASON
    else:
        raw, expected = b'{"id":"\\ud800","kiosk":"k-a"}', None  # dead-lettered as invalid, with no id to reject
    goods = [reading(KIOSK_B, seq, rng) for seq in range(1, 21)]
    listener, receipts = receipts_of(broker_url, [KIOSK_A, KIOSK_B])

    with ingest_thread(db, broker_url) as worker:
        kiosks = mqtt_client(broker_url, "kiosks")
        kiosks.publish(topic, raw, qos=1).wait_for_publish(5)
        for env in goods:  # after the poison, from one connection: the broker keeps the order
            kiosks.publish(Topics.uplink(KIOSK_B, "observations"), encode(env), qos=1).wait_for_publish(5)
        wait_until(lambda: receipted(receipts[KIOSK_B]) == {e.id for e in goods}, 10, "the other kiosk's receipts")
        if expected is not None:
            wait_until(lambda: [x for r in receipts[KIOSK_A] for x in r.rejected] != [], 5, "the poison's rejection")
        # One more of the poison's own kiosk after it: the worker goes on for that kiosk too.
        last = reading(KIOSK_A, 2, rng)
        kiosks.publish(Topics.uplink(KIOSK_A, "observations"), encode(last), qos=1).wait_for_publish(5)
        wait_until(lambda: last.id in receipted(receipts[KIOSK_A]), 10, "a later reading of the poison's kiosk")
        kiosks.loop_stop()
        assert worker.stats.commit_failures == 0
        assert worker.stats.dead_letters == 1
    listener.loop_stop()

    assert [s for s, _ in hub_rows(db, KIOSK_B)] == list(range(1, 21))
    assert [s for s, _ in hub_rows(db, KIOSK_A)] == [2]
    rejected = [(x.id, x.reason) for r in receipts[KIOSK_A] for x in r.rejected]
    store = HubStore(db)
    (letter,) = store.dead_letters()
    store.close()
    assert letter["kiosk_hint"] == KIOSK_A and letter["raw"] == raw
    if expected is None:
        assert rejected == [] and letter["reason"].startswith("invalid envelope: ") and letter["message_id"] is None
    else:
        assert rejected == [(poison_env.id, expected)]
        assert (letter["message_id"], letter["reason"]) == (poison_env.id, expected)
