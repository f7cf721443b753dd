"""Patients of a clinic. Every query takes the clinic: a patient of another clinic is simply not found
(`name_and_code` alone takes an id the caller already read from a record of the clinic).

A new patient is in the roster of the clinic's kiosks at once: `create` refreshes their setup
(`hub.kiosk_setup`) in the caller's transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from hub import kiosk_setup
from hub.db import Connection

CODE_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # the kiosk check-in code, as the wire contract's `subject`


class PatientError(ValueError):
    pass


@dataclass(frozen=True)
class Patient:
    id: str
    clinic_id: str
    code: str
    name: str
    birth_date: str | None
    reading_count: int
    last_reading_at: str | None
    has_kiosk_pin: bool  # whether a PIN is set; the hash itself stays in the database and the kiosk setup


_COLUMNS = "id, clinic_id, code, name, birth_date, reading_count, last_reading_at, kiosk_pin_hash IS NOT NULL"


def create(conn: Connection, clinic_id: str, *, code: str, name: str, birth_date: str | None, now: float) -> str:
    if not CODE_PATTERN.match(code):
        raise PatientError(f"check-in code {code!r} may hold only letters, digits and . _ : - (at most 64)")
    if not name.strip():
        raise PatientError("the patient needs a name")
    if birth_date:
        try:
            date.fromisoformat(birth_date)
        except ValueError:
            raise PatientError(f"birth date {birth_date!r} is not YYYY-MM-DD") from None
    patient_id = "pt_" + secrets.token_hex(8)
    # ON CONFLICT rather than catching the error: on PostgreSQL a failed statement ends the caller's transaction.
    cur = conn.execute(
        "INSERT INTO patients (id, clinic_id, code, name, birth_date, created_at) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT (clinic_id, code) DO NOTHING",
        (patient_id, clinic_id, code, name.strip(), birth_date or None, now),
    )
    if cur.rowcount != 1:
        raise PatientError(f"check-in code {code!r} is already used at this clinic")
    kiosk_setup.refresh(conn, clinic_id, now)
    return patient_id


def _patient(row: Sequence[Any]) -> Patient:
    id_, clinic_id, code, name, birth_date, reading_count, last_reading_at, has_pin = row
    return Patient(id_, clinic_id, code, name, birth_date, reading_count, last_reading_at, bool(has_pin))


def get(conn: Connection, clinic_id: str, patient_id: str) -> Patient | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM patients WHERE id = ? AND clinic_id = ?", (patient_id, clinic_id)
    ).fetchone()
    return None if row is None else _patient(row)


def name_and_code(conn: Connection, patient_id: str) -> tuple[str, str] | None:
    """A patient's (name, check-in code), for a page that shows whose record it is.

    By id alone: callers pass a patient id they took from a record of the principal's clinic (a case, a consult),
    which attribution only ever sets to a patient of that same clinic.
    """
    row = conn.execute("SELECT name, code FROM patients WHERE id = ?", (patient_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def names(conn: Connection, clinic_id: str) -> dict[str, str]:
    """Every patient of the clinic's name, by patient id."""
    return dict(conn.execute("SELECT id, name FROM patients WHERE clinic_id = ?", (clinic_id,)).fetchall())


def search(conn: Connection, clinic_id: str, q: str = "", *, offset: int = 0, limit: int = 50) -> list[Patient]:
    """By name or check-in code, alphabetical; `q` matches a prefix of either, or any part of the name.

    Case-insensitive on both engines: SQLite's LIKE ignores ASCII case, PostgreSQL's does not, so both sides
    are lowered.
    """
    if q.strip():
        like = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM patients "
            "WHERE clinic_id = ? AND (lower(name) LIKE lower(?) ESCAPE '\\' OR lower(code) LIKE lower(?) ESCAPE '\\') "
            "ORDER BY name, id LIMIT ? OFFSET ?",
            (clinic_id, f"%{like}%", f"{like}%", limit, offset),
        )
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM patients WHERE clinic_id = ? ORDER BY name, id LIMIT ? OFFSET ?",
            (clinic_id, limit, offset),
        )
    return [_patient(r) for r in rows]


def count(conn: Connection, clinic_id: str) -> int:
    return int(conn.execute("SELECT count(*) FROM patients WHERE clinic_id = ?", (clinic_id,)).fetchone()[0])
