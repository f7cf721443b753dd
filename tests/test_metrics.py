"""/api/v1/metrics (issue 22, point 6): scraped while kiosks stream into `hub serve`'s parts.

Real parts: a Mosquitto, `hub serve`'s service (two ingest worker processes, attribution, the web app), kiosk
agents streaming readings, and a hand-driven MQTT client for a kiosk's raw status and refused messages. The
exposition is read by the client library's own parser, not by string matching on what hub/metrics.py wrote.
Events are counted (messages stored, dead letters, kiosks by state); no figure depends on timing.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import paho.mqtt.client as mqtt
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client.parser import text_string_to_metric_families

from device.agent import KioskAgent
from device.protocol import ClockInfo, Topics, new_message_id, parse_envelope
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import build_envelope, encode
from device.simulate import single_reading
from hub import attribution, metrics, patients
from hub.accounts import users
from hub.app import create_app
from hub.broker import free_port
from hub.db import Location, SqliteLocation, connect, immediate, parse
from hub.db.lease import Leases
from hub.service import HubService, ServeConfig
from hub.store import Accepted, HubStore, _conflict_letters, _unstorable
from hub.uplink import Limits, Sorted, classify
from tests.harness import api_token, kiosk_agent, wait_until
from tests.workspace.world import PASSWORD, login

CLINIC, PROVIDER, PATIENT_CODE = "metrics-clinic", "doc@metrics.example", "MX-4711"
LIVE, QUIET, GONE, RAW = "m-live", "m-quiet", "m-gone", "m-raw"
LATE_S = 10.0  # the fleet page's "late" for this test (10 minutes by default)
RAW_BACKLOG = 1234
QUIET_AGENT = {"heartbeat_s": 3600.0}  # one status at start, then nothing: the counts below stay exact
Samples = dict[str, list[tuple[dict[str, str], float]]]


# -- real parts ------------------------------------------------------------------------


@contextmanager
def serving(service: HubService) -> Iterator[TestClient]:
    service.start_background()
    try:
        with TestClient(service.app) as client:
            yield client
    finally:
        service.stop_background()


def scrape(client: TestClient, token: str) -> Samples:
    response = client.get("/api/v1/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    (match,) = [v for found, v in samples[name] if all(found.get(k) == want for k, want in labels.items())]
    return match


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {found[label]: v for found, v in samples[name]}


def committed(samples: Samples) -> float:
    return sum(by_label(samples, "telehealth_hub_messages_committed_total", "kind").values())


def db_count(db: Path | Location, sql: str, *params: object) -> int:
    conn = connect(db, read_only=True)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def fleet_page(browser: TestClient) -> dict[str, tuple[str, int | None]]:
    """What the fleet page shows each kiosk as: its state badge and its backlog cell."""
    html = browser.get("/fleet/rows").text
    shown: dict[str, tuple[str, int | None]] = {}
    for kiosk, row in re.findall(r'<tr data-kiosk="([^"]+)">(.*?)</tr>', html, re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        state = re.search(r'class="badge (\w+)"', cells[1])
        assert state is not None, cells[1]
        backlog = re.match(r"\d+", cells[3])
        shown[kiosk] = (state.group(1), int(backlog.group(0)) if backlog else None)
    return shown


def mqtt_client(url: BrokerUrl, name: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.connect(url.host, url.port)
    c.loop_start()
    return c


def stream(agent: KioskAgent, count: int, stop: threading.Event) -> threading.Thread:
    """A patient's readings at the kiosk, checked in (so attribution gives them to the patient)."""
    rng = random.Random(22)

    def run() -> None:
        for _ in range(count):
            reading = {**single_reading(rng, datetime.now(UTC)), "subject": PATIENT_CODE}
            agent.outbox.enqueue("observations", reading)
            if stop.wait(0.03):
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def prepare(db: Path | Location) -> None:
    """A clinic with a provider and a patient; the test's kiosks belong to it, so its fleet page shows them all."""
    store = HubStore(db)
    try:
        with immediate(store.conn) as conn:
            now = datetime.now(UTC).timestamp()
            users.create_clinic(conn, CLINIC, "Metrics Clinic", now)
            users.create_user(conn, clinic_id=CLINIC, email=PROVIDER, name="Doc", role="provider",
                              password=PASSWORD, now=now)  # fmt: skip
            patients.create(conn, CLINIC, code=PATIENT_CODE, name="Mia Metrics", birth_date="1970-01-01", now=now)
            for kiosk in (LIVE, QUIET, GONE, RAW):
                attribution.assign_kiosk(conn, kiosk, CLINIC, now)
    finally:
        store.close()


