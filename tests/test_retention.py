"""Retention: the hub purges what is past keeping, keeps the clinical record unless the clinic says otherwise,
never purges what is still open, and leaves no purged bytes in its database file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.attachments import chunk_payloads
from device.outbox import Outbox
from device.protocol import encode, parse_envelope
from device.simulate import single_reading
from hub.accounts.users import create_clinic, create_user
from hub.db import Location, SqliteLocation
from hub.retention import DAY_S, Retention, apply
from hub.store import Accepted, DeadLetter, HubStore
from tests.harness import REPO

NOW = 1_800_000_000.0
OLD = NOW - 400 * DAY_S
RECENT = NOW - 5 * DAY_S
KIOSK = "k-keep"
MARK = b"PLANTED-7731"  # stands for a reading inside a dead letter's raw bytes


def commit(store: HubStore, box: Outbox, kind: str, payload: object, at: float) -> str:
    env = box.enqueue(kind, payload)
    raw = encode(env)
    store.commit_batch([Accepted(parse_envelope(raw), raw, at, f"kiosk/{KIOSK}/up/{kind}")], [], now=at)
    return env.id


def case(store: HubStore, box: Outbox, at: float, *, closed: bool) -> tuple[str, str]:
    """A case with one photo, received at `at`; closed then, or still open."""
    import uuid
    from datetime import UTC, datetime

    photo = chunk_payloads(b"\xff\xd8" + MARK + b" photo", subject="P1")[0]
    commit(store, box, "attachment", photo, at)
    case_id = str(uuid.uuid4())
    commit(store, box, "case", {
        "case": case_id, "subject": "P1", "questionnaire": {"id": "general-intake", "version": 1}, "answers": [],
        "text": "itchy", "attachments": [photo["attachment"]],
        "created": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
    }, at)  # fmt: skip
    if closed:
        store.conn.execute("UPDATE cases SET state = 'closed', closed_at = ? WHERE id = ?", (at, case_id))
    return case_id, str(photo["attachment"])


@pytest.fixture
def world(tmp_path: Path, hub_database: Location) -> Iterator[tuple[HubStore, Outbox]]:
    """The hub's store on each engine, and a kiosk's outbox to make real envelopes."""
    store = HubStore(hub_database)
    box = Outbox(tmp_path / "kiosk.db", KIOSK)
    yield store, box
    box.close()
    store.close()


def count(store: HubStore, sql: str, *params: object) -> int:
    return int(store.conn.execute(f"SELECT count(*) FROM {sql}", params).fetchone()[0])


def file_bytes(store: HubStore) -> bytes | None:
    """The SQLite file and its write-ahead log as they lie on disk; None for PostgreSQL, whose files are the
    server's (there the server's vacuum reclaims purged rows: README, Retention)."""
    if not isinstance(store.location, SqliteLocation):
        return None
    return b"".join(p.read_bytes() for p in store.path.parent.glob(f"{store.path.name}*"))


def test_defaults_purge_leftovers_keep_the_record_and_leave_no_bytes(world: tuple[HubStore, Outbox]) -> None:
    import random
    from datetime import UTC, datetime

    store, box = world
    old_letter = DeadLetter.build(f"kiosk/{KIOSK}/up/observations", "invalid envelope: x", b"{" + MARK, OLD)
    new_letter = DeadLetter.build(f"kiosk/{KIOSK}/up/observations", "invalid envelope: y", b"{recent", RECENT)
    store.commit_batch([], [old_letter], now=OLD)
    store.commit_batch([], [new_letter], now=RECENT)
    reading = commit(
        store, box, "observations", single_reading(random.Random(1), datetime.fromtimestamp(OLD, UTC)), OLD
    )
    conn = store.conn
    create_clinic(conn, "north", "North", OLD)
    user = create_user(
        conn, clinic_id="north", email="p@north.example", name="P", role="provider", password="x" * 16, now=OLD
    )
    for name, delivered in (("d-old", OLD), ("d-waiting", None)):
        conn.execute(
            "INSERT INTO downlink (id, kiosk, kind, body, created_at, delivered_at) VALUES (?,?,?,?,?,?)",
            (name, KIOSK, "case_answer", '{"answer": "planted"}', OLD, delivered),
        )
    conn.execute(
        "INSERT INTO sessions (id, user_id, stage, csrf, created_at, last_seen, ended_at) VALUES (?,?,?,?,?,?,?)",
        ("s-old", user, "active", "c", OLD, OLD, OLD),
    )
    conn.execute(
        "INSERT INTO sessions (id, user_id, stage, csrf, created_at, last_seen) VALUES (?,?,?,?,?,?)",
        ("s-live", user, "active", "c", OLD, NOW),
    )
    conn.execute("INSERT INTO login_failures (key, at) VALUES ('ip:10.0.0.9', ?)", (OLD,))
    before = file_bytes(store)
    assert before is None or MARK in before

    purged = apply(conn, Retention(), NOW)

    assert purged["dead letters"] == 1 and purged["delivered messages"] == 1
    assert purged["ended sessions"] == 1 and purged["failed logins"] == 1
    assert count(store, "dead_letters") == 1 and count(store, "dead_letters WHERE raw = ?", b"{recent") == 1
    assert [r[0] for r in conn.execute("SELECT id FROM downlink")] == ["d-waiting"]
    assert [r[0] for r in conn.execute("SELECT id FROM sessions")] == ["s-live"]
    # The clinical record is the clinic's decision: a 400-day-old reading is still there.
    assert count(store, "messages WHERE id = ?", reading) == 1 and count(store, "observations") > 0
    # Gone from the file, not only from the table (secure_delete, then the WAL truncated).
    after = file_bytes(store)
    assert after is None or MARK not in after
    [(action, detail)] = conn.execute("SELECT action, detail FROM audit").fetchall()
    assert action == "retention.purge" and '"dead letters": 1' in detail and "PLANTED" not in detail
    assert apply(conn, Retention(), NOW) == dict.fromkeys(purged, 0), "a second run finds nothing"


def test_a_clinical_period_purges_closed_records_and_never_open_ones(world: tuple[HubStore, Outbox]) -> None:
    import random
    from datetime import UTC, datetime

    store, box = world
    rng = random.Random(2)
    old = commit(store, box, "observations", single_reading(rng, datetime.fromtimestamp(OLD, UTC)), OLD)
    recent = commit(store, box, "observations", single_reading(rng, datetime.fromtimestamp(RECENT, UTC)), RECENT)
    closed_case, closed_photo = case(store, box, OLD, closed=True)
    open_case, open_photo = case(store, box, OLD, closed=False)
    conn = store.conn

    dry = apply(conn, Retention(clinical_records_days=365), NOW, dry_run=True)
    assert dry["readings"] == 1 and dry["closed cases"] == 1 and dry["photos"] == 1
    assert count(store, "messages WHERE id = ?", old) == 1, "a dry run deletes nothing"

    apply(conn, Retention(clinical_records_days=365), NOW)
    assert count(store, "messages WHERE id = ?", old) == 0
    assert count(store, "observations WHERE message_id = ?", old) == 0
    assert count(store, "messages WHERE id = ?", recent) == 1
    assert count(store, "observations WHERE message_id = ?", recent) == 1
    assert [r[0] for r in conn.execute("SELECT id FROM cases")] == [open_case]
    assert [r[0] for r in conn.execute("SELECT id FROM attachments")] == [open_photo]
    assert closed_case != open_case and closed_photo != open_photo


def test_the_setting_is_checked_and_the_command_reports(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(textwrap.dedent(f"""\
        data: {tmp_path / "data"}
        retention:
          dead_letters_days: 7
          clinical_records_days: 30
        """))  # fmt: skip
    hub = [sys.executable, "-m", "hub.cli"]
    out = subprocess.run([*hub, "config", "check", str(config)], capture_output=True, text=True, cwd=REPO, check=False)
    assert out.returncode == 2
    assert f"{config}:4:" in out.stderr and "365" in out.stderr, out.stderr

    config.write_text(config.read_text().replace("clinical_records_days: 30", "clinical_records_days: 3650"))
    out = subprocess.run(
        [*hub, "retention", "apply", "--data", str(tmp_path / "data"), "--config", str(config), "--dry-run"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "clinical records: after 3650 days" in out.stdout
    assert "would purge 0 dead letters" in out.stdout
