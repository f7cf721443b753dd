"""Password hashing with argon2id (argon2-cffi's RFC 9106 defaults) and a length-based policy.

Length, not composition rules: NIST SP 800-63B asks for at least 8 characters and advises
against complexity rules; clinical accounts get 12. A hash made with older parameters is
re-hashed at the next successful login.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256  # argon2 takes any length; a cap keeps a hostile login from costing megabytes of hashing

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so an unknown email costs the same time as a wrong password.

    Made on first use, not at import: every process that imports the hub (each ingest worker, each `hub`
    command) paid a quarter of a second for it. The web app makes it when it is created (`warm`), so no
    login pays for it either.
    """
    return _hasher.hash("not a real password, only timing")


def warm() -> None:
    _dummy_hash()


class PasswordPolicyError(ValueError):
    pass


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"the password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"the password must be at most {MAX_LENGTH} characters long")


def hash_password(password: str) -> str:
    check_policy(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when it matches; always spends one argon2 verification, also for unknown accounts."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
