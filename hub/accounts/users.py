"""Clinics and the people who work in them (providers and clinic admins)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hub.accounts.passwords import hash_password
from hub.db import Connection, IntegrityError

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


def create_clinic(conn: Connection, clinic_id: str, name: str, now: float) -> None:
    if not CLINIC_ID_PATTERN.match(clinic_id):
        raise AccountError(f"clinic id {clinic_id!r} must be lower-case letters, digits and dashes")
    if not name.strip():
        raise AccountError("the clinic needs a name")
    # ON CONFLICT rather than catching the error: on PostgreSQL a failed statement ends the caller's transaction.
    cur = conn.execute(
        "INSERT INTO clinics (id, name, created_at) VALUES (?,?,?) ON CONFLICT (id) DO NOTHING",
        (clinic_id, name.strip(), now),
    )
    if cur.rowcount != 1:
        raise AccountError(f"clinic {clinic_id!r} exists already")


def clinic_name(conn: Connection, clinic_id: str) -> str | None:
    row = conn.execute("SELECT name FROM clinics WHERE id = ?", (clinic_id,)).fetchone()
    return None if row is None else str(row[0])


def clinics(conn: Connection) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute("SELECT id, name FROM clinics ORDER BY id")]


def create_user(
    conn: Connection, *, clinic_id: str, email: str, name: str, role: str, password: str, now: float
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
    # Asked first, so that the usual case leaves the caller's transaction usable (a failed INSERT ends it on
    # PostgreSQL). The INSERT cannot say ON CONFLICT: the case-insensitive uniqueness is a COLLATE NOCASE
    # column on SQLite and an index on lower(email) on PostgreSQL, which no one conflict target names on both.
    if by_email(conn, email) is not None:
        raise AccountError(f"an account for {email!r} exists already")
    try:
        cur = conn.execute(
            "INSERT INTO users (clinic_id, email, name, role, password_hash, created_at) VALUES (?,?,?,?,?,?) "
            "RETURNING id",
            (clinic_id, email, name.strip(), role, password_hash, now),
        )
        (user_id,) = cur.fetchone()
    except IntegrityError:
        raise AccountError(f"an account for {email!r} exists already") from None
    return int(user_id)


def by_email(conn: Connection, email: str) -> User | None:
    """Case-insensitive, as the uniqueness is: lower() on both sides reads the same on both engines."""
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower(?)", (email.strip(),))
    return _user(row.fetchone())


def by_id(conn: Connection, user_id: int) -> User | None:
    return _user(conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone())


def in_clinic(conn: Connection, clinic_id: str) -> list[User]:
    rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE clinic_id = ? ORDER BY name", (clinic_id,))
    return [User(*r) for r in rows]


def set_password_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def set_totp(conn: Connection, user_id: int, secret: str | None, last_step: int | None = None) -> None:
    conn.execute("UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE id = ?", (secret, last_step, user_id))


def use_totp_step(conn: Connection, user_id: int, step: int) -> bool:
    """Record the step as used; False when another login used it (or a later one) first."""
    cur = conn.execute(
        "UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
        (step, user_id, step),
    )
    return cur.rowcount == 1


def set_disabled(conn: Connection, user_id: int, disabled_at: float | None) -> None:
    conn.execute("UPDATE users SET disabled_at = ? WHERE id = ?", (disabled_at, user_id))
