"""Remote configuration through a real broker: retained, applied, kept across restarts, reported; bad ones refused."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from device.protocol.endpoints import BrokerUrl
from device.protocol.topics import Topics
from hub.cli import main as hub_main
from hub.db import Location, SqliteLocation
from tests.harness import hub_query, hub_store_args, ingest_thread, kiosk_agent, wait_until
from tests.test_ingest import client


def _applied(db: Location, kiosk: str) -> tuple[object, object]:
    rows = hub_query(db, "SELECT config_version, config_error FROM kiosks WHERE id = ?", kiosk)
    return rows[0] if rows else (None, None)


def _set(hub: Path, db: Location, kiosk: str, *pairs: str) -> int:
    where = hub_store_args(hub, db)
    return hub_main(["kiosks", "config", kiosk, *where, *[a for p in pairs for a in ("--set", p)]])


def test_a_config_reaches_a_running_kiosk_and_an_offline_one_and_survives_a_restart(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    hub, db = tmp_path / "hub", hub_database
    fast = {"heartbeat_s": 3600.0, "receipt_timeout_s": 10.0}
    with ingest_thread(db, broker_url, downlink_check_s=0.2):
        with kiosk_agent(tmp_path / "k1", "k1", broker_url, **fast) as k1:
            wait_until(lambda: _applied(db, "k1")[0] == 0, 15, "k1's first status (no config yet)")
            assert _set(hub, db, "k1", "heartbeat_s=45", "receipt_timeout_s=3") == 0
            wait_until(lambda: _applied(db, "k1") == (1, None), 15, "k1 to report config version 1")
            assert k1.config.heartbeat_s == 45 and k1.forwarder.config.receipt_timeout_s == 3
        # k2 is offline when its config is set: the retained copy waits for it at the broker.
        assert _set(hub, db, "k2", "batch_max_items=50") == 0
        assert _set(hub, db, "k2", "batch_max_items=60") == 0
        with kiosk_agent(tmp_path / "k2", "k2", broker_url, **fast) as k2:
            wait_until(lambda: _applied(db, "k2") == (2, None), 15, "k2 to apply the newest config on connect")
            assert k2.forwarder.config.batch_max_items == 60
    # A restart starts with what was applied, before any broker is reachable.
    with kiosk_agent(tmp_path / "k1", "k1", BrokerUrl.parse("mqtt://127.0.0.1:9"), **fast) as again:
        assert again.config.heartbeat_s == 45 and again.forwarder.config.receipt_timeout_s == 3


def test_a_bad_or_foreign_config_is_refused_reported_and_changes_nothing(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    hub, db = tmp_path / "hub", hub_database
    with (
        ingest_thread(db, broker_url, downlink_check_s=0.2),
        kiosk_agent(tmp_path / "k1", "k1", broker_url, heartbeat_s=3600.0) as k1,
    ):
        assert _set(hub, db, "k1", "heartbeat_s=20") == 0
        wait_until(lambda: _applied(db, "k1") == (1, None), 15, "version 1")
        now = dt.datetime.now(dt.UTC).isoformat()
        bad = {"kiosk": "k1", "version": 7, "settings": {"heartbeat_s": 1}, "issued_at": now}
        foreign = {"kiosk": "k9", "version": 8, "settings": {}, "issued_at": now}
        rogue = client(broker_url, "rogue")
        for body, reason in ((bad, "heartbeat_s"), (foreign, "for kiosk 'k9'"), (b"not json", "Invalid JSON")):
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            rogue.publish(Topics.config("k1"), payload, qos=1).wait_for_publish(5)
            wait_until(lambda reason=reason: reason in (_applied(db, "k1")[1] or ""), 15, f"the refusal ({reason})")
            assert _applied(db, "k1")[0] == 1 and k1.config.heartbeat_s == 20
        rogue.loop_stop()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["heartbeat_s=1"], "heartbeat_s: Input should be greater than or equal to 5"),
        (["colour=blue"], "unknown setting(s) colour"),
        (["heartbeat_s"], "--set takes NAME=VALUE"),
    ],
)
def test_the_hub_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pairs: list[str], message: str
) -> None:
    assert _set(tmp_path / "hub", SqliteLocation(tmp_path / "hub" / "hub.db"), "k1", *pairs) == 2
    assert message in capsys.readouterr().err
    assert hub_main(["kiosks", "config", "k1", "--data", str(tmp_path / "hub")]) == 0
    assert json.loads(capsys.readouterr().out)["wanted"] is None


def _retained(url: BrokerUrl, topic: str) -> bytes | None:
    """What a new subscriber gets retained on `topic` (None: nothing is retained there)."""
    import threading

    got: list[bytes] = []
    arrived = threading.Event()
    probe = client(url, f"retained-probe-{time.monotonic_ns()}")
    probe.on_message = lambda _c, _u, msg: (got.append(bytes(msg.payload)), arrived.set())
    probe.subscribe(topic, qos=1)
    arrived.wait(2)  # a retained message comes at once after SUBACK; nothing retained: nothing comes
    probe.disconnect()
    probe.loop_stop()
    return got[0] if got else None


def test_a_revoked_kiosks_settings_leave_the_broker(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    hub, db = tmp_path / "hub", hub_database
    argv = ["kiosks", "add", "k-gone", *hub_store_args(hub, db), "--broker-url", "mqtts://hub.example:8883"]
    assert hub_main([*argv, "--out", str(tmp_path / "k.bundle")]) == 0
    with ingest_thread(db, broker_url, downlink_check_s=0.2):
        assert _set(hub, db, "k-gone", "heartbeat_s=45") == 0
        wait_until(lambda: _retained(broker_url, Topics.config("k-gone")) is not None, 15, "the retained config")
        assert json.loads(_retained(broker_url, Topics.config("k-gone")) or b"")["version"] == 1
        assert hub_main(["kiosks", "revoke", "k-gone", *hub_store_args(hub, db)]) == 0
        wait_until(lambda: _retained(broker_url, Topics.config("k-gone")) is None, 15, "the retained copy to go")
    # Added again later, the kiosk's settings start afresh with a version number never used before.
    assert hub_main([*argv, "--out", str(tmp_path / "k2.bundle")]) == 0
    assert _set(hub, db, "k-gone", "batch_max_items=50") == 0
    [(stored,)] = hub_query(db, "SELECT body FROM kiosk_configs WHERE kiosk = 'k-gone'")
    body = json.loads(str(stored))
    assert body["version"] == 3 and body["settings"]["heartbeat_s"] != 45
