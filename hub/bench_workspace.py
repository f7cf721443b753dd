"""`hub bench workspace`: how fast the provider workspace answers over a year of one clinic's readings.

The question (target p95 < 100 ms on this machine): with one million readings for 1,000
patients, how long do the patient list and the patient page take? One run does:

1. Load a fresh database through the real schema: a clinic with `--patients` patients, a
   small second clinic (so every query's tenancy filter has rows to exclude, and both
   clinics use the same check-in codes), kiosks assigned to their clinics, three provider
   accounts (one logs in), `--readings` readings spread over the last 365 days (cuff BP +
   heart rate, SpO2, temperature, weight, camera heart and breathing rate; a few taken
   without a check-in wait in the clinic's queue; the first kiosk's scale was replaced a
   month ago), shared devices' user slots mapped to a dozen patients (four on that new
   scale), and a year of the clinic's audit log (`--audit-rows`, default 500,000, about
   1,400 entries a day: the log is append-only and never pruned, so a year into use it is
   the second-largest table, and the pages query it). Readings go in with `executemany` in
   large transactions (on PostgreSQL with COPY, its bulk path: row-at-a-time INSERTs over
   the wire would make the load, not the pages, the slow part), built directly rather than
   through pydantic (that would take minutes), but shaped exactly as `HubStore.commit_batch`
   writes them: a sample of the messages is re-committed through `commit_batch` into a
   scratch database (on PostgreSQL a scratch schema on the same server) and must come out
   byte for byte the same. Then the real attribution pass (`attribution.run_until_done`,
   production pragmas) decides every reading, and its rate is reported. On PostgreSQL the
   planner's statistics are gathered after the load and the pass's dead rows vacuumed after
   it, as autovacuum would do on a server within minutes: the pages are measured on the
   tables a running server has, not on ones that look empty to the planner.
2. Serve it for real: `create_app` under uvicorn, configured as `hub serve` does, in its own
   process. A client in the same process would share the server's GIL and its time would be
   counted as the server's.
3. Measure like a browser: one logged-in client (GET /login for the CSRF cookie, POST
   /login), sequential requests, all kinds interleaved in one shuffled order so that a noisy
   neighbour on this shared machine hits every kind alike: the patient list (first page, a
   name search, a deep page), the patient page (30 and 365 days, and of a patient with a
   slot on the new scale) and its trends.json. `/healthz` is in the same mix: it is the
   floor (HTTP, framework, loopback) on this machine in this run, and every page's p95 is
   reported next to it, because absolute figures move between runs here.
4. Say where the time goes: the same handlers' data work (queries and the Python that shapes
   the rows) timed in this process without HTTP, and alone: the session check every page
   starts with, the audit query trends.json runs on every refresh, and the audit row each
   view writes (`synchronous=FULL`, so a WAL fsync per view; on PostgreSQL the commit waits
   for the WAL flush when the server's synchronous_commit is on).

The database lives in the system temp folder (on disk, as the hub's does) unless `--tmpfs`
puts it under /dev/shm, where fsync is free and the audit write would look cheaper than it
is. `--db PATH` keeps the database, and a later run with the same sizes reuses it and skips
the load. `--database postgresql://...` runs it all on PostgreSQL instead: an empty database
(the bench creates the schema), which the data then stays in, and which a later run with the
same sizes reuses the same way. Its URL reaches the server process in $HUB_DATABASE, never
in argv, and the report shows it without its password.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import random
import re
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from device.protocol.envelope import encode, parse_envelope, utc_iso
from hub import attribution, audit, patients, review
from hub.accounts import passwords, sessions, users
from hub.bench import sigterm_as_exit
from hub.db import (
    Connection,
    DatabaseError,
    Location,
    LocationError,
    PostgresLocation,
    SqliteLocation,
    connect,
    engine_of,
)
from hub.db import parse as parse_location
from hub.db.location import DATABASE_ENV
from hub.db.migrate import migrate
from hub.db.postgres import PgConnection
from hub.store import Accepted, HubStore
from hub.web.routes.patients import PAGE, RANGES
from hub.workspace import WebSettings, Workspace

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

TARGET_P95_MS = 100.0
DAYS = 365
CLINIC = "bench-clinic"
OTHER_CLINIC = "bench-other-clinic"
PROVIDER_EMAIL = "provider@bench-clinic.example"
MAIN_KIOSKS = 4
MESSAGES_PER_TXN = 20_000
FIDELITY_SAMPLE = 200  # messages re-committed through commit_batch to prove the fast rows are the real ones
DEEP_PAGE = 15
# The first kiosk's scale was replaced this many days ago; its four user slots are mapped to patients. Listing a
# patient's slots looks the device up in the readings, and a device new to the clinic has few of them, late.
SCALE_REPLACED_DAYS = 30
SLOW_KIND_REQUESTS = 50  # at most, for the page of a patient with a slot on that scale (it may be slow)
SERVER_START_S = 60.0
SERVER_STOP_S = 10.0
# Where check_fidelity's commit_batch writes on PostgreSQL: a schema of the bench's own database, dropped after.
FIDELITY_SCHEMA = "hub_bench_fidelity"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The query trends.json runs on every refresh to audit a patient's trends once per session and 10 minutes
# (copied from hub/web/routes/patients.py, patient_trends, to time it alone).
TRENDS_AUDIT_SQL = (
    "SELECT 1 FROM audit WHERE actor_user = ? AND action = 'view_trends' AND patient_id = ? AND at > ? "
    "AND target = ? LIMIT 1"
)

FIRST = [
    "Ada", "Ben", "Chloé", "Dmitri", "Elena", "Farah", "George", "Hana", "Ivan", "Julia", "Kwame", "Lucía",
    "Maria", "Nikhil", "Olga", "Pedro", "Qing", "Rosa", "Samuel", "Tomás", "Uma", "Viktor", "Wen", "Yusuf",
    "Zofia", "Amir", "Beatriz", "Chen", "Dana", "Emeka", "Fatima", "Grace", "Hiro", "Ines", "Jonas", "Keiko",
]  # fmt: skip
LAST = [
    "Okafor", "Carter", "Martin", "Volkov", "García", "Haddad", "Smith", "Sato", "Petrov", "Rossi", "Mensah",
    "Fernández", "Johnson", "Nguyen", "Kowalski", "Müller", "Andersson", "Silva", "Cohen", "Ibrahim", "Kim",
    "Larsen", "Moreau", "Novak", "O'Brien", "Patel", "Quinn", "Romero", "Schmidt", "Tanaka", "Usman", "Weber",
    "Yilmaz", "Zhang", "Hughes", "Jensen", "Lopez", "Murphy", "Nakamura", "Robinson",
]  # fmt: skip


class BenchError(RuntimeError):
    """The benchmark could not run as designed (server did not start, a page failed, rows differ)."""


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    patients: int
    readings: int
    requests: int
    warmup: int
    queued: int
    audit_rows: int
    seed: int
    db: Path | None
    tmpfs: bool
    database: str | None = None  # a postgresql:// URL; None: a SQLite file

    def location(self, folder: Path) -> Location:
        """The store the bench fills and measures: the PostgreSQL database, else `--db`, else a file in `folder`."""
        if self.database is not None:
            return PostgresLocation(self.database)
        return SqliteLocation(self.db or folder / "hub.db")

    @property
    def other_patients(self) -> int:
        """The second clinic: small, but with readings of its own under the same check-in codes."""
        return max(2, self.patients // 50)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patients", type=int, default=None, help="patients of the measured clinic (default 1,000)")
    p.add_argument("--readings", type=int, default=None, help="readings in all, both clinics (default 1,000,000)")
    p.add_argument("--requests", type=int, default=None, help="measured requests per kind of page (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured requests per kind first")
    p.add_argument(
        "--queued", type=int, default=None, help="of the readings, how many were taken without a check-in (default 500)"
    )
    p.add_argument(
        "--audit-rows",
        type=int,
        default=None,
        help="audit log entries of the past year already there (default 500,000; 0 for none)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the generated data and request order")
    p.add_argument("--db", type=Path, default=None, help="keep the database here; reused if it already holds the data")
    p.add_argument("--tmpfs", action="store_true", help="database under /dev/shm (fsync free) instead of the disk")
    p.add_argument(
        "--database",
        default=None,
        metavar="URL",
        help="run on this PostgreSQL database (postgresql://..., an empty one: the data stays in it and a later run "
        "with the same sizes reuses it) instead of a SQLite file",
    )
    p.add_argument("--quick", action="store_true", help="small smoke-test sizes (50 patients, 20k readings)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _config(args: argparse.Namespace) -> Config:
    quick = {"patients": 50, "readings": 20_000, "requests": 30, "queued": 50, "audit_rows": 5_000}
    full = {"patients": 1_000, "readings": 1_000_000, "requests": 200, "queued": 500, "audit_rows": 500_000}
    base = quick if args.quick else full

    def pick(name: str) -> int:
        value = getattr(args, name)
        return int(base[name] if value is None else value)

    database = getattr(args, "database", None)
    if database is not None:
        if args.db is not None or args.tmpfs:
            raise BenchError("--db and --tmpfs place a SQLite file; --database runs on PostgreSQL instead")
        try:
            location = parse_location(database)
        except LocationError as exc:
            raise BenchError(f"--database: {exc}") from None
        if not isinstance(location, PostgresLocation):
            raise BenchError("--database takes a postgresql:// URL (--db PATH keeps a SQLite file)")
    config = Config(
        patients=pick("patients"),
        readings=pick("readings"),
        requests=pick("requests"),
        warmup=max(0, args.warmup),
        queued=pick("queued"),
        audit_rows=max(0, pick("audit_rows")),
        seed=args.seed,
        db=args.db,
        tmpfs=args.tmpfs,
        database=database,
    )
    if config.patients < 1 or config.requests < 1:
        raise BenchError("--patients and --requests must be at least 1")
    if not 0 <= config.queued < config.readings - (config.patients + config.other_patients):
        raise BenchError("--readings must leave at least one attributed reading per patient after --queued")
    return config


# -- the data ----------------------------------------------------------------------------------

# One message kind per tuple tag: what a kiosk sends after each step of a visit.
CUFF, VITALS, CAMERA, QUEUED = 0, 1, 2, 3


@dataclass(frozen=True)
class Kiosk:
    id: str
    clinic: str
    devices: dict[str, dict[str, str]]
    device_json: dict[str, str]  # the same, as the observations.device column holds them

    @classmethod
    def make(cls, kiosk_id: str, clinic: str, n: int) -> Kiosk:
        mac = f"{n // 256:02X}:{n % 256:02X}"
        devices = {
            "cuff": {"id": f"C4:7C:8D:{mac}:01", "type": "ble", "manufacturer": "A&D Medical", "model": "UA-651BLE",
                     "serial": f"5160{n:06d}", "firmware": "1.2"},
            "oximeter": {"id": f"00:1C:05:{mac}:02", "type": "ble", "manufacturer": "Nonin", "model": "3230",
                         "serial": f"503{n:06d}"},
            "thermometer": {"id": f"C4:7C:8D:{mac}:03", "type": "ble", "manufacturer": "A&D Medical",
                            "model": "UT-201BLE"},
            "scale": {"id": f"C4:7C:8D:{mac}:04", "type": "ble", "manufacturer": "A&D Medical", "model": "UC-352BLE"},
            "new_scale": {"id": f"C4:7C:8D:{mac}:14", "type": "ble", "manufacturer": "A&D Medical",
                          "model": "UC-352BLE", "firmware": "2.0"},
            "camera": {"id": f"{kiosk_id}-camera-0", "type": "camera", "manufacturer": "Raspberry Pi",
                       "model": "Camera Module 3"},
        }  # fmt: skip
        # DeviceRef.model_dump_json(exclude_none=True): compact, fields in declaration order.
        compact = {k: json.dumps(v, separators=(",", ":"), ensure_ascii=False) for k, v in devices.items()}
        return cls(kiosk_id, clinic, devices, compact)


@dataclass(frozen=True)
class PatientSpec:
    clinic: str
    code: str
    name: str
    birth_date: str
    budget: int  # readings this patient gets
    kiosks: tuple[int, ...]  # indexes into the kiosk list; the first is home


# (time ms, kiosk index, subject, kind, values, how many of the kind's readings to keep)
MsgSpec = tuple[int, int, str | None, int, tuple[float, ...], int]


def _patients(config: Config, rng: random.Random, kiosks: list[Kiosk]) -> list[PatientSpec]:
    """Both clinics' patients with reading budgets that add up to exactly `--readings` minus the queued ones."""
    main = [i for i, k in enumerate(kiosks) if k.clinic == CLINIC]
    other = [i for i, k in enumerate(kiosks) if k.clinic == OTHER_CLINIC]
    total = config.patients + config.other_patients
    base, extra = divmod(config.readings - config.queued, total)
    out = []
    for i in range(total):
        clinic, n, local = (CLINIC, i, main) if i < config.patients else (OTHER_CLINIC, i - config.patients, other)
        home = local[n % len(local)]
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        birth = f"{rng.randrange(1930, 2006)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        others = tuple(k for k in local if k != home)
        out.append(PatientSpec(clinic, f"P{n + 1:06d}", name, birth, base + (1 if i < extra else 0), (home, *others)))
    return out


