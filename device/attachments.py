"""Files (case photos) into the outbox: split into chunks, all stored in one transaction.

Each chunk is an ordinary outbox item, so a file rides the same durable path as a reading: a
transfer cut by a network loss or a reboot resumes with the chunks not yet receipted, and the
hub assembles the file and checks its SHA-256 before anyone can see it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

from device.outbox import Outbox
from device.protocol.envelope import ATTACHMENT_CHUNK_BYTES, MAX_ATTACHMENT_BYTES


def chunk_payloads(
    data: bytes, *, media_type: str = "image/jpeg", subject: str | None = None, attachment: str | None = None
) -> list[dict[str, object]]:
    """The `attachment` payloads for `data`, in order."""
    if not 0 < len(data) <= MAX_ATTACHMENT_BYTES:
        raise ValueError(f"an attachment is 1 to {MAX_ATTACHMENT_BYTES} bytes, this one {len(data)}")
    attachment = attachment or str(uuid.uuid4())
    digest = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + ATTACHMENT_CHUNK_BYTES] for i in range(0, len(data), ATTACHMENT_CHUNK_BYTES)]
    payloads: list[dict[str, object]] = []
    for index, piece in enumerate(pieces):
        payload: dict[str, object] = {
            "attachment": attachment,
            "media_type": media_type,
            "size": len(data),
            "sha256": digest,
            "index": index,
            "count": len(pieces),
            "data": base64.b64encode(piece).decode("ascii"),
        }
        if subject is not None:
            payload["subject"] = subject
        payloads.append(payload)
    return payloads


def enqueue_attachment(
    outbox: Outbox, data: bytes, *, media_type: str = "image/jpeg", subject: str | None = None
) -> str:
    """Store every chunk durably (all or none) and return the attachment's id."""
    payloads = chunk_payloads(data, media_type=media_type, subject=subject)
    outbox.enqueue_many([("attachment", p) for p in payloads])
    return str(payloads[0]["attachment"])
