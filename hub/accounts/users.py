"""Clinics and the people who work in them (providers and clinic admins)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Literal

from hub.accounts.passwords import hash_password

Role = Literal["provider", "clinic_admin"]
ROLES: tuple[Role, ...] = ("provider", "clinic_admin")
CLINIC_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$")


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    id: int
    clinic_id: str
    email: str
    name: str
    role: Role
    password_hash: str
    totp_secret: str | None
    totp_last_step: int | None
    disabled_at: float | None

    @property
    def is_admin(self) -> bool:
        return self.role == "clinic_admin"

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None


_USER_COLUMNS = "id, clinic_id, email, name, role, password_hash, totp_secret, totp_last_step, disabled_at"


def _user(row: tuple[object, ...] | None) -> User | None:
    return None if row is None else User(*row)  # type: ignore[arg-type]


def create_clinic(conn: sqlite3.Connection, clinic_id: str, name: str, now: float) -> None:
    if not CLINIC_ID_PATTERN.match(clinic_id):
        raise AccountError(f"clinic id {clinic_id!r} must be lower-case letters, digits and dashes")
    if not name.strip():
        raise AccountError("the clinic needs a name")
    try:
        conn.execute("INSERT INTO clinics (id, name, created_at) VALUES (?,?,?)", (clinic_id, name.strip(), now))
    except sqlite3.IntegrityError:
        raise AccountError(f"clinic {clinic_id!r} exists already") from None


def clinic_name(conn: sqlite3.Connection, clinic_id: str) -> str | None:
    row = conn.execute("SELECT name FROM clinics WHERE id = ?", (clinic_id,)).fetchone()
    return None if row is None else str(row[0])


def clinics(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute("SELECT id, name FROM clinics ORDER BY id")]


def create_user(
    conn: sqlite3.Connection, *, clinic_id: str, email: str, name: str, role: str, password: str, now: float
) -> int:
    email = email.strip()
    if not EMAIL_PATTERN.match(email):
        raise AccountError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not name.strip():
        raise AccountError("the account needs a name")
    if clinic_name(conn, clinic_id) is None:
        raise AccountError(f"no clinic {clinic_id!r}")
    password_hash = hash_password(password)
    try:
        cur = conn.execute(
            "INSERT INTO users (clinic_id, email, name, role, password_hash, created_at) VALUES (?,?,?,?,?,?)",
            (clinic_id, email, name.strip(), role, password_hash, now),
        )
    except sqlite3.IntegrityError:
        raise AccountError(f"an account for {email!r} exists already") from None
    assert cur.lastrowid is not None
    return cur.lastrowid


def by_email(conn: sqlite3.Connection, email: str) -> User | None:
    return _user(conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE email = ?", (email.strip(),)).fetchone())


def by_id(conn: sqlite3.Connection, user_id: int) -> User | None:
    return _user(conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone())


def in_clinic(conn: sqlite3.Connection, clinic_id: str) -> list[User]:
    rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE clinic_id = ? ORDER BY name", (clinic_id,))
    return [User(*r) for r in rows]


def set_password_hash(conn: sqlite3.Connection, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def set_totp(conn: sqlite3.Connection, user_id: int, secret: str | None, last_step: int | None = None) -> None:
    conn.execute("UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE id = ?", (secret, last_step, user_id))


def use_totp_step(conn: sqlite3.Connection, user_id: int, step: int) -> bool:
    """Record the step as used; False when another login used it (or a later one) first."""
    cur = conn.execute(
        "UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
        (step, user_id, step),
    )
    return cur.rowcount == 1


def set_disabled(conn: sqlite3.Connection, user_id: int, disabled_at: float | None) -> None:
    conn.execute("UPDATE users SET disabled_at = ? WHERE id = ?", (disabled_at, user_id))
