"""Checking a patient in at the kiosk, offline: against the roster the hub last sent.

The roster names every check-in code of the kiosk's clinic, with an argon2id hash for patients
who have a kiosk PIN. A PIN at a shared kiosk guards against mix-ups and casual misuse, so
wrong PINs lock the code for a while; it is not a secret that survives a stolen disk.

Before any roster has arrived (a new kiosk that has never been online) a well-formed code is
accepted as typed: its readings reach the hub, whose attribution queue holds what it cannot match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from device.protocol.downlink import SUBJECT_PATTERN, KioskSetupBody, RosterEntry

MAX_PIN_FAILURES = 3
LOCK_S = 300.0
_CODE = re.compile(SUBJECT_PATTERN)
_HASHER = PasswordHasher()

Outcome = Literal["ok", "need_pin", "unknown_code", "bad_code", "wrong_pin", "locked"]


@dataclass(frozen=True)
class CheckInResult:
    outcome: Outcome
    code: str = ""


def normalise_code(text: str) -> str:
    """What a person typed or a card scanner sent, without spaces."""
    return "".join(text.split())


def find(setup: KioskSetupBody, code: str) -> RosterEntry | None:
    """The exact code, else the one code that differs only in letter case (people type n100 for N100)."""
    exact = next((p for p in setup.patients if p.code == code), None)
    if exact is not None:
        return exact
    folded = [p for p in setup.patients if p.code.casefold() == code.casefold()]
    return folded[0] if len(folded) == 1 else None


@dataclass
class Gate:
    """Codes and PINs, with a lock after repeated wrong PINs (per code, in memory: a restart clears it)."""

    failures: dict[str, list[float]] = field(default_factory=dict)
    locked_until: dict[str, float] = field(default_factory=dict)

    def check(  # noqa: PLR0911 - one exit per outcome
        self, setup: KioskSetupBody | None, typed: str, pin: str | None, now: float
    ) -> CheckInResult:
        code = normalise_code(typed)
        if not _CODE.match(code):
            return CheckInResult("bad_code")
        if setup is None:
            return CheckInResult("ok", code)
        entry = find(setup, code)
        if entry is None:
            return CheckInResult("unknown_code")
        code = entry.code
        if self._locked(code, now):
            return CheckInResult("locked", code)
        if entry.pin_hash is None and not setup.pin_required:
            return CheckInResult("ok", code)
        if pin is None:
            return CheckInResult("need_pin", code)
        if entry.pin_hash is not None and _verify(entry.pin_hash, pin):
            self.failures.pop(code, None)
            return CheckInResult("ok", code)
        # A clinic that requires PINs but has none on file for this patient: staff must set one first.
        recent = [t for t in self.failures.get(code, []) if now - t < LOCK_S] + [now]
        self.failures[code] = recent
        if len(recent) >= MAX_PIN_FAILURES:
            # Locked for the full time from the last wrong PIN, as the screen says.
            self.locked_until[code] = now + LOCK_S
            self.failures.pop(code, None)
            return CheckInResult("locked", code)
        return CheckInResult("wrong_pin", code)

    def _locked(self, code: str, now: float) -> bool:
        until = self.locked_until.get(code)
        if until is not None and now >= until:
            del self.locked_until[code]
            return False
        return until is not None


def _verify(pin_hash: str, pin: str) -> bool:
    try:
        return _HASHER.verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False