def raw_status(seq: int, backlog: int, message_id: str) -> bytes:
    payload = {"software_version": "0.1.0", "outbox_backlog": backlog, "outbox_capacity": 500_000, "uptime_s": 1.0}
    now = datetime.now(UTC)
    env = build_envelope(
        "status", message_id=message_id, kiosk=RAW, seq=seq, clock=ClockInfo(time=now), payload=payload
    )
    return encode(env)


def delivered(agent: KioskAgent) -> bool:
    return agent.outbox.backlog().items == 0


# -- the test the issue asks for -------------------------------------------------------


def test_metrics_count_what_the_database_holds_while_kiosks_stream(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    data = tmp_path / "hub"
    db: Path | Location = data / "hub.db" if isinstance(hub_database, SqliteLocation) else hub_database
    prepare(db)
    token = api_token(db, "metrics:read")
    service = HubService(
        ServeConfig(data_dir=data, database=parse(db), broker=broker_url, http_port=free_port(), workers=2)
    )
    ws = service.app.state.workspace
    ws.settings = replace(ws.settings, late_after_s=LATE_S)  # the fleet page's and the metrics' alike
    stop = threading.Event()
    with serving(service) as client:
        assert service.ingest.wait_ready(60), "ingest did not connect"
        browser = TestClient(service.app, base_url="https://testserver", follow_redirects=False)
        assert login(browser, PROVIDER).status_code == 303

        # A kiosk that came and went: offline.
        # It must have been there first: an empty outbox alone is also what an agent that has not yet enqueued
        # its first status shows, and stopping it then left no presence at all (a flaky wait, one run in three).
        with kiosk_agent(tmp_path / GONE, GONE, broker_url, **QUIET_AGENT) as gone:
            wait_until(lambda: db_count(db, "SELECT count(*) FROM messages WHERE kiosk = ?", GONE) >= 1 and
                       delivered(gone), 30, "the leaving kiosk's status to be stored and receipted")  # fmt: skip
        wait_until(lambda: db_count(db, "SELECT count(*) FROM kiosks WHERE id = ? AND online = 0", GONE) == 1,
                   30, "the kiosk to show offline")  # fmt: skip

        with (
            kiosk_agent(tmp_path / LIVE, LIVE, broker_url, **QUIET_AGENT) as live,
            kiosk_agent(tmp_path / QUIET, QUIET, broker_url, **QUIET_AGENT) as quiet,
        ):
            # While readings stream: each scrape's counters move on by exactly what was committed between the
            # commits the two scrapes saw last (two worker processes commit; the web process counts from the DB).
            producer = stream(live, 200, stop)
            scrapes = [scrape(client, token)]
            while producer.is_alive() or len(scrapes) < 4:
                scrapes.append(scrape(client, token))
                stop.wait(0.3)
            moving = 0  # scrape pairs with commits between them
            for before, after in pairwise(scrapes):
                t0 = value(before, "telehealth_hub_last_commit_timestamp_seconds")
                t1 = value(after, "telehealth_hub_last_commit_timestamp_seconds")
                between = db_count(db, "SELECT count(*) FROM messages WHERE committed_at > ? AND committed_at <= ?",
                                   t0, t1)  # fmt: skip
                assert committed(after) - committed(before) == between
                assert t1 >= t0
                moving += between > 0
            assert moving >= 2, "the scrapes saw no commits between them"
            wait_until(lambda: delivered(live) and delivered(quiet), 60, "the kiosks' outboxes to drain")

            # A kiosk's raw status (its backlog), a garbage message, and an id reused for other content.
            raw = mqtt_client(broker_url, f"{RAW}-raw")
            status_id = new_message_id()
            topic = Topics.uplink(RAW, "status")
            raw.publish(topic, raw_status(1, RAW_BACKLOG, status_id), qos=1).wait_for_publish(10)
            raw.publish(Topics.uplink(RAW, "observations"), b"this is not json", qos=1).wait_for_publish(10)
            wait_until(lambda: db_count(db, "SELECT count(*) FROM messages WHERE kiosk = ?", RAW) == 1, 30,
                       "the raw status to be stored")  # fmt: skip
            raw.publish(topic, raw_status(1, 999, status_id), qos=1).wait_for_publish(10)
            wait_until(lambda: db_count(db, "SELECT count(*) FROM dead_letters") == 2, 30, "two dead letters")
            raw.loop_stop()
            raw.disconnect()

            # Quiet now (heartbeats an hour apart): readings counted in the database and in two scrapes agree.
            first, stored_first = scrape(client, token), db_count(db, "SELECT count(*) FROM messages")
            rng = random.Random(7)
            more = 25
            for _ in range(more):
                live.outbox.enqueue("observations", {**single_reading(rng, datetime.now(UTC)), "subject": PATIENT_CODE})
            wait_until(lambda: delivered(live), 30, "the new readings to be receipted")
            second, stored_second = scrape(client, token), db_count(db, "SELECT count(*) FROM messages")
            assert stored_second - stored_first == more
            assert committed(second) - committed(first) == more
            observations = "telehealth_hub_messages_committed_total"
            assert (
                value(second, observations, kind="observations") - value(first, observations, kind="observations")
                == more
            )

            # The histogram counts the same messages as the counters, in ordered buckets.
            buckets = [v for labels, v in second["telehealth_hub_commit_latency_seconds_bucket"]]
            assert buckets == sorted(buckets)
            assert buckets[-1] == value(second, "telehealth_hub_commit_latency_seconds_count") == committed(second)

            # Refused messages, under their reason's category (never its text).
            dead = by_label(second, "telehealth_hub_dead_letters", "reason")
            assert dead["invalid_envelope"] == 1 and dead["id_conflict"] == 1
            assert sum(dead.values()) == 2 and set(dead) == set(metrics.REASONS)

            # Kiosks by state, as the fleet page shows them (read before and after, so the page did not change
            # in between: a state turns late by the clock); and the backlogs they reported.
            wait_until(lambda: fleet_page(browser)[QUIET][0] == "late", 60, "the quiet kiosk to show late")
            live.outbox.enqueue("observations", {**single_reading(rng, datetime.now(UTC)), "subject": PATIENT_CODE})
            wait_until(lambda: delivered(live), 30, "one more reading")

            def agree() -> bool:
                page = fleet_page(browser)
                seen = scrape(client, token)
                if page != fleet_page(browser):
                    return False
                states = Counter(state for state, _ in page.values())
                kiosks = by_label(seen, "telehealth_hub_kiosks", "state")
                assert kiosks == {s: float(states.get(s, 0)) for s in metrics.KIOSK_STATES}, (page, kiosks)
                backlogs = [b for _, b in page.values() if b is not None]
                assert value(seen, "telehealth_hub_kiosk_outbox_backlog_items") == sum(backlogs)
                assert value(seen, "telehealth_hub_kiosk_outbox_backlog_largest_items") == max(backlogs)
                return True

            wait_until(agree, 60, "a fleet page that stayed the same across one scrape")
            page = fleet_page(browser)
            assert page[GONE][0] == "offline" and page[RAW] == ("unknown", RAW_BACKLOG) and page[QUIET][0] == "late"
            assert max(b for _, b in page.values() if b is not None) == RAW_BACKLOG

            final = scrape(client, token)
            # Work waiting, as the database has it (plain queries, not the collector's).
            alerts = db_count(db, "SELECT count(*) FROM alerts WHERE state != 'resolved'")
            assert sum(v for _, v in final["telehealth_hub_alerts"]) == alerts
            assert sum(v for _, v in final["telehealth_hub_cases"]) == 0
            assert sum(v for _, v in final["telehealth_hub_consults"]) == 0

            # Which jobs this instance holds: `hub serve`'s, with an external broker (none of its own).
            jobs = {labels["hub_job"] for labels, _ in final["telehealth_hub_job_holder"]}
            assert jobs == {"web", "consult-relay", "attribution", "triage-sweep", "retention", "broker-sessions",
                            "ingest", "downlink"}  # fmt: skip
            (instance,) = {labels["hub_instance"] for labels, _ in final["telehealth_hub_job_holder"]}
            assert value(final, "telehealth_hub_instance_info", hub_instance=instance) == 1
            assert value(final, "telehealth_hub_database_read_ok") == 1

            assert_no_health_data_in_labels(db, [first, second, final, *scrapes])
    stop.set()


def assert_no_health_data_in_labels(db: Path | Location, scraped: list[Samples]) -> None:
    """Every label of the hub's own metrics is from a short vocabulary (so no patient, kiosk or value can be one);
    and no label of any metric names a patient (id, check-in code) or is a reading's value."""
    conn = connect(db, read_only=True)
    try:
        patient = {str(v) for (v,) in conn.execute("SELECT id FROM patients UNION SELECT code FROM patients")}
        patient |= {str(v) for (v,) in conn.execute("SELECT DISTINCT subject FROM observations") if v}
        values = {str(v) for (v,) in conn.execute("SELECT DISTINCT value FROM observations")}
        assert conn.execute("SELECT count(*) FROM observations WHERE patient_id IS NOT NULL").fetchone()[0] > 0
    finally:
        conn.close()
    assert PATIENT_CODE in patient and values
    vocabulary = {
        "kind": {*metrics.KINDS, "other"},
        "reason": set(metrics.REASONS),
        "state": {*metrics.KIOSK_STATES, *metrics.ALERT_STATES, *metrics.CASE_STATES, *metrics.CONSULT_STATES},
        "severity": set(metrics.SEVERITIES),
        "hub_job": set(metrics.held_jobs(metrics.THREAD_JOBS)),
        # Bucket bounds are numbers, fixed in hub/metrics.py: "60.0" is one, whatever a heart rate was.
        "le": {repr(float(b)) for b in metrics.LATENCY_BUCKETS} | {"+Inf"},
    }
    checked = 0
    for samples in scraped:
        for name, found in samples.items():
            for labels, _ in found:
                for label, text in labels.items():
                    assert not any(p in text for p in patient), (name, label, text)
                    if name.startswith("telehealth_hub_"):
                        assert label in vocabulary or label in ("hub_instance", "version"), (name, label)
                        assert label not in vocabulary or text in vocabulary[label], (name, label, text)
                    if label != "le":
                        assert text not in values, (name, label, text)
                    checked += 1
    assert checked > 100


# -- small and fast --------------------------------------------------------------------


def test_metrics_need_an_operator_token_with_their_scope(hub_database: Location) -> None:
    db = hub_database
    prepare(db)
    client = TestClient(create_app(db))
    path = "/api/v1/metrics"
    assert client.get(path).status_code == 401
    for token, status in (
        (api_token(db, "kiosks:read", name="no-scope"), 403),
        (api_token(db, "metrics:read", clinic=CLINIC, name="clinic"), 403),  # the whole hub's shape: not a clinic's
        (api_token(db, "metrics:read", name="operator"), 200),
    ):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status, (token, response.text)
    assert "telehealth_hub_kiosks" in response.text


def test_every_reason_ingest_writes_has_its_own_category() -> None:
    """The label is the reason's category; a reason ingest writes that no category knows would say "other"."""
    this = raw_status(1, 3, new_message_id())
    other_kiosk = this.replace(f'"kiosk":"{RAW}"'.encode(), b'"kiosk":"k9"')
    assert other_kiosk != this
    pending = Sorted()
    for topic, payload in (
        (Topics.uplink(RAW, "status"), b"not json"),
        (Topics.uplink(RAW, "status"), b"{" + b" " * 2048 + b"}"),
        (Topics.uplink(RAW, "status"), other_kiosk),
        (Topics.uplink(RAW, "observations"), this),
        ("kiosk/m-raw/up/status/extra", this),
    ):
        classify(topic, payload, 0.0, pending, Limits(max_payload_bytes=1024))
    reasons = [d.reason for d in pending.dead]
    reasons += [d.reason for d in _conflict_letters([Accepted(parse_envelope(this), this, 0.0, "t")])]
    reasons.append(_unstorable(OverflowError("Python int too large to convert to SQLite INTEGER")))
    categories = [metrics.reason_category(r) for r in reasons]
    assert categories == ["invalid_envelope", "too_large", "kiosk_mismatch", "kind_mismatch", "bad_topic",
                          "id_conflict", "unstorable"], reasons  # fmt: skip


def test_jobs_follow_the_threads_that_run_them(tmp_path: Path) -> None:
    assert metrics.held_jobs(["MainThread"]) == ["web", "consult-relay"]
    conn = connect(tmp_path / "hub.db")
    leases = Leases(conn)
    assert metrics.held_jobs(["attribution"]) == ["web", "consult-relay"]  # the job thread holds no lease yet
    leases.take()  # a SQLite hub is alone: it holds every cluster job
    served = metrics.held_jobs(["attribution", "ingest-pool", "broker-supervisor"])
    leases.release_all()
    conn.close()
    assert set(served) == {"web", "consult-relay", "attribution", "triage-sweep", "retention", "broker-sessions",
                           "ingest", "downlink",
                           "broker", "broker-certificate"}  # fmt: skip
