"""Two clinics with people, patients, kiosks and readings, built through the real store and attribution.

North and South are alike; every test that crosses from one to the other uses South's
markers (names, codes, kiosk ids, emails) to prove nothing of South leaks to North.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from device.attachments import chunk_payloads
from device.protocol.envelope import ClockInfo, build_envelope, encode
from device.protocol.ids import new_message_id
from hub import attribution, patients
from hub.accounts import users
from hub.db import Connection, Location, SqliteLocation, connect, immediate
from hub.store import Accepted, HubStore
from tests.harness import hub_store_args

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Clock:
    """Time the app sees; tests move it instead of sleeping."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Clinic:
    id: str
    admin: str
    provider: str
    kiosk: str
    patients: dict[str, str] = field(default_factory=dict)  # code -> patient id
    names: list[str] = field(default_factory=list)
    user_ids: dict[str, int] = field(default_factory=dict)


CUFF = {"id": "AA:BB:CC:00:00:01", "type": "ble", "manufacturer": "A&D Medical", "model": "UA-651BLE", "serial": "S1",
        "kind": "blood_pressure"}  # fmt: skip
CAMERA = {"id": "kiosk-camera-0", "type": "camera", "model": "Camera Module 3"}


class World:
    def __init__(self, db: Path | Location, clock: Clock) -> None:
        # A SQLite world is its file's path, as the command-line tests give `--data` its folder.
        self.db: Path | Location = db.path if isinstance(db, SqliteLocation) else db
        self.clock = clock
        self.store = HubStore(db)
        self.seq: dict[str, int] = {}
        self.north = self._clinic("north", ["Alice North", "Bob North"])
        self.south = self._clinic("south", ["Zed Southerly", "Yara Southern"])

    def cli_data(self) -> list[str]:
        """What a `hub` command is given to reach this world's data: its folder, and on PostgreSQL the URL too."""
        if isinstance(self.db, Path):
            return ["--data", str(self.db.parent)]
        if not hasattr(self, "_data_dir"):
            self._data_dir = Path(tempfile.mkdtemp(prefix="hub-world-"))
        return hub_store_args(self._data_dir, self.db)

    def connect(self) -> Connection:
        """A connection of the test's own, to whichever store the world lives in (closed with the test process)."""
        return connect(self.db)

    def _clinic(self, name: str, patient_names: list[str]) -> Clinic:
        conn = self.store.conn
        c = Clinic(f"{name}-clinic", f"admin@{name}.example", f"doc@{name}.example", f"kiosk-{name}")
        now = self.clock()
        with immediate(conn):
            users.create_clinic(conn, c.id, f"{name.title()} Clinic", now)
            c.user_ids[c.admin] = users.create_user(
                conn,
                clinic_id=c.id,
                email=c.admin,
                name=f"{name} admin",
                role="clinic_admin",
                password=PASSWORD,
                now=now,
            )
            c.user_ids[c.provider] = users.create_user(
                conn, clinic_id=c.id, email=c.provider, name=f"{name} doc", role="provider", password=PASSWORD, now=now
            )
            for i, pname in enumerate(patient_names):
                code = f"{name[0].upper()}{100 + i}"
                c.patients[code] = patients.create(conn, c.id, code=code, name=pname, birth_date="1970-01-01", now=now)
                c.names.append(pname)
            attribution.assign_kiosk(conn, c.kiosk, c.id, now)
        return c

    def send(self, kiosk: str, observations: list[dict[str, Any]], subject: str | None = None,
             offset_ms: float | None = 250.0) -> str:  # fmt: skip
        """One envelope through the same commit the ingest worker uses; then the attribution pass."""
        self.seq[kiosk] = self.seq.get(kiosk, 0) + 1
        when = observations[0]["effective"]
        payload: dict[str, Any] = {"observations": observations}
        if subject:
            payload["subject"] = subject
        env = build_envelope(
            "observations",
            message_id=new_message_id(),
            kiosk=kiosk,
            seq=self.seq[kiosk],
            clock=ClockInfo(time=when, offset_ms=offset_ms, source="hub" if offset_ms is not None else "none"),
            payload=payload,
        )
        self.store.commit_batch([Accepted(env, encode(env), self.clock())], [], now=self.clock())
        attribution.run_until_done(self.store.conn, self.clock())
        return env.id

    def send_case(self, kiosk: str, subject: str, **payload: Any) -> str:
        """A case as the kiosk sends it (answers, text, photo ids, vital envelope ids), then attribution."""
        self.seq[kiosk] = self.seq.get(kiosk, 0) + 1
        case_id = str(uuid.uuid4())
        body = {"case": case_id, "subject": subject, "questionnaire": {"id": "general-intake", "version": 1},
                "created": NOW, **payload}  # fmt: skip
        env = build_envelope(
            "case",
            message_id=new_message_id(),
            kiosk=kiosk,
            seq=self.seq[kiosk],
            clock=ClockInfo(time=NOW, offset_ms=0.0, source="hub"),
            payload=body,
        )
        self.store.commit_batch([Accepted(env, encode(env), self.clock())], [], now=self.clock())
        attribution.run_until_done(self.store.conn, self.clock())
        return case_id

    def send_file(self, kiosk: str, data: bytes, subject: str | None = None) -> str:
        """A case photo, chunked as the kiosk sends it, committed and assembled by the store."""
        accepted = []
        for payload in chunk_payloads(data, subject=subject):
            self.seq[kiosk] = self.seq.get(kiosk, 0) + 1
            env = build_envelope(
                "attachment",
                message_id=new_message_id(),
                kiosk=kiosk,
                seq=self.seq[kiosk],
                clock=ClockInfo(time=NOW, offset_ms=0.0, source="hub"),
                payload=payload,
            )
            accepted.append(Accepted(env, encode(env), time.time()))
        self.store.commit_batch(accepted, [], now=self.clock())
        return str(accepted[0].envelope.payload.attachment)  # type: ignore[union-attr]

    def close(self) -> None:
        self.store.close()


def obs(
    code: str, value: float, unit: str, when: datetime, device: dict[str, Any] = CUFF, **extra: Any
) -> dict[str, Any]:
    return {"code": code, "value": value, "unit": unit, "effective": when, "device": device, **extra}


def day(n: int) -> datetime:
    return NOW - timedelta(days=n)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    form = client.get("/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_from(form.text), "next": "/patients"},
        follow_redirects=False,
    )


def session_csrf(client: TestClient) -> str:
    return csrf_from(client.get("/account").text)


def populate(w: World) -> None:
    """Five days of cuff readings and one camera estimate per patient, and a walk-up reading per clinic."""
    for clinic in (w.north, w.south):
        for i, code in enumerate(clinic.patients):
            for d in range(1, 6):
                w.send(
                    clinic.kiosk,
                    [
                        obs("8480-6", 120 + i + d, "mm[Hg]", day(d), device_clock_offset_s=-2.5),
                        obs("8462-4", 80 + d, "mm[Hg]", day(d), device_clock_offset_s=-2.5),
                        obs("8867-4", 70 + d, "/min", day(d)),
                    ],
                    subject=code,
                )
            w.send(clinic.kiosk, [obs("8867-4", 77, "/min", day(2), device={"id": "kiosk-camera-0", "type": "camera"},
                                      method="rppg-pos", quality=0.8)], subject=code)  # fmt: skip
        # A walk-up reading nobody checked in for: it waits in the clinic's queue.
        w.send(clinic.kiosk, [obs("8480-6", 151, "mm[Hg]", day(1), device_user=2)])
