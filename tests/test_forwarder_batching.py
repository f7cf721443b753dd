"""How the forwarder packs outbox items into MQTT messages and when a partial batch may leave."""

from __future__ import annotations

from device.forwarder import pack, sendable
from device.outbox import OutboxItem


def items(*sizes: int) -> list[OutboxItem]:
    return [OutboxItem(i + 1, f"id-{i}", "observations", b"x" * size) for i, size in enumerate(sizes)]


def test_pack_keeps_order_and_limits() -> None:
    messages = pack(items(100, 100, 100, 100, 100), max_items=2, max_bytes=10_000)
    assert [[i.seq for i in m] for m in messages] == [[1, 2], [3, 4], [5]]
    by_bytes = pack(items(400, 400, 400), max_items=500, max_bytes=900)
    assert [len(m) for m in by_bytes] == [2, 1]
    assert [len(m) for m in pack(items(5000), max_items=500, max_bytes=900)] == [1]  # an oversized item alone


def test_a_lone_partial_batch_leaves_at_once_on_an_idle_link() -> None:
    messages = pack(items(300), max_items=500, max_bytes=256 * 1024)
    assert sendable(messages, 500, 256 * 1024, in_flight=False) == messages


def test_a_partial_batch_waits_while_anything_is_in_flight() -> None:
    messages = pack(items(300, 300), max_items=500, max_bytes=256 * 1024)
    assert sendable(messages, 500, 256 * 1024, in_flight=True) == []


def test_full_batches_go_and_only_the_partial_tail_waits() -> None:
    messages = pack(items(*[100] * 7), max_items=3, max_bytes=256 * 1024)
    sent = sendable(messages, 3, 256 * 1024, in_flight=False)
    assert [len(m) for m in sent] == [3, 3]  # the seventh item waits to grow into a batch


def test_a_photo_chunk_is_a_full_message_and_is_pipelined() -> None:
    chunk = 175_000  # one base64 attachment chunk: one item, but most of a message's bytes
    messages = pack(items(chunk, chunk, chunk), max_items=500, max_bytes=256 * 1024)
    assert [len(m) for m in messages] == [1, 1, 1]
    assert sendable(messages, 500, 256 * 1024, in_flight=True) == messages
