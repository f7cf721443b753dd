"""What one uplink MQTT message becomes: envelopes to store, dead letters, and rejections to tell the kiosk.

A pure function of the topic and the bytes, kept apart from the socket loop (hub/ingest.py) so that
every way a message can be wrong is tested, and fuzzed, without a broker. It never raises: whatever
arrives is either accepted or dead-lettered with a reason a person can read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from device.protocol import EnvelopeError, Rejection, Topics, parse_envelope
from device.protocol.topics import BATCH
from hub.store import Accepted, DeadLetter


@dataclass
class Sorted:
    """The outcome of one or more messages, gathered for one transaction."""

    accepted: list[tuple[str, Accepted]] = field(default_factory=list)  # (topic's kiosk, item)
    dead: list[DeadLetter] = field(default_factory=list)
    rejected: dict[str, list[Rejection]] = field(default_factory=lambda: defaultdict(list))

    def __len__(self) -> int:
        return len(self.accepted) + len(self.dead)


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 1024 * 1024
    dead_letter_keep_bytes: int = 64 * 1024


def classify(topic: str, payload: bytes, now: float, into: Sorted, limits: Limits = Limits()) -> int:
    """Sort one uplink message into `into`; returns how many envelopes it held (its lines, for a batch).

    Rejections go to the kiosk of the topic (the broker's ACLs make that the publisher), and only
    for ids it plainly claims as its own, so a kiosk stops resending what the hub will never store.
    """

    def dead(reason: str, raw: bytes, kiosk: str | None = None, message_id: str | None = None) -> None:
        into.dead.append(
            DeadLetter.build(
                topic,
                reason,
                raw,
                now,
                keep_bytes=limits.dead_letter_keep_bytes,
                kiosk_hint=kiosk,
                message_id=message_id,
            )
        )

    parsed = Topics.parse_uplink(topic)
    if parsed is None or not Topics.is_valid_kiosk_id(parsed.kiosk):
        dead(f"topic {topic!r} is not kiosk/{{kiosk-id}}/up/{{kind}}", payload)
        return 0
    if len(payload) > limits.max_payload_bytes:
        dead(
            f"payload of {len(payload)} bytes exceeds the hub's limit of {limits.max_payload_bytes}",
            payload,
            parsed.kiosk,
        )
        return 0
    kiosk = parsed.kiosk
    lines = payload.split(b"\n") if parsed.leaf == BATCH else [payload]
    envelopes = 0
    for line in lines:
        if parsed.leaf == BATCH and not line.strip():
            continue
        envelopes += 1
        try:
            env = parse_envelope(line)
        except EnvelopeError as exc:
            message_id = _claimed_id(line, kiosk)
            dead(f"invalid envelope: {exc}", line, kiosk, message_id)
            if message_id is not None:
                into.rejected[kiosk].append(Rejection(id=message_id, reason=str(exc)[:1000]))
            continue
        if env.kiosk != kiosk:
            reason = f"envelope kiosk {env.kiosk!r} does not match topic kiosk {kiosk!r}"
            dead(reason, line, kiosk, env.id)
            # Told to the publisher (the topic's kiosk), e.g. one whose id was changed with items
            # still queued, so it stops resending; it only affects ids in that kiosk's own outbox.
            into.rejected[kiosk].append(Rejection(id=env.id, reason=reason))
            continue
        if parsed.leaf not in (BATCH, env.kind):
            dead(f"envelope kind {env.kind!r} published on topic for {parsed.leaf!r}", line, kiosk, env.id)
            into.rejected[kiosk].append(
                Rejection(id=env.id, reason=f"kind {env.kind!r} sent on the {parsed.leaf!r} topic")
            )
            continue
        into.accepted.append((kiosk, Accepted(env, line, now, topic)))
    return envelopes


def _claimed_id(raw: bytes, topic_kiosk: str) -> str | None:
    """The id an invalid envelope claims, if it plainly belongs to the kiosk of its topic."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    mid, kiosk = data.get("id"), data.get("kiosk")
    if isinstance(mid, str) and len(mid) <= 64 and kiosk == topic_kiosk and _is_text(mid):
        return mid
    return None


def _is_text(value: str) -> bool:
    """False for a lone surrogate (JSON can spell one, \\ud800): no outbox holds such an id, no receipt can carry it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
