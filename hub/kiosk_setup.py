"""What each kiosk of a clinic needs to check patients in and take their cases offline, pushed to it.

A kiosk setup is the clinic's roster (every patient's check-in code, with the argon2id hash
of their kiosk PIN when they have one), whether a PIN is required, and the clinic's intake
questionnaire. It travels the durable downlink (`hub.downlink`): `refresh` runs in the same
transaction as any change to that content and queues a new setup for each of the clinic's
kiosks whose last one differs; the kiosk keeps the highest version it has seen.

The PIN itself is never stored, logged or audited: it is hashed here and only the hash leaves.
"""

from __future__ import annotations

import hashlib
import re

from argon2 import PasswordHasher, Type

from device.protocol.downlink import KioskSetupBody, RosterEntry
from hub import downlink
from hub.cases.questionnaire import GENERAL_INTAKE, Questionnaire
from hub.db import Connection

PIN_PATTERN = re.compile(r"[0-9]{4,8}")  # ASCII digits only: str.isdigit() would let "٣٤٥٦" through

PIN_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
"""argon2id cost of a kiosk PIN hash: OWASP's minimum (19 MiB, 2 passes, 1 lane).

A kiosk (a Raspberry Pi) verifies the hash offline while the patient waits, so it must be
quick there. A PIN only guards against mix-ups at a shared kiosk (checking in under someone
else's code); it cannot protect against someone holding a stolen disk, since 4 to 8 digits
fall to a brute force at any cost setting.
"""


class PinError(ValueError):
    pass


def hash_pin(pin: str) -> str:
    """The argon2id hash of a valid PIN (4 to 8 digits). Slow on purpose: call it outside a write transaction."""
    if not PIN_PATTERN.fullmatch(pin):
        raise PinError("a kiosk PIN is 4 to 8 digits (0-9), with no letters, spaces or other characters")
    return PIN_HASHER.hash(pin)


def _questionnaire(conn: Connection, clinic_id: str) -> Questionnaire:
    """The clinic's most recently added questionnaire, else the built-in general intake."""
    row = conn.execute(
        "SELECT definition FROM questionnaires WHERE clinic_id = ? ORDER BY created_at DESC, version DESC, id DESC "
        "LIMIT 1",
        (clinic_id,),
    ).fetchone()
    return GENERAL_INTAKE if row is None else Questionnaire.model_validate_json(row[0])


def build(conn: Connection, clinic_id: str, now: float) -> KioskSetupBody:
    """The clinic's setup as of now.

    `version` is `now` in milliseconds, but above every version already sent to a kiosk of
    the clinic (a clock set back, or two changes in one millisecond, still make it increase).
    """
    clinic = conn.execute("SELECT name, kiosk_pin_required FROM clinics WHERE id = ?", (clinic_id,)).fetchone()
    if clinic is None:
        raise LookupError(f"no clinic {clinic_id!r}")
    roster = [
        RosterEntry(code=code, pin_hash=pin_hash)
        for code, pin_hash in conn.execute(
            "SELECT code, kiosk_pin_hash FROM patients WHERE clinic_id = ? ORDER BY code", (clinic_id,)
        )
    ]
    (last,) = conn.execute(
        "SELECT max(s.version) FROM kiosk_setups s JOIN kiosks k ON k.id = s.kiosk WHERE k.clinic_id = ?",
        (clinic_id,),
    ).fetchone()
    return KioskSetupBody(
        clinic=clinic_id,
        clinic_name=clinic[0],
        version=max(int(now * 1000), (last or 0) + 1),
        pin_required=bool(clinic[1]),
        patients=roster,
        questionnaire=_questionnaire(conn, clinic_id),
    )


def digest(body: KioskSetupBody) -> str:
    """What a setup says, its version aside: equal digests mean nothing new for the kiosk."""
    return hashlib.sha256(body.model_dump_json(exclude={"version"}).encode()).hexdigest()


def refresh(conn: Connection, clinic_id: str, now: float) -> int:
    """Queue a new setup for each kiosk of the clinic whose last one says something else; returns how many.

    Call it inside the transaction that changed the roster, a PIN, the PIN rule, the
    questionnaire or a kiosk's clinic. A kiosk's undelivered older setup is superseded.
    """
    kiosks = [r[0] for r in conn.execute("SELECT id FROM kiosks WHERE clinic_id = ? ORDER BY id", (clinic_id,))]
    if not kiosks:
        return 0
    body = build(conn, clinic_id, now)
    content = digest(body)
    marks = ",".join("?" * len(kiosks))
    last = dict(conn.execute(f"SELECT kiosk, digest FROM kiosk_setups WHERE kiosk IN ({marks})", kiosks).fetchall())
    sent = 0
    for kiosk in kiosks:
        if last.get(kiosk) == content:
            continue
        message_id = downlink.enqueue_kiosk_setup(conn, kiosk, body, now)
        conn.execute(
            "INSERT INTO kiosk_setups (kiosk, clinic_id, digest, version, message_id, enqueued_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (kiosk) DO UPDATE SET clinic_id = excluded.clinic_id, "
            "digest = excluded.digest, version = excluded.version, message_id = excluded.message_id, "
            "enqueued_at = excluded.enqueued_at",
            (kiosk, clinic_id, content, body.version, message_id, now),
        )
        sent += 1
    return sent


def set_pin(conn: Connection, clinic_id: str, patient_id: str, pin_hash: str | None, now: float) -> int:
    """Give a patient of the clinic a kiosk PIN (a `hash_pin` hash), or none; the kiosks are refreshed.

    LookupError when the patient is not at this clinic. Returns how many kiosks got a new setup.
    """
    cur = conn.execute(
        "UPDATE patients SET kiosk_pin_hash = ? WHERE id = ? AND clinic_id = ?", (pin_hash, patient_id, clinic_id)
    )
    if cur.rowcount != 1:
        raise LookupError("no such patient at this clinic")
    return refresh(conn, clinic_id, now)


def set_pin_required(conn: Connection, clinic_id: str, required: bool, now: float) -> int:
    """Whether every patient must enter a PIN after their code at this clinic's kiosks; the kiosks are refreshed."""
    cur = conn.execute("UPDATE clinics SET kiosk_pin_required = ? WHERE id = ?", (int(required), clinic_id))
    if cur.rowcount != 1:
        raise LookupError(f"no clinic {clinic_id!r}")
    return refresh(conn, clinic_id, now)


def pin_required(conn: Connection, clinic_id: str) -> bool:
    row = conn.execute("SELECT kiosk_pin_required FROM clinics WHERE id = ?", (clinic_id,)).fetchone()
    return bool(row and row[0])


def without_pin(conn: Connection, clinic_id: str) -> int:
    """How many of the clinic's patients have no kiosk PIN (they cannot check in while one is required)."""
    return int(
        conn.execute(
            "SELECT count(*) FROM patients WHERE clinic_id = ? AND kiosk_pin_hash IS NULL", (clinic_id,)
        ).fetchone()[0]
    )
