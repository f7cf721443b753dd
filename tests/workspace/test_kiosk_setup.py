"""Each kiosk gets its clinic's setup (roster with PIN hashes, questionnaire) on the durable downlink, and only news."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import argon2
import pytest
from argon2.exceptions import VerifyMismatchError
from fastapi.testclient import TestClient

from device.protocol.downlink import KioskSetupBody, KioskSetupMessage, parse_message
from hub import attribution, downlink, kiosk_setup
from hub.cases import questionnaire
from hub.cases.questionnaire import GENERAL_INTAKE, Item, Questionnaire
from hub.db import immediate
from tests.workspace.world import World, session_csrf


def setups(world: World, kiosk: str) -> list[tuple[str, KioskSetupBody, str | None, float | None]]:
    """Every setup queued for the kiosk, by version: (message id, body, superseded by, delivered at)."""
    rows = world.store.conn.execute(
        "SELECT body, superseded_by, delivered_at FROM downlink WHERE kiosk = ? AND kind = 'kiosk_setup'", (kiosk,)
    ).fetchall()
    out = []
    for body, superseded_by, delivered_at in rows:
        message = parse_message(body.encode())
        assert isinstance(message, KioskSetupMessage) and message.kiosk == kiosk
        out.append((message.id, message.body, superseded_by, delivered_at))
    return sorted(out, key=lambda s: s[1].version)


def latest(world: World, kiosk: str) -> KioskSetupBody:
    return setups(world, kiosk)[-1][1]


def due_ids(world: World) -> set[str]:
    return {p.id for p in downlink.due(world.store.conn, world.clock() + 10**6)}


def entry(body: KioskSetupBody, code: str) -> str | None:
    (pin_hash,) = [p.pin_hash for p in body.patients if p.code == code]
    return pin_hash


def test_a_kiosk_assigned_to_a_clinic_gets_one_setup_with_every_patient_code(world: World) -> None:
    ((message_id, body, superseded, delivered),) = setups(world, world.north.kiosk)
    assert body.clinic == "north-clinic" and body.clinic_name == "North Clinic"
    assert [p.code for p in body.patients] == sorted(world.north.patients)
    assert all(p.pin_hash is None for p in body.patients) and not body.pin_required
    assert body.questionnaire == GENERAL_INTAKE  # the clinic has none of its own
    assert superseded is None and delivered is None and message_id in due_ids(world)
    with immediate(world.store.conn) as conn:
        attribution.assign_kiosk(conn, "kiosk-north-2", "north-clinic", world.clock())
    ((_, second, _, _),) = setups(world, "kiosk-north-2")
    assert [p.code for p in second.patients] == sorted(world.north.patients)


def test_a_new_patient_sends_a_new_version_and_the_older_one_is_no_longer_due(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    ((first_id, first, _, _),) = setups(world, world.north.kiosk)
    admin = client_as(world.north.admin)
    world.clock.advance(60)
    created = admin.post("/patients", data={"csrf_token": session_csrf(admin), "code": "N777", "name": "Newly Here"})
    assert created.status_code == 303 and created.headers["location"].startswith("/patients/pt_")
    (old, new) = setups(world, world.north.kiosk)
    assert old[0] == first_id and old[2] == new[0]  # superseded by the new one, and not called delivered
    assert old[3] is None
    assert new[1].version > first.version and "N777" in [p.code for p in new[1].patients]
    assert first_id not in due_ids(world) and new[0] in due_ids(world)
    # Nothing changed since: a refresh queues nothing, and a repeated assignment neither.
    with immediate(world.store.conn) as conn:
        assert kiosk_setup.refresh(conn, "north-clinic", world.clock() + 5) == 0
        attribution.assign_kiosk(conn, world.north.kiosk, "north-clinic", world.clock() + 6)
    assert len(setups(world, world.north.kiosk)) == 2
    # The kiosk cannot store a stale roster over a newer one: versions only grow, even if the clock goes back.
    with immediate(world.store.conn) as conn:
        conn.execute("UPDATE clinics SET name = 'North Clinic (renamed)' WHERE id = 'north-clinic'")
        assert kiosk_setup.refresh(conn, "north-clinic", world.clock() - 3600) == 1
    assert latest(world, world.north.kiosk).version == new[1].version + 1


def test_a_pin_is_hashed_for_a_pi_sent_as_a_hash_and_never_shown_or_audited(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    provider = client_as(world.north.provider)
    alice = world.north.patients["N100"]
    assert "No kiosk PIN is set." in provider.get(f"/patients/{alice}").text
    done = provider.post(f"/patients/{alice}/kiosk-pin", data={"csrf_token": session_csrf(provider), "pin": "246813"})
    assert done.status_code == 303 and done.headers["location"] == f"/patients/{alice}"
    page = provider.get(f"/patients/{alice}").text
    assert "A kiosk PIN is <strong>set</strong>" in page and "246813" not in page and "$argon2" not in page
    pin_hash = entry(latest(world, world.north.kiosk), "N100")
    assert pin_hash is not None and entry(latest(world, world.north.kiosk), "N101") is None
    assert argon2.PasswordHasher().verify(pin_hash, "246813")
    with pytest.raises(VerifyMismatchError):
        argon2.PasswordHasher().verify(pin_hash, "246814")
    params = argon2.extract_parameters(pin_hash)
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (argon2.Type.ID, 19456, 2, 1)
    audit = world.store.conn.execute(
        "SELECT action, patient_id, target, coalesce(detail, '') FROM audit WHERE action LIKE '%kiosk_pin%'"
    ).fetchall()
    assert audit == [("set_kiosk_pin", alice, "kiosk_pin", "")]
    everything = " ".join(str(r) for r in world.store.conn.execute("SELECT * FROM audit"))
    assert "246813" not in everything and "$argon2" not in everything

    cleared = provider.post(f"/patients/{alice}/kiosk-pin/clear", data={"csrf_token": session_csrf(provider)})
    assert cleared.status_code == 303
    assert entry(latest(world, world.north.kiosk), "N100") is None
    assert "No kiosk PIN is set." in provider.get(f"/patients/{alice}").text
    assert world.store.conn.execute("SELECT count(*) FROM audit WHERE action = 'clear_kiosk_pin'").fetchone() == (1,)


@pytest.mark.parametrize("pin", ["abcd", "123", "123456789", "12 34", "", "\u0663\u0664\u0665\u0666"])
def test_a_pin_that_is_not_4_to_8_digits_is_refused_with_a_clear_message(
    world: World, client_as: Callable[[str], TestClient], pin: str
) -> None:
    with pytest.raises(kiosk_setup.PinError, match="4 to 8 digits"):
        kiosk_setup.hash_pin(pin)
    provider = client_as(world.north.provider)
    alice = world.north.patients["N100"]
    refused = provider.post(f"/patients/{alice}/kiosk-pin", data={"csrf_token": session_csrf(provider), "pin": pin})
    assert refused.status_code == 303 and "error=" in refused.headers["location"]
    if pin:
        assert pin not in refused.headers["location"]
    page = provider.get(refused.headers["location"]).text
    assert "a kiosk PIN is 4 to 8 digits (0-9)" in page and "No kiosk PIN is set." in page
    assert len(setups(world, world.north.kiosk)) == 1  # nothing was sent


def test_the_command_line_sets_and_clears_a_pin_from_stdin_and_switches_the_rule(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main

    data = world.cli_data()
    monkeypatch.setattr("sys.stdin", io.StringIO("1357\n"))
    assert main(["patients", "pin", *data, "--clinic", "north-clinic", "--code", "N101"]) == 0
    assert "1357" not in capsys.readouterr().out
    pin_hash = entry(latest(world, world.north.kiosk), "N101")
    assert pin_hash is not None and argon2.PasswordHasher().verify(pin_hash, "1357")
    monkeypatch.setattr("sys.stdin", io.StringIO("12a4\n"))
    assert main(["patients", "pin", *data, "--clinic", "north-clinic", "--code", "N101"]) == 2
    assert "4 to 8 digits" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("1357\n"))
    assert main(["patients", "pin", *data, "--clinic", "north-clinic", "--code", "S100"]) == 2  # South's patient
    assert "no patient with check-in code 'S100'" in capsys.readouterr().err
    assert main(["patients", "pin", *data, "--clinic", "north-clinic", "--code", "N101", "--clear"]) == 0
    assert entry(latest(world, world.north.kiosk), "N101") is None
    assert main(["clinics", "kiosk-pin", *data, "--clinic", "north-clinic", "on"]) == 0
    assert latest(world, world.north.kiosk).pin_required and not latest(world, world.south.kiosk).pin_required
    actions = [r[0] for r in world.store.conn.execute("SELECT action FROM audit WHERE actor = 'cli' ORDER BY id")]
    assert actions == ["set_kiosk_pin", "clear_kiosk_pin", "set_kiosk_pin_required"]


def test_a_clinic_admin_switches_the_pin_requirement(world: World, client_as: Callable[[str], TestClient]) -> None:
    admin = client_as(world.north.admin)
    page = admin.get("/admin/users").text
    assert "Require a PIN from every patient" in page
    assert admin.post("/admin/kiosk-pin", data={"csrf_token": session_csrf(admin), "state": "on"}).status_code == 303
    assert latest(world, world.north.kiosk).pin_required
    page = admin.get("/admin/users").text
    assert "Stop requiring a PIN" in page and "2 patient(s) have no PIN yet" in page
    provider = client_as(world.north.provider)
    refused = provider.post("/admin/kiosk-pin", data={"csrf_token": session_csrf(provider), "state": "off"})
    assert refused.status_code == 403 and latest(world, world.north.kiosk).pin_required
    (detail,) = world.store.conn.execute("SELECT detail FROM audit WHERE action = 'set_kiosk_pin_required'").fetchone()
    assert detail == '{"required": true}'


def test_another_clinics_kiosk_never_receives_this_clinics_roster(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    admin = client_as(world.north.admin)
    csrf = session_csrf(admin)
    admin.post("/patients", data={"csrf_token": csrf, "code": "N555", "name": "Only North"})
    admin.post(f"/patients/{world.north.patients['N100']}/kiosk-pin", data={"csrf_token": csrf, "pin": "8642"})
    admin.post("/admin/kiosk-pin", data={"csrf_token": csrf, "state": "on"})
    south = setups(world, world.south.kiosk)
    assert len(south) == 1
    for _, body, _, _ in south:
        assert body.clinic == "south-clinic" and {p.code for p in body.patients} == set(world.south.patients)
    # A kiosk moved to another clinic gets that clinic's roster; the old clinic's undelivered one is never sent.
    with immediate(world.store.conn) as conn:
        attribution.assign_kiosk(conn, "kiosk-moving", "north-clinic", world.clock())
        attribution.assign_kiosk(conn, "kiosk-moving", "south-clinic", world.clock() + 1)
    (north_setup, south_setup) = setups(world, "kiosk-moving")
    assert north_setup[1].clinic == "north-clinic" and north_setup[2] == south_setup[0]
    assert south_setup[1].clinic == "south-clinic" and south_setup[1].version > north_setup[1].version
    assert north_setup[0] not in due_ids(world) and south_setup[0] in due_ids(world)
    # North's later changes reach North's kiosks only.
    admin.post("/patients", data={"csrf_token": csrf, "code": "N556", "name": "Also North"})
    assert len(setups(world, "kiosk-moving")) == 2 and len(setups(world, world.south.kiosk)) == 1


def test_the_clinics_newest_questionnaire_is_the_one_sent(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main

    data = world.cli_data()
    why = Item(link_id="main", text="Why are you here?", type="text", required=True)
    first = Questionnaire(id="north-intake", version=1, title="North intake", items=[why])
    second = first.model_copy(update={"version": 2, "title": "North intake, revised"})
    for q in (first, second):
        path = tmp_path / f"{q.id}-{q.version}.yaml"
        path.write_text(q.model_dump_json())  # JSON is YAML
        assert main(["questionnaires", "set", *data, "--clinic", "north-clinic", str(path)]) == 0
        assert "1 kiosk(s) will get it" in capsys.readouterr().out
        assert latest(world, world.north.kiosk).questionnaire == q
    # Added later though with a lower version: "most recently added" wins, as the clinic meant it.
    older = Questionnaire(id="a-first-look", version=1, title="A first look", items=first.items)
    with immediate(world.store.conn) as conn:
        questionnaire.store(conn, "north-clinic", older, "test", world.clock() + 10**9)
        assert kiosk_setup.refresh(conn, "north-clinic", world.clock()) == 1
    assert latest(world, world.north.kiosk).questionnaire == older
    assert latest(world, world.south.kiosk).questionnaire == GENERAL_INTAKE


def test_the_check_in_card_shows_the_code_and_its_qr_code_to_its_own_clinic_only(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    card = client_as(world.north.provider).get(f"/patients/{alice}/card")
    assert card.status_code == 200
    assert 'id="checkin-code">N100<' in card.text and "North Clinic" in card.text
    svg = card.text[card.text.index("<svg") : card.text.index("</svg>")]
    assert "<path" in svg
    assert client_as(world.south.provider).get(f"/patients/{alice}/card").status_code == 404
    rows = world.connect().execute("SELECT patient_id FROM audit WHERE action = 'view_checkin_card'")
    assert rows.fetchall() == [(alice,)]