def _plan(config: Config, patients_: list[PatientSpec], kiosks: list[Kiosk], now_ms: int) -> list[MsgSpec]:
    """Every message of the year, in time order: visits of 3 + 3 (+ 2 camera) readings, about 2.7 a week."""
    rng = random.Random(config.seed)
    start, end = now_ms - DAYS * 86_400_000 + 3_600_000, now_ms - 600_000
    out: list[MsgSpec] = []
    for p in patients_:
        sys0, hr0 = rng.gauss(128, 14), rng.gauss(74, 8)
        kg0, temp0, spo20 = rng.uniform(48, 130), rng.gauss(36.7, 0.2), rng.gauss(97, 1)
        left = p.budget
        while left > 0:
            t = rng.randrange(start, end)
            kiosk = p.kiosks[0] if len(p.kiosks) == 1 or rng.random() < 0.9 else rng.choice(p.kiosks[1:])
            # Whole numbers as floats: the envelope's value is a float, and its JSON spells 128 as 128.0.
            sys_ = float(min(230, max(80, round(sys0 + rng.gauss(0, 8)))))
            dia = float(min(140, max(40, round(sys_ - rng.gauss(45, 6)))))
            hr = float(min(180, max(40, round(hr0 + rng.gauss(0, 6)))))
            flagged = 1.0 if rng.random() < 0.03 else 0.0
            cuff = (sys_, dia, hr, round(rng.uniform(-3, 3), 2), flagged)
            out.append((t, kiosk, p.code, CUFF, cuff, min(3, left)))
            left -= 3
            if left <= 0:
                break
            spo2 = float(min(100, round(spo20 + rng.gauss(0, 1.2))))
            vitals = (spo2, round(temp0 + rng.gauss(0, 0.25), 1), round(kg0 + rng.gauss(0, 0.6), 1))
            out.append((t + 120_000, kiosk, p.code, VITALS, vitals, min(3, left)))
            left -= 3
            if left > 0 and rng.random() < 0.5:
                camera: tuple[float, ...] = (float(hr + round(rng.gauss(0, 3))), round(rng.uniform(0.6, 0.95), 2))
                camera += (float(round(rng.gauss(15, 2))), round(rng.uniform(0.5, 0.9), 2))
                out.append((t + 240_000, kiosk, p.code, CAMERA, camera, min(2, left)))
                left -= 2
    main = [i for i, k in enumerate(kiosks) if k.clinic == CLINIC]
    left = config.queued
    while left > 0:  # a shared cuff's user slot 2, mapped to no one: these wait for staff
        t = rng.randrange(start, end)
        bp = (float(rng.randrange(110, 160)), float(rng.randrange(65, 95)))
        out.append((t, rng.choice(main), None, QUEUED, bp, min(2, left)))
        left -= 2
    out.sort(key=lambda m: m[0])
    return out


