"""Which patient a reading belongs to, decided once per reading, after ingest has committed it.

Ingest stays a plain append (its speed is the spine's); this pass runs beside it and
reads only the rows not yet decided (a partial index). The decision itself is a pure
function. A reading is shown under a patient only when it was attributed with certainty:

- the kiosk's check-in (`subject`) names a patient of the kiosk's clinic, or
- the device's user slot (shared cuff or scale) is mapped to a patient,
- and the two do not disagree.

Anything else waits in the clinic's queue until staff assign or discard it. A kiosk that
belongs to no clinic yet keeps its readings undecided-but-parked (`no-clinic`) until an
operator assigns it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub import kiosk_setup
from hub.cases import store as cases
from hub.db import Connection, immediate
from hub.triage import alerts as triage

UNKNOWN_USER = 255  # the Bluetooth SIG's "unknown user" index


@dataclass(frozen=True)
class Decision:
    state: str  # attributed | queued | no-clinic
    patient_id: str | None
    how: str | None  # check-in | device-user
    note: str | None


def decide(  # noqa: PLR0911 - one return per rule reads best
    *,
    clinic_id: str | None,
    subject: str | None,
    device_id: str,
    device_user: int | None,
    patient_by_code: Mapping[str, str],
    patient_by_slot: Mapping[tuple[str, int], str],
) -> Decision:
    if clinic_id is None:
        return Decision("no-clinic", None, None, "the kiosk belongs to no clinic yet")
    by_checkin = patient_by_code.get(subject) if subject else None
    slot = device_user if device_user is not None and device_user != UNKNOWN_USER else None
    by_slot = patient_by_slot.get((device_id, slot)) if slot is not None else None
    if subject and by_checkin is None:
        return Decision("queued", None, None, "the check-in code is not a patient of this clinic")
    if by_checkin and by_slot and by_checkin != by_slot:
        return Decision("queued", None, None, f"the check-in and the device's user slot {slot} name different patients")
    if by_checkin:
        return Decision("attributed", by_checkin, "check-in", None)
    if by_slot:
        return Decision("attributed", by_slot, "device-user", None)
    if slot is not None:
        return Decision("queued", None, None, f"user slot {slot} on this device is not mapped to a patient")
    if device_user == UNKNOWN_USER:
        return Decision("queued", None, None, "the device did not know which of its users this was")
    return Decision("queued", None, None, "taken without a check-in")


def _bump_patients(conn: Connection, latest: Mapping[str, tuple[int, str]]) -> None:
    for patient_id, (n, last) in latest.items():
        conn.execute(
            "UPDATE patients SET reading_count = reading_count + ?, "
            "last_reading_at = greatest(last_reading_at, ?) WHERE id = ?",
            (n, last, patient_id),
        )


def _tally(into: dict[str, tuple[int, str]], patient_id: str, effective: str) -> None:
    n, last = into.get(patient_id, (0, ""))
    into[patient_id] = (n + 1, max(last, effective))


def run_once(conn: Connection, now: float, limit: int = 5000) -> int:
    """Decide up to `limit` undecided readings in one transaction; returns how many were decided."""
    with immediate(conn):
        rows = conn.execute(
            "SELECT o.message_id, o.idx, o.subject, o.device_id, o.device_user, o.measured_ms, k.clinic_id, "
            "o.code, o.value, o.unit "
            "FROM observations o INDEXED BY observations_undecided LEFT JOIN kiosks k ON k.id = o.kiosk "
            "WHERE o.attribution IS NULL LIMIT ?",
            (limit,),
        ).fetchall()
        by_clinic: dict[str, list[tuple[str, int, str | None, str, int | None, int]]] = defaultdict(list)
        updates: list[tuple[object, ...]] = []
        measured = {(r[0], r[1]): (r[7], r[8], r[9]) for r in rows}
        attributed: list[triage.Reading] = []
        for message_id, idx, subject, device_id, device_user, measured_ms, clinic_id, *_ in rows:
            if clinic_id is None:
                updates.append(
                    ("no-clinic", None, None, None, "the kiosk belongs to no clinic yet", now, message_id, idx)
                )
            else:
                by_clinic[clinic_id].append((message_id, idx, subject, device_id, device_user, measured_ms))
        counts: dict[str, tuple[int, str]] = {}
        for clinic_id, items in by_clinic.items():
            codes = {subject for _, _, subject, _, _, _ in items if subject}
            devices = {device_id for _, _, _, device_id, user, _ in items if user is not None}
            patient_by_code = _lookup(
                conn, "SELECT code, id FROM patients WHERE clinic_id = ? AND code IN", clinic_id, codes
            )
            patient_by_slot: dict[tuple[str, int], str] = {}
            for start in range(0, len(devices), 400):
                chunk = sorted(devices)[start : start + 400]
                for device_id, user, patient_id in conn.execute(
                    "SELECT device_id, device_user, patient_id FROM device_user_slots "
                    f"WHERE clinic_id = ? AND device_id IN ({','.join('?' * len(chunk))})",
                    [clinic_id, *chunk],
                ):
                    patient_by_slot[(device_id, user)] = patient_id
            for message_id, idx, subject, device_id, device_user, measured_ms in items:
                d = decide(
                    clinic_id=clinic_id,
                    subject=subject,
                    device_id=device_id,
                    device_user=device_user,
                    patient_by_code=patient_by_code,
                    patient_by_slot=patient_by_slot,
                )
                updates.append((d.state, clinic_id, d.patient_id, d.how, d.note, now, message_id, idx))
                if d.patient_id is not None:
                    effective = triage.measured_at(measured_ms)  # on the hub's clock, not the kiosk's
                    _tally(counts, d.patient_id, effective)
                    code, value, unit = measured[(message_id, idx)]
                    attributed.append(triage.Reading(clinic_id, d.patient_id, code, value, unit, effective))
        conn.executemany(
            "UPDATE observations SET attribution = ?, clinic_id = ?, patient_id = ?, attribution_how = ?, "
            "attribution_note = ?, attributed_at = ? WHERE message_id = ? AND idx = ?",
            updates,
        )
        _bump_patients(conn, counts)
        # Triage sees a reading the moment it has a patient, in the same transaction.
        triage.on_attributed(conn, attributed, now)
        cases.attribute(conn)
    return len(rows)


def _lookup(conn: Connection, sql: str, clinic_id: str, keys: Iterable[str]) -> dict[str, str]:
    keys = sorted(keys)
    found: dict[str, str] = {}
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        found.update(conn.execute(f"{sql} ({','.join('?' * len(chunk))})", [clinic_id, *chunk]).fetchall())
    return found


def run_until_done(conn: Connection, now: float) -> int:
    total = 0
    while n := run_once(conn, now):
        total += n
    return total


def reconsider_code(conn: Connection, clinic_id: str, code: str) -> int:
    """A patient was just registered with this check-in code: readings queued for it get decided again."""
    cur = conn.execute(
        "UPDATE observations SET attribution = NULL WHERE clinic_id = ? AND attribution = 'queued' AND subject = ? "
        "AND attributed_by IS NULL",
        (clinic_id, code),
    )
    return cur.rowcount


def assign_kiosk(conn: Connection, kiosk_id: str, clinic_id: str, now: float) -> int:
    """Put a kiosk in a clinic; its parked readings are then decided for that clinic.

    The kiosk is sent the clinic's setup (roster, questionnaire) in the same transaction.
    """
    conn.execute(
        "INSERT INTO kiosks (id, first_seen, last_seen, clinic_id) VALUES (?,?,?,?) "
        "ON CONFLICT (id) DO UPDATE SET clinic_id = excluded.clinic_id",
        (kiosk_id, now, now, clinic_id),
    )
    cur = conn.execute(
        "UPDATE observations SET attribution = NULL WHERE kiosk = ? AND attribution = 'no-clinic'", (kiosk_id,)
    )
    kiosk_setup.refresh(conn, clinic_id, now)
    return cur.rowcount


Key = tuple[str, int]  # (message id, index in the message)


def parse_key(text: str) -> Key:
    """`<message id>:<index>`, as the queue page names a reading."""
    message_id, sep, idx = text.rpartition(":")
    if not sep or not message_id or not idx.isdigit():
        raise ValueError(f"{text!r} is not a reading key (<message id>:<index>)")
    return message_id, int(idx)


def assign(
    conn: Connection,
    clinic_id: str,
    keys: list[Key],
    *,
    patient_id: str,
    user_id: int,
    now: float,
    remember_slot: bool = False,
) -> int:
    """Staff attribute queued readings of their clinic to one of its patients; others' rows are never touched."""
    if (
        conn.execute("SELECT 1 FROM patients WHERE id = ? AND clinic_id = ?", (patient_id, clinic_id)).fetchone()
        is None
    ):
        raise ValueError("no such patient at this clinic")
    counts: dict[str, tuple[int, str]] = {}
    slots: dict[tuple[str, int], str] = {}  # (device id, user) -> the device's description
    attributed: list[triage.Reading] = []
    changed = 0
    for message_id, idx in keys:
        row = conn.execute(
            "SELECT measured_ms, device_id, device_user, device, code, value, unit FROM observations "
            "WHERE message_id = ? AND idx = ? "
            "AND clinic_id = ? AND attribution = 'queued'",
            (message_id, idx, clinic_id),
        ).fetchone()
        if row is None:
            continue
        conn.execute(
            "UPDATE observations SET attribution = 'attributed', patient_id = ?, attribution_how = 'staff', "
            "attributed_by = ?, attributed_at = ? WHERE message_id = ? AND idx = ?",
            (patient_id, user_id, now, message_id, idx),
        )
        effective = triage.measured_at(row[0])  # on the hub's clock, not the kiosk's
        _tally(counts, patient_id, effective)
        attributed.append(triage.Reading(clinic_id, patient_id, row[4], row[5], row[6], effective))
        changed += 1
        if remember_slot and row[2] is not None and row[2] != UNKNOWN_USER:
            slots[(row[1], row[2])] = row[3]
    _bump_patients(conn, counts)
    triage.on_attributed(conn, attributed, now)
    for (device_id, user), device in slots.items():
        conn.execute(
            "INSERT INTO device_user_slots (clinic_id, device_id, device_user, patient_id, device, created_by, "
            "created_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT (clinic_id, device_id, device_user) "
            "DO UPDATE SET patient_id = excluded.patient_id, "
            "device = excluded.device, created_by = excluded.created_by, created_at = excluded.created_at",
            (clinic_id, device_id, user, patient_id, device, user_id, now),
        )
        # The slot's other waiting readings are decided again, now with the mapping.
        conn.execute(
            "UPDATE observations SET attribution = NULL WHERE clinic_id = ? AND attribution = 'queued' "
            "AND device_id = ? AND device_user = ? AND subject IS NULL",
            (clinic_id, device_id, user),
        )
    return changed


