"""A populated workspace for `hub demo`: a clinic, two accounts, patients, a month of readings, a queue.

The readings go through the same `HubStore.commit_batch` and attribution pass as live
ones, built as the wire contract's envelopes from a second ("lobby") kiosk, so the demo
shows what the real path stores, including camera estimates and a shared cuff's
unmapped user slot waiting in the queue.
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from device.protocol.envelope import ClockInfo, build_envelope, encode
from device.protocol.ids import new_message_id
from hub import attribution, kiosk_setup, patients
from hub.accounts import passwords, users
from hub.db import immediate
from hub.store import Accepted, HubStore

CLINIC_ID = "demo-clinic"
ADMIN_EMAIL = "admin@demo-clinic.example"
PROVIDER_EMAIL = "provider@demo-clinic.example"
HISTORY_KIOSK = "demo-lobby-kiosk"

NAMES = [
    "Ada Okafor", "Ben Carter", "Chloé Martin", "Dmitri Volkov", "Elena García", "Farah Haddad",
    "George Smith", "Hana Sato", "Ivan Petrov", "Julia Rossi", "Kwame Mensah", "Lucía Fernández",
]  # fmt: skip


@dataclass(frozen=True)
class DemoLogins:
    admin_password: str
    provider_password: str
    patient_codes: list[str]
    pin_patient: str = ""  # checks in at the kiosk with DEMO_PIN


DEMO_PIN = "2468"


def _password() -> str:
    return secrets.token_urlsafe(12)


def seed(store: HubStore, live_kiosk: str, now: datetime, rng: random.Random | None = None) -> DemoLogins:
    """Idempotent: a second run keeps the data and only issues fresh passwords (printed, never stored plain)."""
    rng = rng or random.Random(7)
    conn = store.conn
    ts = now.timestamp()
    admin_pw, provider_pw = _password(), _password()
    fresh = users.clinic_name(conn, CLINIC_ID) is None
    with immediate(conn):
        if fresh:
            users.create_clinic(conn, CLINIC_ID, "Demo Clinic", ts)
            users.create_user(conn, clinic_id=CLINIC_ID, email=ADMIN_EMAIL, name="Dana Admin", role="clinic_admin",
                              password=admin_pw, now=ts)  # fmt: skip
            users.create_user(conn, clinic_id=CLINIC_ID, email=PROVIDER_EMAIL, name="Dr. Sam Provider",
                              role="provider", password=provider_pw, now=ts)  # fmt: skip
            for i, name in enumerate(NAMES):
                birth = f"{1940 + (i * 4) % 50}-{1 + i % 12:02d}-{1 + (i * 7) % 28:02d}"
                patients.create(conn, CLINIC_ID, code=f"P{1001 + i}", name=name, birth_date=birth, now=ts)
        else:
            for email, pw in ((ADMIN_EMAIL, admin_pw), (PROVIDER_EMAIL, provider_pw)):
                user = users.by_email(conn, email)
                if user is not None:
                    users.set_password_hash(conn, user.id, passwords.hash_password(pw))
        for kiosk in (live_kiosk, HISTORY_KIOSK):
            attribution.assign_kiosk(conn, kiosk, CLINIC_ID, ts)
    codes = [f"P{1001 + i}" for i in range(len(NAMES))]
    if fresh:
        store.commit_batch([*history(codes, now, rng), _waiting_case(codes[0], now)], [])
        attribution.run_until_done(conn, ts)
        pin_hash = kiosk_setup.hash_pin(DEMO_PIN)  # slow on purpose: outside the write transaction
        with immediate(conn):
            patient = conn.execute(
                "SELECT id FROM patients WHERE clinic_id = ? AND code = ?", (CLINIC_ID, codes[1])
            ).fetchone()
            kiosk_setup.set_pin(conn, CLINIC_ID, patient[0], pin_hash, ts)
    return DemoLogins(admin_pw, provider_pw, codes, codes[1])


def _waiting_case(code: str, now: datetime) -> Accepted:
    """A case sent an hour ago that nobody has answered yet."""
    when = now - timedelta(hours=1)
    payload = {
        "case": str(uuid.uuid4()),
        "subject": code,
        "questionnaire": {"id": "general-intake", "version": 1},
        "answers": [
            {"link_id": "main", "value": "Cough and a temperature since the weekend"},
            {"link_id": "fever", "value": True},
            {"link_id": "fever_days", "value": 3},
            {"link_id": "pain", "value": True},
            {"link_id": "pain_where", "value": ["chest"]},
            {"link_id": "pain_score", "value": 4},
            {"link_id": "breathless", "value": False},
        ],
        "text": "Worse at night. My neighbour had the flu last week.",
        "created": when,
    }
    env = build_envelope(
        "case",
        message_id=new_message_id(int(when.timestamp() * 1000)),
        kiosk=HISTORY_KIOSK,
        seq=100_000,
        clock=ClockInfo(time=when, offset_ms=0.0, source="hub"),
        payload=payload,
    )
    return Accepted(env, encode(env), when.timestamp())


def _device(kind: str) -> dict[str, Any]:
    return {
        "cuff": {"id": "C4:7C:8D:11:22:33", "type": "ble", "manufacturer": "A&D Medical", "model": "UA-651BLE",
                 "serial": "5160012345", "firmware": "1.2"},
        "oximeter": {"id": "00:1C:05:AA:BB:CC", "type": "ble", "manufacturer": "Nonin", "model": "3230",
                     "serial": "503123456"},
        "scale": {"id": "C4:7C:8D:44:55:66", "type": "ble", "manufacturer": "A&D Medical", "model": "UC-352BLE"},
        "camera": {"id": "kiosk-camera-0", "type": "camera", "manufacturer": "Raspberry Pi",
                   "model": "Camera Module 3"},
    }[kind]  # fmt: skip


def history(codes: list[str], now: datetime, rng: random.Random, days: int = 30) -> list[Accepted]:
    """About two visits a patient a week for `days`, and a few readings no one can be sure of."""
    out: list[Accepted] = []
    seq = 0

    def add(subject: str | None, when: datetime, obs: list[dict[str, Any]]) -> None:
        nonlocal seq
        seq += 1
        env = build_envelope(
            "observations",
            message_id=new_message_id(int(when.timestamp() * 1000)),
            kiosk=HISTORY_KIOSK,
            seq=seq,
            clock=ClockInfo(time=when, offset_ms=rng.uniform(-400, 400), source="hub"),
            payload={"subject": subject, "observations": obs} if subject else {"observations": obs},
        )
        out.append(Accepted(env, encode(env), when.timestamp()))

    for p, code in enumerate(codes):
        base_sys, base_hr = rng.gauss(128, 12), rng.gauss(74, 8)
        for day in range(days, 0, -1):
            if rng.random() > 0.35:
                continue
            when = (now - timedelta(days=day)).replace(hour=9 + p % 8, minute=rng.randrange(60), second=0)
            sys_ = base_sys + rng.gauss(0, 8)
            dia = sys_ - rng.gauss(45, 6)
            hr = base_hr + rng.gauss(0, 6)
            offset = rng.uniform(-3, 3)
            cuff = _device("cuff")
            add(code, when, [
                {"code": "8480-6", "value": round(sys_), "unit": "mm[Hg]", "effective": when, "device": cuff,
                 "device_clock_offset_s": offset, "device_user": 1},
                {"code": "8462-4", "value": round(dia), "unit": "mm[Hg]", "effective": when, "device": cuff,
                 "device_clock_offset_s": offset, "device_user": 1},
                {"code": "8867-4", "value": round(hr), "unit": "/min", "effective": when, "device": cuff,
                 "device_clock_offset_s": offset, "device_user": 1},
            ])  # fmt: skip
            later = when + timedelta(minutes=3)
            add(code, later, [
                {"code": "59408-5", "value": round(min(100, rng.gauss(96.5, 1.5))), "unit": "%", "effective": later,
                 "device": _device("oximeter")},
                {"code": "8867-4", "value": round(hr + rng.gauss(0, 3)), "unit": "/min", "effective": later,
                 "device": _device("camera"), "method": "rppg-pos", "quality": round(rng.uniform(0.6, 0.95), 2)},
                {"code": "9279-1", "value": round(rng.gauss(15, 2)), "unit": "/min", "effective": later,
                 "device": _device("camera"), "method": "optical-flow", "quality": round(rng.uniform(0.5, 0.9), 2)},
                {"code": "29463-7", "value": round(rng.gauss(60 + p * 3, 0.5), 1), "unit": "kg", "effective": later,
                 "device": _device("scale")},
            ])  # fmt: skip
    # Something for triage: one patient's oxygen dropped yesterday, another's pulse ran fast this morning.
    yesterday, morning = now - timedelta(days=1, hours=2), now - timedelta(hours=3)
    add(codes[2], yesterday, [{"code": "59408-5", "value": 87, "unit": "%", "effective": yesterday,
                               "device": _device("oximeter")}])  # fmt: skip
    add(codes[5], morning, [{"code": "8867-4", "value": 138, "unit": "/min", "effective": morning,
                             "device": _device("cuff"), "device_user": 1}])  # fmt: skip
    # A shared cuff's second user slot is mapped to no one yet: those readings wait for staff.
    for k in range(3):
        when = now - timedelta(hours=5 + k * 20)
        cuff = _device("cuff")
        add(None, when, [
            {"code": "8480-6", "value": 141 + k, "unit": "mm[Hg]", "effective": when, "device": cuff, "device_user": 2},
            {"code": "8462-4", "value": 92 - k, "unit": "mm[Hg]", "effective": when, "device": cuff, "device_user": 2},
        ])  # fmt: skip
    return out