# (code, value, unit, device, flag, device clock offset s, device user slot, method, quality)
ObsSpec = tuple[str, float, str, str, str | None, float | None, int | None, str | None, float | None]


def _obs(kind: int, v: tuple[float, ...]) -> list[ObsSpec]:
    """The readings one message of this kind carries, from the values planned for it."""
    if kind == CUFF:
        return [
            ("8480-6", v[0], "mm[Hg]", "cuff", None, v[3], 1, None, None),
            ("8462-4", v[1], "mm[Hg]", "cuff", None, v[3], 1, None, None),
            ("8867-4", v[2], "/min", "cuff", "irregular_pulse" if v[4] else None, v[3], 1, None, None),
        ]
    if kind == VITALS:
        return [
            ("59408-5", v[0], "%", "oximeter", None, None, None, None, None),
            ("8310-5", v[1], "Cel", "thermometer", None, None, None, None, None),
            ("29463-7", v[2], "kg", "scale", None, None, None, None, None),
        ]
    if kind == CAMERA:
        return [
            ("8867-4", v[0], "/min", "camera", None, None, None, "rppg-pos", v[1]),
            ("9279-1", v[2], "/min", "camera", None, None, None, "optical-flow", v[3]),
        ]
    return [
        ("8480-6", v[0], "mm[Hg]", "cuff", None, 0.4, 2, None, None),
        ("8462-4", v[1], "mm[Hg]", "cuff", None, 0.4, 2, None, None),
    ]


class _Minter:
    """UUIDv7 message ids (as device.protocol.ids mints them) for past times, strictly increasing."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.last_ms = 0
        self.counter = 0

    def next(self, ms: int) -> str:
        if ms > self.last_ms:
            self.last_ms, self.counter = ms, self.rng.getrandbits(10)
        else:
            self.counter += 1
            if self.counter > 0xFFF:
                self.last_ms, self.counter = self.last_ms + 1, 0
        value = (self.last_ms << 80) | (0x7 << 76) | (self.counter << 64) | (0b10 << 62) | self.rng.getrandbits(62)
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(ms: int) -> str:
    return utc_iso(EPOCH + timedelta(milliseconds=ms))


@dataclass
class _Rows:
    """Turns message plans into the rows commit_batch would write for the envelopes they describe."""

    kiosks: list[Kiosk]
    rng: random.Random
    minter: _Minter
    seq: list[int]
    last: list[tuple[float, float, int, float]]  # per kiosk: first commit, last commit, last seq, last offset
    scale_replaced_ms: int  # from then on the first kiosk's readings come from its new scale

    def build(self, plan: Sequence[MsgSpec]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        messages: list[tuple[Any, ...]] = []
        observations: list[tuple[Any, ...]] = []
        rng = self.rng
        for t, k, subject, kind, values, keep in plan:
            kiosk = self.kiosks[k]
            self.seq[k] += 1
            seq = self.seq[k]
            clock_ms = t + rng.randrange(500, 3000)  # the envelope is made just after the reading
            message_id = self.minter.next(clock_ms)
            offset = round(rng.uniform(-400, 400), 1)
            received = (clock_ms + rng.randrange(20, 900)) / 1000
            committed = received + 0.004
            effective = _iso(t)
            obs_json = []
            for idx, (code, value, unit, dev_, flag, dev_off, user, method, quality) in enumerate(
                _obs(kind, values)[:keep]
            ):
                dev = "new_scale" if dev_ == "scale" and k == 0 and t >= self.scale_replaced_ms else dev_
                flags = [flag] if flag else []
                o: dict[str, Any] = {"code": code, "value": value, "unit": unit, "effective": effective}
                o["device"] = kiosk.devices[dev]
                o["flags"] = flags
                for key, item in (
                    ("device_clock_offset_s", dev_off),
                    ("device_user", user),
                    ("method", method),
                    ("quality", quality),
                ):
                    if item is not None:
                        o[key] = item
                obs_json.append(o)
                observations.append(
                    (message_id, idx, kiosk.id, seq, code, value, unit, effective, offset,
                     kiosk.devices[dev]["id"], kiosk.device_json[dev], json.dumps(flags) if flags else "[]",
                     subject, user, None, dev_off, method, quality)
                )  # fmt: skip
            payload: dict[str, Any] = {"observations": obs_json}
            if subject is not None:
                payload["subject"] = subject
            clock_iso = _iso(clock_ms)
            envelope = {
                "v": 1, "id": message_id, "kiosk": kiosk.id, "seq": seq,
                "clock": {"time": clock_iso, "offset_ms": offset, "source": "hub"},
                "kind": "observations", "payload": payload,
            }  # fmt: skip
            raw = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
            messages.append((message_id, kiosk.id, seq, "observations", clock_iso, offset, received, committed, raw))
            first = self.last[k][0] or committed
            self.last[k] = (first, committed, seq, offset)
        return messages, observations


# -- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    reused: bool
    seconds: float | None
    messages: int
    insert_seconds: float | None
    audit_seconds: float | None
    attribution_seconds: float | None
    attribution_decided: int
    fidelity_checked: int
    db_bytes: int
    # PostgreSQL only: ANALYZE after the load, VACUUM (ANALYZE) after the attribution pass (or on reuse).
    analyze_seconds: float | None = None
    vacuum_seconds: float | None = None

    def rates(self, readings: int) -> tuple[float | None, float | None]:
        load = readings / self.seconds if self.seconds else None
        attr = self.attribution_decided / self.attribution_seconds if self.attribution_seconds else None
        return load, attr


def _kiosks() -> list[Kiosk]:
    main = [Kiosk.make(f"bench-kiosk-{i + 1}", CLINIC, i + 1) for i in range(MAIN_KIOSKS)]
    return [*main, Kiosk.make("bench-other-kiosk-1", OTHER_CLINIC, 100)]


def _existing(conn: Connection, config: Config) -> bool:
    """True when the database already holds this configuration's data; refuses a different one."""
    fresh = "give --db a new path" if engine_of(conn) == "sqlite" else "give --database an empty database"
    if users.clinic_name(conn, CLINIC) is None:
        if conn.execute("SELECT count(*) FROM observations").fetchone()[0]:
            raise BenchError(f"the database holds other readings; {fresh}")
        return False
    have_patients = patients.count(conn, CLINIC)
    have_readings = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    if (have_patients, have_readings) != (config.patients, config.readings):
        raise BenchError(
            f"the database holds {have_patients:,} patients and {have_readings:,} readings, not "
            f"{config.patients:,} and {config.readings:,}; {fresh} or the same sizes"
        )
    return True