def slots_of(conn: Connection, clinic_id: str, patient_id: str) -> list[dict[str, object]]:
    """The shared-device user slots mapped to a patient, with the device as it was when the slot was mapped."""
    rows = conn.execute(
        "SELECT device_id, device_user, created_at, device FROM device_user_slots "
        "WHERE clinic_id = ? AND patient_id = ? ORDER BY device_id, device_user",
        (clinic_id, patient_id),
    )
    return [{"device_id": r[0], "device_user": r[1], "created_at": r[2], "device": r[3]} for r in rows]


def unmap_slot(conn: Connection, clinic_id: str, patient_id: str, device_id: str, device_user: int) -> bool:
    """Readings already attributed stay; later readings from the slot wait in the queue again."""
    cur = conn.execute(
        "DELETE FROM device_user_slots WHERE clinic_id = ? AND patient_id = ? AND device_id = ? AND device_user = ?",
        (clinic_id, patient_id, device_id, device_user),
    )
    return cur.rowcount == 1


def discard(conn: Connection, clinic_id: str, keys: list[Key], *, reason: str, user_id: int, now: float) -> int:
    changed = 0
    for message_id, idx in keys:
        cur = conn.execute(
            "UPDATE observations SET attribution = 'discarded', attribution_how = 'staff', attribution_note = ?, "
            "attributed_by = ?, attributed_at = ? WHERE message_id = ? AND idx = ? AND clinic_id = ? "
            "AND attribution = 'queued'",
            (reason, user_id, now, message_id, idx, clinic_id),
        )
        changed += cur.rowcount
    return changed


def queue(conn: Connection, clinic_id: str, *, limit: int = 100, offset: int = 0) -> list[dict[str, object]]:
    cols = [
        "message_id", "idx", "kiosk", "code", "value", "unit", "effective", "device", "subject",
        "device_user", "attribution_note",
    ]  # fmt: skip
    cur = conn.execute(
        f"SELECT {', '.join(cols)} FROM observations INDEXED BY observations_queue "
        "WHERE clinic_id = ? AND attribution = 'queued' ORDER BY effective DESC LIMIT ? OFFSET ?",
        (clinic_id, limit, offset),
    )
    return [dict(zip(cols, r, strict=True)) for r in cur]


def queue_size(conn: Connection, clinic_id: str) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM observations INDEXED BY observations_queue "
            "WHERE clinic_id = ? AND attribution = 'queued'",
            (clinic_id,),
        ).fetchone()[0]
    )
