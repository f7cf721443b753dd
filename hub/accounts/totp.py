"""TOTP second factor (RFC 6238 via pyotp) with the replay guard pyotp leaves to its caller.

A code is accepted for the current 30 s step or one step either side (clock skew of the
phone), and never twice: the step last used is stored, and only later steps pass.
"""

from __future__ import annotations

import hmac

import pyotp

ISSUER = "Telehealth hub"
STEP_S = 30


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def code_at(secret: str, when: float) -> str:
    """The code a phone would show at `when` (tests and the enrolment check use it)."""
    return pyotp.TOTP(secret).at(int(when))


def matching_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The time step `code` belongs to, or None when it is wrong, stale, or already used."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP_S)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