def _setup(conn: Connection, specs: list[PatientSpec], kiosks: list[Kiosk], pw: str) -> None:
    """Clinics, the provider who logs in (and two colleagues whose history is in the audit log), patients, kiosks."""
    now = time.time()
    with _txn(conn):
        users.create_clinic(conn, CLINIC, "Bench Clinic", now)
        users.create_clinic(conn, OTHER_CLINIC, "Other Bench Clinic", now)
        staff = [(PROVIDER_EMAIL, "Dr. Bench Provider", pw)]
        staff += [
            (f"provider{i}@bench-clinic.example", f"Dr. Colleague {i}", secrets.token_urlsafe(18)) for i in (2, 3)
        ]
        for email, name, password in staff:
            users.create_user(
                conn, clinic_id=CLINIC, email=email, name=name, role="provider", password=password, now=now
            )
        ids = [
            patients.create(conn, p.clinic, code=p.code, name=p.name, birth_date=p.birth_date, now=now) for p in specs
        ]
        for k in kiosks:
            attribution.assign_kiosk(conn, k.id, k.clinic, now)
        # Shared devices' user slots mapped by staff: slots 1-4 of the first kiosk's new scale, 3-4 of each cuff.
        # No reading carries these slots with a different check-in, so attribution is unchanged by them.
        main = [k for k in kiosks if k.clinic == CLINIC]
        slots = [(main[0], "new_scale", user) for user in (1, 2, 3, 4)]
        slots += [(k, "cuff", user) for k in main for user in (3, 4)]
        provider = users.by_email(conn, PROVIDER_EMAIL)
        for (kiosk, dev, user), patient_id in zip(slots, ids, strict=False):
            conn.execute(
                "INSERT INTO device_user_slots (clinic_id, device_id, device_user, patient_id, device, created_by, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                (CLINIC, kiosk.devices[dev]["id"], user, patient_id, kiosk.device_json[dev],
                 provider.id if provider else None, now),
            )  # fmt: skip


def _audit_history(conn: Connection, rows: int, rng: random.Random, now: float) -> None:
    """A year of the clinic's audit log, as audit.record writes it: patient views, trend views, list views, logins.

    The log is append-only and never pruned, so a year into use it is the largest table after
    the readings; a query on it that no index fits slows every request that runs it. It ends
    an hour ago, so none of it is the benchmark's own session.
    """
    staff = conn.execute("SELECT id, email FROM users WHERE clinic_id = ? ORDER BY id", (CLINIC,)).fetchall()
    ids = [r[0] for r in conn.execute("SELECT id FROM patients WHERE clinic_id = ? ORDER BY id", (CLINIC,))]
    span = DAYS * 86_400 - 3_600
    batch: list[tuple[Any, ...]] = []
    for i in range(rows):
        at = now - DAYS * 86_400 + (i + rng.random()) * span / rows
        user_id, email = rng.choice(staff)
        ip = f"10.0.{rng.randrange(4)}.{rng.randrange(2, 250)}"
        r = rng.random()
        patient_id: str | None = rng.choice(ids)
        target: str | None = None
        detail: dict[str, Any] | None = None
        if r < 0.36:
            action = "view_patient"
            detail = {"since": datetime.fromtimestamp(at - 30 * 86_400, UTC).isoformat()}
        elif r < 0.72:
            action, target = "view_trends", f"{rng.getrandbits(48):012x}"  # the session id's first 12 characters
        elif r < 0.95:
            action, patient_id, detail = "view_patient_list", None, {"page": 1, "searched": r < 0.8}
        else:
            action, patient_id = "login", None
        detail_json = json.dumps(detail, sort_keys=True) if detail else None
        batch.append((at, CLINIC, user_id, email, action, "ok", patient_id, target, ip, detail_json))
        if len(batch) == 100_000 or i == rows - 1:
            with _txn(conn):
                _bulk(conn, "audit", AUDIT_COLUMNS, batch)
            batch.clear()


