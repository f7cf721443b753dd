"""Asynchronous cases: the questionnaire's branching by hand, then a case from kiosk envelope to provider's answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hub import downlink
from hub.cases.questionnaire import GENERAL_INTAKE, EnableWhen, Item, Questionnaire, problems, visible
from hub.db import immediate
from tests.workspace.world import World, day, obs, session_csrf

ANSWERS: list[dict[str, Any]] = [
    {"link_id": "main", "value": "Cough and fever"},
    {"link_id": "fever", "value": True},
    {"link_id": "fever_days", "value": 3},
    {"link_id": "pain", "value": False},
    {"link_id": "breathless", "value": False},
]


def test_branching_shows_follow_up_questions_only_after_their_answer() -> None:
    base = {"main": "x", "fever": False, "pain": False, "breathless": False}
    assert [i.link_id for i in visible(GENERAL_INTAKE, base)] == ["main", "fever", "pain", "breathless", "medicines"]
    with_pain = {**base, "pain": True}
    assert "pain_where" in [i.link_id for i in visible(GENERAL_INTAKE, with_pain)]
    assert problems(GENERAL_INTAKE, base) == []
    assert problems(GENERAL_INTAKE, with_pain) == ["'pain_where' (required) is unanswered"]
    wrong = {**base, "fever_days": 2, "pain": "yes", "mood": "ok", "pain_where": ["moon"]}
    found = problems(GENERAL_INTAKE, wrong)
    assert "'fever_days' was answered though the earlier answers hide it" in found
    assert "'pain': 'yes' is not a valid boolean answer" in found
    assert "'mood' is not in general-intake v1" in found
    assert "'pain_where': ['moon'] is not a valid choice answer" in found


def test_a_questionnaire_that_cannot_work_is_refused() -> None:
    first = Item(link_id="a", text="A?", type="boolean")
    with pytest.raises(ValidationError, match="not an earlier item"):
        later = Item(link_id="b", text="B?", type="text", enable_when=EnableWhen(question="a", answer=True))
        Questionnaire(id="q", version=1, title="t", items=[later, first])
    with pytest.raises(ValidationError, match="not a possible answer"):
        odd = Item(link_id="b", text="B?", type="text", enable_when=EnableWhen(question="a", answer="yes"))
        Questionnaire(id="q", version=1, title="t", items=[first, odd])
    with pytest.raises(ValidationError, match="lists its options"):
        Item(link_id="c", text="C?", type="choice")


def test_a_case_with_photo_and_vitals_is_reviewed_answered_and_closed(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    photo = world.send_file(world.north.kiosk, b"\xff\xd8a rash\xff\xd9", subject="N100")
    vitals = world.send(world.north.kiosk, [obs("8310-5", 38.4, "Cel", day(0), device={"id": "th", "type": "ble"})],
                        subject="N100")  # fmt: skip
    case_id = world.send_case(world.north.kiosk, "N100", answers=ANSWERS, text="It started on Monday.",
                              attachments=[photo], vitals=[vitals])  # fmt: skip
    provider = client_as(world.north.provider)
    queue = provider.get("/triage").text
    assert "Case: Cough and fever" in queue and "1 photo(s), 1 vital set(s)" in queue
    page = provider.get(f"/cases/{case_id}").text
    for shown in ("Alice North", "Have you had a fever?", "For how many days?", "It started on Monday.",
                  "Body temperature", "38.4 °C", f"/cases/{case_id}/photos/{photo}", "answer by"):  # fmt: skip
        assert shown in page, shown
    assert "Where does it hurt?" not in page  # pain was "no": that branch was never shown
    image = provider.get(f"/cases/{case_id}/photos/{photo}")
    assert image.status_code == 200 and image.content == b"\xff\xd8a rash\xff\xd9"
    csrf = session_csrf(provider)
    assert provider.post(f"/cases/{case_id}/review", data={"csrf_token": csrf}).status_code == 303
    again = provider.post(f"/cases/{case_id}/review", data={"csrf_token": csrf})
    assert "in+review" in again.headers["location"].replace("%20", "+")
    empty = provider.post(f"/cases/{case_id}/answer", data={"csrf_token": csrf, "message": "  "})
    assert "Write+a+message" in empty.headers["location"]
    done = provider.post(
        f"/cases/{case_id}/answer",
        data={"csrf_token": csrf, "message": "Rest and drink water.", "plan": "Paracetamol; recheck in 2 days.",
              "request": "more_info"},
    )  # fmt: skip
    assert done.status_code == 303
    page = provider.get(f"/cases/{case_id}").text
    assert "Rest and drink water." in page and "not yet delivered to the kiosk" in page and "more information" in page
    (message_id,) = world.store.conn.execute("SELECT id FROM downlink WHERE case_id = ?", (case_id,)).fetchone()
    with immediate(world.store.conn) as conn:
        assert downlink.mark_delivered(conn, "kiosk-south", [message_id], world.clock()) == 0  # not its message
        assert downlink.mark_delivered(conn, world.north.kiosk, [message_id], world.clock()) == 1
    assert "delivered to the kiosk 2026-11-20" in provider.get(f"/cases/{case_id}").text
    assert "Case: Cough and fever" not in provider.get("/triage").text
    assert provider.post(f"/cases/{case_id}/close", data={"csrf_token": csrf}).status_code == 303
    actions = [r[0] for r in world.store.conn.execute(
        "SELECT action FROM audit WHERE target = ? ORDER BY id", (f"case:{case_id}",))]  # fmt: skip
    assert [a for a in actions if a != "view_case"] == ["review_case", "answer_case", "close_case"]


def test_an_overdue_case_comes_first_and_an_unknown_check_in_waits_for_registration(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    world.send(world.north.kiosk, [obs("59408-5", 86, "%", day(0), device={"id": "ox", "type": "ble"})],
               subject="N101")  # fmt: skip
    late = world.send_case(world.north.kiosk, "N100", answers=ANSWERS)
    world.clock.advance(25 * 3600)
    stranger = world.send_case(world.north.kiosk, "N999", answers=ANSWERS)
    provider = client_as(world.north.provider)
    rows = provider.get("/triage").text.split("<tbody>")[1].split("</tr>")
    assert f"/cases/{late}" in rows[0] and "overdue" in rows[0]  # before the high SpO2 alert
    assert "SpO2 below 90 %" in rows[1]
    page = provider.get(f"/cases/{stranger}").text
    assert "No patient of this clinic has the check-in code" in page and "Send answer" not in page
    refused = provider.post(f"/cases/{stranger}/answer", data={"csrf_token": session_csrf(provider), "message": "Hi"})
    assert "register+or+correct" in refused.headers["location"].replace("%20", "+").lower()
    admin = client_as(world.north.admin)
    admin.post("/patients", data={"csrf_token": session_csrf(admin), "code": "N999", "name": "New Comer"})
    from hub import attribution

    attribution.run_until_done(world.store.conn, world.clock())
    assert "New Comer" in provider.get(f"/cases/{stranger}").text


def test_a_clinic_adds_its_own_questionnaire_version_from_a_file(
    world: World, client_as: Callable[[str], TestClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main

    data = world.cli_data()
    bad = tmp_path / "bad.yaml"
    head = "id: skin\nversion: 1\ntitle: Skin\nitems:\n"
    bad.write_text(head + "  - link_id: where\n    text: Where?\n    type: choice\n")
    assert main(["questionnaires", "check", str(bad)]) == 2
    assert f"{bad}:5:" in (err := capsys.readouterr().err) and "lists its options" in err, err
    orphan = "{link_id: since, text: Since when, type: text, enable_when: {question: nope, answer: x}}"
    bad.write_text(head + f"  - {orphan}\n")
    assert main(["questionnaires", "check", str(bad)]) == 2
    assert "not an earlier item" in capsys.readouterr().err
    good = tmp_path / "skin.yaml"
    item = "  - {link_id: main, text: 'What does the skin look like?', type: text, required: true}\n"
    good.write_text("id: general-intake\nversion: 2\ntitle: Skin check\nitems:\n" + item)
    assert main(["questionnaires", "check", str(good)]) == 0
    assert main(["questionnaires", "set", *data, "--clinic", "north-clinic", str(good)]) == 0
    case_id = world.send_case(world.north.kiosk, "N100", questionnaire={"id": "general-intake", "version": 2},
                              answers=[{"link_id": "main", "value": "Red patches"}])  # fmt: skip
    page = client_as(world.north.provider).get(f"/cases/{case_id}").text
    assert "What does the skin look like?" in page and "Red patches" in page
    # The same version with other content is refused: cases already answered it.
    good.write_text(good.read_text().replace("look like", "feel like"))
    assert main(["questionnaires", "set", *data, "--clinic", "north-clinic", str(good)]) == 2
    assert "give the new one version 3" in capsys.readouterr().err
