"""One patient's visit at the kiosk: who, since when, what they did; and the rule that ends it.

A kiosk serves one patient at a time. The visit lives in memory only: the readings taken and
the photos of a case in progress go to the outbox when sent, and whatever was not sent is gone
when the visit ends, whether the patient pressed Finish, walked away, or the power went.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ShownReading:
    """A value on the patient's screen: already in the outbox, kept here only to show it."""

    code: str
    value: float
    unit: str
    device: str
    step: str | None = None  # the step of the device that measured it (steps.step_of): shown there only


@dataclass
class Photo:
    jpeg: bytes
    width: int
    height: int


@dataclass
class CaseDraft:
    answers: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    photos: list[Photo] = field(default_factory=list)


@dataclass
class Visit:
    subject: str
    language: str
    started: float
    last_active: float
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    readings: list[ShownReading] = field(default_factory=list)
    vitals_ids: list[str] = field(default_factory=list)  # observations envelopes taken in this visit
    # The camera's latest measurement, shown but not yet in the outbox: measuring again replaces it, and it
    # goes out when the patient moves on from the camera step or the visit ends (Screen.send_held_camera).
    held_camera: list[dict[str, Any]] = field(default_factory=list)
    case: CaseDraft = field(default_factory=CaseDraft)
    answers_seen: set[str] = field(default_factory=set)  # downlink ids shown: removed from the kiosk at the end
    notices_seen: set[str] = field(default_factory=set)
    last_case: str | None = None  # the envelope id of the case sent in this visit, if any

    def touch(self, now: float) -> None:
        self.last_active = now


@dataclass(frozen=True)
class IdlePolicy:
    """The screen warns `warn_s` before the end; the server ends the visit a little after the screen would,
    so a screen that shows its countdown is never ended early, and one that cannot is ended anyway."""

    idle_s: float = 120.0
    warn_s: float = 30.0
    server_grace_s: float = 5.0

    def expired(self, visit: Visit, now: float) -> bool:
        return now - visit.last_active > self.idle_s + self.server_grace_s


class Desk:
    """The current visit, if any. Every method is called from the server's event loop."""

    def __init__(self, policy: IdlePolicy) -> None:
        self.policy = policy
        self.visit: Visit | None = None

    def begin(self, subject: str, language: str, now: float) -> Visit:
        self.visit = Visit(subject=subject, language=language, started=now, last_active=now)
        return self.visit

    def current(self, token: str | None, now: float) -> Visit | None:
        """The visit this browser holds, unless it has ended or gone idle."""
        visit = self.visit
        if visit is None or token is None or not secrets.compare_digest(visit.token, token):
            return None
        if self.policy.expired(visit, now):
            return None
        return visit

    def end(self) -> Visit | None:
        visit, self.visit = self.visit, None
        return visit