def _insert(conn: Connection, plan: list[MsgSpec], rows: _Rows, sample: list[str], total: int) -> None:
    """Messages and observations, MESSAGES_PER_TXN messages a transaction, with the INSERTs commit_batch uses."""
    step = max(1, len(plan) // FIDELITY_SAMPLE)
    done = 0
    for start in range(0, len(plan), MESSAGES_PER_TXN):
        messages, observations = rows.build(plan[start : start + MESSAGES_PER_TXN])
        sample.extend(m[0] for i, m in enumerate(messages, start) if i % step == 0)
        with _txn(conn):
            _bulk(conn, "messages", MESSAGE_ROW_COLUMNS, messages)
            _bulk(conn, "observations", OBSERVATION_COLUMNS, observations)
        done += len(observations)
        log.info("loaded %s of %s readings", f"{done:,}", f"{total:,}")
    for k, (first, last, seq, offset) in enumerate(rows.last):
        if seq:  # what commit_batch's kiosk upsert leaves behind
            conn.execute(
                "UPDATE kiosks SET first_seen = ?, last_seen = ?, last_seq = ?, clock_offset_ms = ? WHERE id = ?",
                (first, last, seq, offset, rows.kiosks[k].id),
            )


def _bulk(conn: Connection, table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows into `table`, inside the caller's transaction, the engine's fast way.

    SQLite: `executemany` of the INSERT (in-process, so a statement per row costs little).
    PostgreSQL: COPY, which streams the rows in one statement; an INSERT per row would be a
    round trip per row, and even psycopg's pipelined `executemany` loaded 4.3 times slower
    here (60,000 readings: 6.1 s against 1.4 s).
    """
    if isinstance(conn, PgConnection):
        with conn.raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ",".join("?" * (columns.count(",") + 1))
    conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def _vacuum(conn: Connection, *, full: bool) -> float:
    """PostgreSQL's housekeeping, done now rather than by autovacuum during the measurement; its seconds.

    ANALYZE (after the load): the planner's statistics. A server that took a year of readings a
    few at a time has them; tables filled a minute ago have none, and the planner would guess.
    VACUUM (ANALYZE) (after the attribution pass): the pass rewrote every reading at once,
    leaving a dead row version behind each, which a hub deciding readings as they arrive never
    piles up; autovacuum would clean it up within minutes, and would do so in the middle of
    the measured requests if not now. VACUUM also sets the visibility map that index-only
    scans read, as it is on a running server.
    """
    t0 = time.perf_counter()
    conn.execute("VACUUM (ANALYZE)" if full else "ANALYZE")
    return time.perf_counter() - t0


def _reuse(conn: Connection, password: str, where: Location) -> LoadReport:
    """A database that already holds the data: the provider gets this run's password, a left pass is finished."""
    user = users.by_email(conn, PROVIDER_EMAIL)
    if user is None:
        raise BenchError(f"the database has no {PROVIDER_EMAIL}")
    with _txn(conn):
        users.set_password_hash(conn, user.id, passwords.hash_password(password))
    messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    decided = attribution.run_until_done(conn, time.time())  # finishes a pass an earlier run left
    # On PostgreSQL also a clean-up an earlier run may not have got to (cheap when there is nothing to do).
    vacuum_s = _vacuum(conn, full=True) if engine_of(conn) == "postgresql" else None
    return LoadReport(True, None, messages, None, None, None, decided, 0, _size(where), None, vacuum_s)


def load(config: Config, db: Path | Location, password: str, scratch: Path) -> LoadReport:
    """Fill `db` (or reuse it), attribute every reading with the real pass, and check fidelity on a sample."""
    where = parse_location(db)
    postgres = isinstance(where, PostgresLocation)
    analyze_s: float | None = None
    store = HubStore(where)
    try:
        conn = store.conn
        if _existing(conn, config):
            return _reuse(conn, password, where)
        kiosks = _kiosks()
        started = time.perf_counter()
        gc.disable()  # millions of small tuples: the collector would re-walk them all, many times
        try:
            specs = _patients(config, random.Random(config.seed), kiosks)
            _setup(conn, specs, kiosks, password)
            now_ms = int(time.time() * 1000)
            plan = _plan(config, specs, kiosks, now_ms)
            rows = _Rows(
                kiosks, random.Random(config.seed + 1), _Minter(random.Random(config.seed + 2)),
                [0] * len(kiosks), [(0.0, 0.0, 0, 0.0)] * len(kiosks), now_ms - SCALE_REPLACED_DAYS * 86_400_000,
            )  # fmt: skip
            # A setup step, not a measured one: no fsync per transaction, and (SQLite) the indexes kept in memory.
            # On PostgreSQL for this session only; the server's own settings are what the measured part meets.
            if postgres:
                conn.execute("SET synchronous_commit = off")
            else:
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute("PRAGMA cache_size=-1000000")
            sample: list[str] = []
            t_insert = time.perf_counter()
            _insert(conn, plan, rows, sample, config.readings)
            insert_s = time.perf_counter() - t_insert
            load_s = time.perf_counter() - started
            del plan, rows
            t_audit = time.perf_counter()
            _audit_history(conn, config.audit_rows, random.Random(config.seed + 6), time.time())
            audit_s = time.perf_counter() - t_audit
        finally:
            gc.enable()
        if postgres:
            analyze_s = _vacuum(conn, full=False)
    finally:
        store.close()
    # The attribution pass as the hub runs it: a fresh store, WAL, synchronous=FULL, 5,000 rows a transaction
    # (on PostgreSQL: a fresh session, with the server's own commit settings).
    store = HubStore(where)
    try:
        log.info("attribution pass over %s readings", f"{config.readings:,}")
        t0 = time.perf_counter()
        decided = attribution.run_until_done(store.conn, time.time())
        attr_s = time.perf_counter() - t0
        checked = check_fidelity(store.conn, sample, where if isinstance(where, PostgresLocation) else scratch)
        messages = store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        vacuum_s = _vacuum(store.conn, full=True) if postgres else None
    finally:
        store.close()
    size = _size(where)  # SQLite: after the last connection closed, which checkpointed the WAL into the file
    return LoadReport(False, load_s, messages, insert_s, audit_s, attr_s, decided, checked, size, analyze_s, vacuum_s)


@contextlib.contextmanager
def _txn(conn: Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _size(where: Location) -> int:
    """The database's bytes on disk: the SQLite file and its WAL, or PostgreSQL's whole database."""
    if isinstance(where, SqliteLocation):
        db = where.path
        return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    with contextlib.closing(connect(where, read_only=True)) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


MESSAGE_COLUMNS = "id, kiosk, seq, kind, device_time, clock_offset_ms, received_at, raw"
# Every column of messages, in the order _Rows.build gives them.
MESSAGE_ROW_COLUMNS = "id, kiosk, seq, kind, device_time, clock_offset_ms, received_at, committed_at, raw"
AUDIT_COLUMNS = "at, clinic_id, actor_user, actor, action, outcome, patient_id, target, ip, detail"
OBSERVATION_COLUMNS = (
    "message_id, idx, kiosk, seq, code, value, unit, effective, clock_offset_ms, device_id, device, flags, "
    "subject, device_user, device_sequence, device_clock_offset_s, method, quality"
)


@contextlib.contextmanager
def _reference_store(scratch: Path | PostgresLocation) -> Iterator[HubStore]:
    """An empty hub store on the same engine as the loaded one, for commit_batch to write into; removed after.

    SQLite: a file in the scratch folder. PostgreSQL: a schema of the bench's own database
    (its owner may create one; it may not be allowed to create a database), migrated like a
    new hub's, so commit_batch writes through the same server and column types the loader's
    COPY did, and the comparison proves the rows equal on this engine, not on another.
    """
    if isinstance(scratch, PostgresLocation):
        ref = HubStore(scratch)
        try:
            ref.conn.execute(f"DROP SCHEMA IF EXISTS {FIDELITY_SCHEMA} CASCADE")  # a killed run's
            ref.conn.execute(f"CREATE SCHEMA {FIDELITY_SCHEMA}")
            ref.conn.execute(f"SET search_path TO {FIDELITY_SCHEMA}")
            migrate(ref.conn)
            yield ref
        finally:
            with contextlib.suppress(*DatabaseError):
                ref.conn.execute(f"DROP SCHEMA IF EXISTS {FIDELITY_SCHEMA} CASCADE")
            ref.close()
        return
    path = scratch / "fidelity.db"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    ref = HubStore(path)
    try:
        yield ref
    finally:
        ref.close()
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


def check_fidelity(conn: Connection, message_ids: list[str], scratch: Path | PostgresLocation) -> int:
    """Re-commit stored messages through the real parse_envelope + commit_batch; every column must match.

    This is what makes the fast loader trustworthy: the raw envelope is canonical (encode()
    gives back the same bytes), passes the wire contract's validation, and commit_batch
    writes exactly the rows the loader wrote. Returns how many messages were checked.
    `scratch`: where the reference store goes (see _reference_store): a folder for a SQLite
    file, or the PostgreSQL database `conn` is connected to.
    """
    if not message_ids:
        return 0
    stored: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(message_ids), 400):
        chunk = message_ids[start : start + 400]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks})", chunk):
            stored[row[0]] = tuple(row)
    accepted = []
    for message_id in message_ids:
        raw = stored[message_id][-1]
        env = parse_envelope(raw)
        if encode(env) != raw.encode():
            raise BenchError(f"message {message_id}: the stored envelope is not in canonical form")
        accepted.append(Accepted(env, raw.encode(), stored[message_id][6]))
    with _reference_store(scratch) as ref:
        ref.commit_batch(accepted, [])
        for message_id in message_ids:
            query = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
            if ref.conn.execute(query, (message_id,)).fetchone() != stored[message_id]:
                raise BenchError(f"message {message_id}: its messages row differs from what commit_batch writes")
            obs = f"SELECT {OBSERVATION_COLUMNS} FROM observations WHERE message_id = ? ORDER BY idx"
            ours = conn.execute(obs, (message_id,)).fetchall()
            theirs = ref.conn.execute(obs, (message_id,)).fetchall()
            if ours != theirs:
                raise BenchError(f"message {message_id}: observations differ from commit_batch's\n{ours}\n{theirs}")
    return len(message_ids)


def counts(conn: Connection) -> dict[str, int]:
    """What is in the database, and whether every reading went to a patient of its kiosk's clinic."""

    def one(sql: str, *params: Any) -> int:
        return int(conn.execute(sql, params).fetchone()[0])

    return {
        "messages": one("SELECT count(*) FROM messages"),
        "readings": one("SELECT count(*) FROM observations"),
        "patients": one("SELECT count(*) FROM patients WHERE clinic_id = ?", CLINIC),
        "other_clinic_patients": one("SELECT count(*) FROM patients WHERE clinic_id = ?", OTHER_CLINIC),
        "audit_entries": one("SELECT count(*) FROM audit"),
        "attributed": one("SELECT count(*) FROM observations WHERE attribution = 'attributed'"),
        "queued": one("SELECT count(*) FROM observations WHERE attribution = 'queued'"),
        "undecided": one("SELECT count(*) FROM observations WHERE attribution IS NULL"),
        "attributed_other_clinic": one(
            "SELECT count(*) FROM observations WHERE attribution = 'attributed' AND clinic_id = ?", OTHER_CLINIC
        ),
        # Each must be 0: a reading under a patient of another clinic than its kiosk's, or of no known patient.
        # A NULL anywhere counts too: an attributed reading has a clinic and a patient. (Not SQLite's `IS NOT`,
        # which PostgreSQL does not read.)
        "cross_clinic": one(
            "SELECT count(*) FROM observations o JOIN kiosks k ON k.id = o.kiosk "
            "LEFT JOIN patients p ON p.id = o.patient_id "
            "WHERE o.attribution = 'attributed' "
            "AND NOT coalesce(o.clinic_id = k.clinic_id AND p.clinic_id = k.clinic_id, FALSE)"
        ),
    }


# -- the server ----------------------------------------------------------------------------------


def serve_child(db: str) -> None:
    """Entry of the server process: the real app under uvicorn, configured as `hub serve` configures it.

    `db`: a SQLite file's path or a postgresql:// URL (the parent passes a URL in $HUB_DATABASE).

    It binds a free loopback port itself and prints it (no race for the port), and it stops
    when its stdin closes: the parent closes it to stop us, and the kernel closes it when the
    parent dies, so a killed benchmark leaves no server behind.
    """
    import uvicorn  # noqa: PLC0415 - only the child needs it

    from hub.app import create_app  # noqa: PLC0415

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    app = create_app(parse_location(db), settings=WebSettings(secure_cookies=False))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))

    def watch_parent() -> None:
        sys.stdin.buffer.read()
        server.should_exit = True
        time.sleep(SERVER_STOP_S)
        os._exit(3)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    print(sock.getsockname()[1], flush=True)
    server.run(sockets=[sock])


@contextlib.contextmanager
def _server(where: Location) -> Iterator[tuple[str, int]]:
    """Start the server process, wait until /healthz answers, and always stop it (exceptions, Ctrl-C, SIGTERM).

    A PostgreSQL URL goes in the environment, as `hub` commands take one: argv is what `ps` shows.
    """
    import httpx  # noqa: PLC0415

    argv = [sys.executable, "-m", "hub.bench_workspace", "serve"]
    env = dict(os.environ)
    if isinstance(where, SqliteLocation):
        argv.append(str(where.path))
    else:
        env[DATABASE_ENV] = where.url
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
    )
    try:
        assert proc.stdout is not None
        # selectors (epoll), not select.select: inside a long test run our descriptors can pass 1024.
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(SERVER_START_S)
        line = proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            raise BenchError(f"the server process did not start (exit code {proc.poll()})")
        base = f"http://127.0.0.1:{int(line)}"
        deadline = time.monotonic() + SERVER_START_S
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("the server never answered /healthz")
            time.sleep(0.05)
        yield base, proc.pid
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(SERVER_STOP_S)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(SERVER_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Stats:
        ms = sorted(s * 1000 for s in seconds)
        p95 = ms[max(0, math.ceil(0.95 * len(ms)) - 1)]  # nearest rank
        return cls(len(ms), statistics.median(ms), p95, ms[-1], statistics.fmean(ms))


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    target: bool  # held to p95 < 100 ms
    group: str  # patient_list | patient_page | floor
    most: int | None = None  # fewer requests than --requests (a kind that may take long until fixed)

    def count(self, requests: int) -> int:
        return requests if self.most is None else min(requests, self.most)


KINDS = [
    Kind("healthz", "/healthz (the floor)", False, "floor"),
    Kind("patient_list", "patient list, page 1", True, "patient_list"),
    Kind("patient_list_search", "patient list, name search", True, "patient_list"),
    Kind("patient_list_deep", "patient list, deep page", True, "patient_list"),
    Kind("patient_page_30d", "patient page, 30 days", True, "patient_page"),
    Kind("patient_page_365d", "patient page, 365 days", True, "patient_page"),
    Kind("trends_365d", "its trends.json, 365 days", True, "patient_page"),
    Kind("patient_page_new_scale", "patient page, slot on a new scale", True, "patient_page", SLOW_KIND_REQUESTS),
]


@dataclass(frozen=True)
class Targets:
    """Who and what the requests ask for: a random sample of patients, name fragments, the deep page.

    Also the few patients with a user slot on the first kiosk's new scale: their pages list the
    slot with the device as last seen in a reading, which is a different query.
    """

    patient_ids: list[str]
    fragments: list[str]
    deep_page: int
    new_scale_ids: list[str]

    @classmethod
    def pick(cls, conn: Connection, n: int, rng: random.Random) -> Targets:
        rows = conn.execute("SELECT id, name FROM patients WHERE clinic_id = ? ORDER BY id", (CLINIC,)).fetchall()
        chosen = rng.sample(rows, min(n, len(rows)))
        fragments = []
        for _, name in chosen:
            last = name.split()[-1]
            start = rng.randrange(max(1, len(last) - 2))
            fragments.append(last[start : start + 3])
        pages = max(1, math.ceil(len(rows) / PAGE))
        new_scale = _kiosks()[0].devices["new_scale"]["id"]
        slotted = conn.execute(
            "SELECT patient_id FROM device_user_slots WHERE clinic_id = ? AND device_id = ? ORDER BY device_user",
            (CLINIC, new_scale),
        ).fetchall()
        return cls([r[0] for r in chosen], fragments, min(DEEP_PAGE, pages), [r[0] for r in slotted])

    def url(self, kind: str, i: int) -> str:
        pid = self.patient_ids[i % len(self.patient_ids)]
        return {
            "healthz": "/healthz",
            "patient_list": "/patients",
            "patient_list_search": f"/patients?q={quote(self.fragments[i % len(self.fragments)])}",
            "patient_list_deep": f"/patients?page={self.deep_page}",
            "patient_page_30d": f"/patients/{pid}",
            "patient_page_365d": f"/patients/{pid}?range=365d",
            "trends_365d": f"/patients/{pid}/trends.json?range=365d",
            "patient_page_new_scale": f"/patients/{self.new_scale_ids[i % len(self.new_scale_ids)]}",
        }[kind]


def _login(client: httpx.Client, password: str) -> str:
    """As a browser: the login form sets the login-CSRF cookie, the POST sets the session cookie."""
    form = client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if form.status_code != 200 or found is None:
        raise BenchError(f"GET /login answered {form.status_code} without a CSRF token")
    data = {"email": PROVIDER_EMAIL, "password": password, "csrf_token": found[1], "next": "/patients"}
    answer = client.post("/login", data=data)
    token = client.cookies.get("session")
    if answer.status_code != 303 or not token:
        raise BenchError(f"POST /login answered {answer.status_code} without a session cookie")
    return token


@dataclass(frozen=True)
class HttpResult:
    stats: dict[str, Stats]
    bytes_p50: dict[str, int]
    server_cpu_s: float
    client_cpu_s: float
    wall_s: float
    requests: int


def measure_http(base: str, pid: int, password: str, targets: Targets, config: Config) -> tuple[HttpResult, str]:
    """Sequential requests, every kind interleaved in one shuffled order; returns the figures and the session."""
    import httpx  # noqa: PLC0415 - a dev dependency; `hub serve` must not need it

    rng = random.Random(config.seed + 3)
    headers = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "user-agent": "hub-bench-workspace"}
    with httpx.Client(base_url=base, headers=headers, timeout=60, follow_redirects=False) as client:
        token = _login(client, password)
        warm = [(k.key, targets.url(k.key, -1 - i)) for k in KINDS for i in range(config.warmup)]
        jobs = [(k.key, targets.url(k.key, i)) for k in KINDS for i in range(k.count(config.requests))]
        rng.shuffle(warm)
        rng.shuffle(jobs)
        times: dict[str, list[float]] = {k.key: [] for k in KINDS}
        sizes: dict[str, list[int]] = {k.key: [] for k in KINDS}
        for _kind, url in warm:
            _get(client, url)
        cpu0, own0, wall0 = _cpu_seconds(pid), time.process_time(), time.perf_counter()
        for i, (kind, url) in enumerate(jobs):
            t0 = time.perf_counter()
            size = _get(client, url)
            times[kind].append(time.perf_counter() - t0)
            sizes[kind].append(size)
            if (i + 1) % 500 == 0:
                log.info("%s of %s requests", f"{i + 1:,}", f"{len(jobs):,}")
        wall = time.perf_counter() - wall0
        cpu, own = _cpu_seconds(pid) - cpu0, time.process_time() - own0
    return (
        HttpResult(
            {k: Stats.of(v) for k, v in times.items()},
            {k: int(statistics.median(v)) for k, v in sizes.items()},
            cpu,
            own,
            wall,
            len(jobs),
        ),
        token,
    )


def _get(client: httpx.Client, url: str) -> int:
    response = client.get(url)
    if response.status_code != 200:
        raise BenchError(f"GET {url} answered {response.status_code}")
    return len(response.content)


def measure_db(db: Location, targets: Targets, token: str, config: Config) -> dict[str, Stats]:
    """The handlers' data work alone, in this process, on a connection set up as the server's request threads.

    The same functions the routes call, for the same patients, without HTTP, session, audit
    or template: the difference to the HTTP figure is what the rest costs. Also timed alone:
    the session check every page does first, and the audit row every view writes.
    """
    ws = Workspace(db, WebSettings(secure_cookies=False))
    try:
        conn = ws.conn()
        now = ws.now()
        with ws.write() as w:
            me = sessions.lookup(w, token, now, ws.settings.sessions)
        if me is None:
            raise BenchError("the benchmark's session ended")
        day30 = review.TimeRange.last(RANGES["30d"], datetime.fromtimestamp(now, UTC))
        day365 = review.TimeRange.last(RANGES["365d"], datetime.fromtimestamp(now, UTC))

        def listing(q: str, page: int) -> None:
            patients.search(conn, CLINIC, q, offset=(page - 1) * PAGE, limit=PAGE + 1)
            patients.count(conn, CLINIC)
            attribution.queue_size(conn, CLINIC)

        def page(pid: str, rng: review.TimeRange) -> None:
            patients.get(conn, CLINIC, pid)
            review.readings(conn, CLINIC, pid, rng, limit=PAGE + 1)
            attribution.slots_of(conn, CLINIC, pid)

        def trends(pid: str) -> None:
            patients.get(conn, CLINIC, pid)
            review.trends(conn, CLINIC, pid, day365)

        def trends_audit_check(i: int) -> None:
            pid = ids[i % len(ids)]
            conn.execute(TRENDS_AUDIT_SQL, (me.user_id, pid, ws.now() - ws.settings.audit_refresh_s, me.id[:12]))

        def session_check(_: int) -> None:
            with ws.write() as w:
                found = sessions.lookup(w, token, ws.now(), ws.settings.sessions)
                if found is None:
                    raise BenchError("the benchmark's session ended")
                users.by_id(w, found.user_id)

        actor = audit.Actor("bench-probe", CLINIC)

        def audit_write(i: int) -> None:
            with ws.write() as w:
                pid = targets.patient_ids[i % len(targets.patient_ids)]
                audit.record(w, actor, "view_patient", ws.now(), patient_id=pid, detail={"since": "bench"})

        ids, frags, slotted = targets.patient_ids, targets.fragments, targets.new_scale_ids
        work: dict[str, Callable[[int], None]] = {
            "patient_list": lambda i: listing("", 1),
            "patient_list_search": lambda i: listing(frags[i % len(frags)], 1),
            "patient_list_deep": lambda i: listing("", targets.deep_page),
            "patient_page_30d": lambda i: page(ids[i % len(ids)], day30),
            "patient_page_365d": lambda i: page(ids[i % len(ids)], day365),
            "trends_365d": lambda i: trends(ids[i % len(ids)]),
            "patient_page_new_scale": lambda i: page(slotted[i % len(slotted)], day30),
            "trends_audit_check": trends_audit_check,
            "session_check": session_check,
            "audit_write": audit_write,
        }
        most = {k.key: k.count(config.requests) for k in KINDS}
        jobs = [(key, i) for key in work for i in range(most.get(key, config.requests))]
        random.Random(config.seed + 4).shuffle(jobs)
        for key, i in jobs[: config.warmup * len(work)]:
            work[key](i)
        times: dict[str, list[float]] = {key: [] for key in work}
        for key, i in jobs:
            t0 = time.perf_counter()
            work[key](i)
            times[key].append(time.perf_counter() - t0)
        return {k: Stats.of(v) for k, v in times.items()}
    finally:
        conn = ws.conn()  # this thread's connection; the workspace opens no other here
        conn.close()


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    config: Config
    db: str  # the SQLite path, or the PostgreSQL URL without its password
    store: str  # sqlite | postgresql
    where: str
    durability: str  # what a commit waits for, as the measured server commits
    load: LoadReport
    counts: dict[str, int]
    http: HttpResult
    db_work: dict[str, Stats]
    deep_page: int
    sampled: int  # different patients the requests ask for
    server_pid: int
    runtime_s: float

    def p95(self, key: str) -> float:
        return self.http.stats[key].p95_ms

    def targets(self) -> dict[str, bool]:
        met = {k.key: self.p95(k.key) < TARGET_P95_MS for k in KINDS if k.target}
        groups = {g: all(met[k.key] for k in KINDS if k.group == g) for g in ("patient_list", "patient_page")}
        return {**groups, **met}

    def audit_share(self) -> float:
        """The audit write's share of the patient page's median time."""
        return self.db_work["audit_write"].p50_ms / self.http.stats["patient_page_30d"].p50_ms

    def as_json(self) -> dict[str, Any]:
        floor = self.p95("healthz")
        load_rate, attr_rate = self.load.rates(self.config.readings)
        http = {
            k.key: {**vars(self.http.stats[k.key]), "bytes_p50": self.http.bytes_p50[k.key],
                    "p95_vs_floor": self.p95(k.key) / floor if floor else None,
                    "target_met": self.p95(k.key) < TARGET_P95_MS if k.target else None}
            for k in KINDS
        }  # fmt: skip
        groups = {g: max(self.p95(k.key) for k in KINDS if k.group == g) for g in ("patient_list", "patient_page")}
        out: dict[str, Any] = _json_safe(
            {
                "patients": self.config.patients,
                "other_clinic_patients": self.config.other_patients,
                "readings": self.config.readings,
                "queued_readings": self.config.queued,
                "audit_rows_preloaded": self.config.audit_rows,
                "requests_per_kind": self.config.requests,
                "warmup_per_kind": self.config.warmup,
                "store": self.store,
                "db": self.db,
                "db_location": self.where,
                "db_bytes": self.load.db_bytes,
                "reused_db": self.load.reused,
                "cores": os.cpu_count(),
                "load_seconds": self.load.seconds,
                "load_insert_seconds": self.load.insert_seconds,
                "audit_history_seconds": self.load.audit_seconds,
                "load_readings_per_s": load_rate,
                "attribution_seconds": self.load.attribution_seconds,
                "analyze_seconds": self.load.analyze_seconds,
                "vacuum_seconds": self.load.vacuum_seconds,
                "attribution_readings_per_s": attr_rate,
                "attribution_decided": self.load.attribution_decided,
                "fidelity_messages_checked": self.load.fidelity_checked,
                "counts": self.counts,
                "deep_page": self.deep_page,
                "target_p95_ms": TARGET_P95_MS,
                "patient_list_p95_ms": groups["patient_list"],
                "patient_page_p95_ms": groups["patient_page"],
                "healthz_p95_ms": floor,
                "http": http,
                "db_work": {k: vars(v) for k, v in self.db_work.items()},
                "audit_write_share_of_patient_page_p50": self.audit_share(),
                "server_cpu_ms_per_request": 1000 * self.http.server_cpu_s / self.http.requests,
                "client_cpu_ms_per_request": 1000 * self.http.client_cpu_s / self.http.requests,
                "http_wall_seconds": self.http.wall_s,
                "targets": self.targets(),
                "server_pid": self.server_pid,
                "runtime_s": self.runtime_s,
            }
        )
        return out

    def lines(self) -> list[str]:
        c, ld, n = self.config, self.load, self.counts
        load_rate, attr_rate = ld.rates(c.readings)
        out = [
            f"hub bench workspace: {c.patients:,} patients (+{c.other_patients:,} in a second clinic), "
            f"{c.readings:,} readings over {DAYS} days from {MAIN_KIOSKS}+1 kiosks, {os.cpu_count()} cores",
            f"database {self.db} ({self.where}), {ld.db_bytes / 1e6:,.0f} MB",
        ]
        if ld.reused:
            out.append(
                f"load          reused (already held the data); attribution pass finished {ld.attribution_decided:,}"
            )
        else:
            inserts = "inserts" if self.store == "sqlite" else "COPY"
            out += [
                f"load          {c.readings:,} readings in {ld.messages:,} messages: {ld.seconds:.1f} s "
                f"({load_rate:,.0f} readings/s; {inserts} alone {ld.insert_seconds:.1f} s)",
                f"audit log     {c.audit_rows:,} entries of the past year in {ld.audit_seconds:.1f} s",
                f"attribution   {ld.attribution_decided:,} readings decided in {ld.attribution_seconds:.1f} s "
                f"({attr_rate:,.0f} readings/s, real pass, {self.durability})",
                f"fidelity      {ld.fidelity_checked} sampled messages re-committed through commit_batch: "
                "identical rows, canonical envelopes",
            ]
        if ld.vacuum_seconds is not None:
            analyzed = "" if ld.analyze_seconds is None else f"ANALYZE after the load {ld.analyze_seconds:.1f} s, "
            out.append(
                f"statistics    {analyzed}VACUUM (ANALYZE) after the pass {ld.vacuum_seconds:.1f} s "
                "(what autovacuum would do; not in the load time)"
            )
        out.append(
            f"contents      {n['attributed']:,} attributed, {n['queued']:,} queued, {n['undecided']} undecided, "
            f"{n['attributed_other_clinic']:,} in the second clinic, {n['cross_clinic']} across clinics; "
            f"{n['audit_entries']:,} audit log entries"
        )
        h = self.http
        floor = self.p95("healthz")
        out += [
            "",
            f"HTTP: server in its own process (uvicorn as `hub serve`), one logged-in client, sequential; "
            f"{c.requests} requests per kind after {c.warmup} warm-up, kinds interleaved, "
            f"{self.sampled} different patients",
            f"{'':36}{'p50':>9}{'p95':>9}{'max':>9}{'p95/floor':>11}{'bytes':>9}   target p95 < {TARGET_P95_MS:g} ms",
        ]
        for k in KINDS:
            s = h.stats[k.key]
            label = k.label if k.key != "patient_list_deep" else f"{k.label} ({self.deep_page})"
            verdict = ("PASS" if s.p95_ms < TARGET_P95_MS else "MISS") if k.target else ""
            out.append(
                f"{label:36}{s.p50_ms:7.1f}ms{s.p95_ms:7.1f}ms{s.max_ms:7.1f}ms{s.p95_ms / floor:10.1f}x"
                f"{h.bytes_p50[k.key]:9,}   {verdict}"
            )
        out.append(
            f"server CPU {1000 * h.server_cpu_s / h.requests:.1f} ms/request, client CPU "
            f"{1000 * h.client_cpu_s / h.requests:.1f} ms/request, {h.requests:,} requests in {h.wall_s:.1f} s"
        )
        out += ["", "Where the time goes (same work in this process, no HTTP):", f"{'':36}{'p50':>9}{'p95':>9}"]
        labels = {k.key: k.label for k in KINDS} | {
            "trends_audit_check": "trends.json's audit de-dupe query",
            "session_check": "session check (every page)",
            "audit_write": "audit row write (every view)",
        }
        for key, s in self.db_work.items():
            out.append(f"{labels[key]:36}{s.p50_ms:7.2f}ms{s.p95_ms:7.2f}ms")
        write = (
            "BEGIN IMMEDIATE, INSERT, COMMIT with a WAL fsync"
            if self.store == "sqlite"
            else f"BEGIN and the writers' advisory lock, INSERT, COMMIT with {self.durability}"
        )
        out.append(f"the audit write ({write}) is {self.audit_share():.0%} of the patient page's median")
        t = self.targets()
        out += [
            "",
            f"targets: patient list p95 < {TARGET_P95_MS:g} ms {'PASS' if t['patient_list'] else 'MISS'}, "
            f"patient page (and its trends) p95 < {TARGET_P95_MS:g} ms {'PASS' if t['patient_page'] else 'MISS'}",
            f"runtime {self.runtime_s:.1f} s",
        ]
        return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _where(where: Location, conn: Connection) -> tuple[str, str]:
    """Where the database is and what a commit waits for there, so a reader knows whether fsync cost anything.

    SQLite: the filesystem the file is on (tmpfs makes fsync free), and synchronous=FULL, the
    hub's. PostgreSQL: the server's version and its own settings (fsync off, or
    synchronous_commit off, make commits cheaper than a durable server's); its data folder
    may be on another machine, so no filesystem is named.
    """
    if isinstance(where, SqliteLocation):
        return _filesystem(where.path), "synchronous=FULL"

    def show(name: str) -> str:
        return str(conn.execute(f"SHOW {name}").fetchone()[0])

    version, fsync, sync = show("server_version"), show("fsync"), show("synchronous_commit")
    return f"PostgreSQL {version.split()[0]}, fsync {fsync}", f"synchronous_commit={sync}"


def _filesystem(path: Path) -> str:
    """The filesystem a SQLite file is on."""
    best, fstype = "", "?"
    target = str(path.resolve().parent)
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, fstype = mount, parts[2]
    kind = "tmpfs, fsync free" if fstype == "tmpfs" else "on disk"
    return f"{fstype} at {best or '?'}, {kind}"


def _run(config: Config, db: Location, scratch: Path) -> Report:
    started = time.monotonic()
    password = secrets.token_urlsafe(18)
    report = load(config, db, password, scratch)
    with contextlib.closing(connect(db)) as conn:
        found = counts(conn)
        targets = Targets.pick(conn, config.requests, random.Random(config.seed + 5))
        where, durability = _where(db, conn)
    log.info("serving %s; %s requests per kind", db.describe(), config.requests)
    with _server(db) as (base, pid):
        http, token = measure_http(base, pid, password, targets, config)
        db_work = measure_db(db, targets, token, config)
    return Report(
        config,
        db.describe(),
        db.engine,
        where,
        durability,
        report,
        found,
        http,
        db_work,
        targets.deep_page,
        len(targets.patient_ids),
        pid,
        time.monotonic() - started,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        import httpx  # noqa: F401, PLC0415 - checked before a long load, not after
    except ImportError:
        print("hub bench workspace needs httpx: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    parent = "/dev/shm" if config.tmpfs else None  # noqa: S108 - tmpfs on purpose; the folder in it is private
    try:
        with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="hub-bench-workspace-", dir=parent) as tmp:
            report = _run(config, config.location(Path(tmp)), Path(tmp))
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print("\n".join(report.lines()))
    return 0


def main(argv: list[str]) -> int:
    """`python -m hub.bench_workspace serve [DB]`: the server process (see serve_child); no DB: $HUB_DATABASE."""
    db = argv[1] if len(argv) == 2 else os.environ.get(DATABASE_ENV, "")
    if not argv or argv[0] != "serve" or len(argv) > 2 or not db:
        usage = "usage: python -m hub.bench_workspace serve [DB] (started by `hub bench workspace`)"
        print(f"{usage}; without DB, ${DATABASE_ENV}", file=sys.stderr)
        return 2
    serve_child(db)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
