"""A case through the screen: the clinic's questionnaire one question a page (branches follow the answers), the
patient's words, photos, review, and exactly one `case` envelope in the outbox with what the patient was shown."""

from __future__ import annotations

import base64
from typing import Any

from fastapi.testclient import TestClient

from device.protocol.questionnaire import EnableWhen, Item, Questionnaire
from device.screen.visit import Photo, Visit
from tests.screen.kiosk import NO_PIN, OTHER, Kiosk, checked_in, goes_to_welcome, post, setup_body

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


def visit_of(kiosk: Kiosk) -> Visit:
    visit = kiosk.screen.desk.visit
    assert visit is not None
    return visit


def answer(client: TestClient, link_id: str, *values: str) -> str:
    """Answer one question; where the screen goes next."""
    response = post(client, f"/case/q/{link_id}", {"value": list(values)})
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def payload(envelope: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = envelope["payload"]
    return result


def test_the_questionnaire_branches_and_only_the_answers_shown_are_sent(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    start = client.get("/case")
    assert start.status_code == 200 and 'href="/case/q/main"' in start.text
    # A question behind a branch cannot be opened or answered before its branch is taken.
    assert client.get("/case/q/fever_days").status_code == 404
    assert answer(client, "main", "A cough") == "/case/q/fever"
    assert answer(client, "fever", "yes") == "/case/q/fever_days"
    days = client.get("/case/q/fever_days")
    assert days.status_code == 200 and "Question 3<" in days.text and 'href="/case/q/fever"' in days.text
    assert answer(client, "fever_days", "3") == "/case/q/pain"
    assert visit_of(kiosk).case.answers == {"main": "A cough", "fever": True, "fever_days": 3}
    # Changing the branch's answer drops the answer it hid, and its page closes again.
    assert answer(client, "fever", "no") == "/case/q/pain"
    assert visit_of(kiosk).case.answers == {"main": "A cough", "fever": False}
    assert client.get("/case/q/fever_days").status_code == 404
    assert post(client, "/case/q/fever_days", {"value": "3"}).status_code == 404
    assert "fever_days" not in visit_of(kiosk).case.answers
    assert answer(client, "pain", "yes") == "/case/q/pain_where"
    assert answer(client, "pain_where", "chest", "skin") == "/case/q/pain_score"
    assert answer(client, "pain_score") == "/case/q/breathless"  # optional, left empty
    assert answer(client, "breathless", "no") == "/case/q/medicines"
    assert answer(client, "medicines", "  ") == "/case/details"
    details = post(client, "/case/details", {"text": "  Since Monday.  "})
    assert details.headers["location"] == "/case/photos"
    assert client.get("/case/photos").status_code == 200
    review = client.get("/case/review")
    assert review.status_code == 200
    assert (
        all(s in review.text for s in ("A cough", "chest, skin", "Since Monday."))
        and "For how many days" not in review.text
    )

    sent = post(client, "/case/send")
    assert sent.status_code == 303 and sent.headers["location"].startswith("/case/sent/")
    envelope_id = sent.headers["location"].rsplit("/", 1)[1]
    (case,) = kiosk.outbox("case")
    assert case["id"] == envelope_id and case["kind"] == "case"
    body = payload(case)
    assert body["subject"] == NO_PIN
    assert body["questionnaire"] == {"id": "general-intake", "version": 1}
    assert body["answers"] == [
        {"link_id": "main", "value": "A cough"},
        {"link_id": "fever", "value": False},
        {"link_id": "pain", "value": True},
        {"link_id": "pain_where", "value": ["chest", "skin"]},
        {"link_id": "breathless", "value": False},
    ]
    assert body["text"] == "Since Monday." and body["attachments"] == []
    assert kiosk.outbox("attachment") == []
    # Sent: the draft leaves memory.
    assert visit_of(kiosk).case.answers == {} and visit_of(kiosk).case.text == ""


def test_the_sent_page_says_saved_then_delivered_when_the_receipt_comes(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    answer(client, "main", "A rash")
    location = post(client, "/case/send").headers["location"]
    envelope_id = location.rsplit("/", 1)[1]
    page = client.get(location)
    assert page.status_code == 200 and "Your question is saved" in page.text
    assert "This kiosk is offline" in page.text  # the forwarder never connected
    assert client.get(f"{location}/status").json() == {"delivered": False}
    kiosk.screen.on_receipt([envelope_id])  # what the forwarder calls when the hub has committed it
    assert client.get(f"{location}/status").json() == {"delivered": True}
    assert f'data-delivered-for="{envelope_id}"' in client.get(location).text
    assert "data-waiting-for" not in client.get(location).text


def test_a_refused_answer_shows_the_question_again_with_the_reason_and_keeps_nothing(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    answer(client, "main", "Headache")
    refused = post(client, "/case/q/fever", {"value": "maybe"})
    assert refused.status_code == 400 and "Please choose Yes or No." in refused.text
    assert 'role="alert"' in refused.text
    answer(client, "fever", "no")
    answer(client, "pain", "yes")
    outside = post(client, "/case/q/pain_where", {"value": ["head", "knee"]})
    assert outside.status_code == 400 and "Please choose from the list." in outside.text
    required = post(client, "/case/q/pain_where", {})
    assert required.status_code == 400 and "Please answer this question." in required.text
    score = post(client, "/case/q/pain_score", {"value": "NaN"})
    assert score.status_code == 400 and "Please enter a whole number." in score.text
    assert visit_of(kiosk).case.answers == {"main": "Headache", "fever": False, "pain": True}
    assert client.get("/case/q/no-such-item").status_code == 404


def test_a_second_send_right_after_the_first_does_not_send_another_empty_case(kiosk: Kiosk) -> None:
    """A double tap on "Send to my clinic" posts twice; the second finds an emptied draft.

    The clinic must not receive a second case with no answers, no words and no photos.
    """
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    answer(client, "main", "A cough")
    first = post(client, "/case/send")
    assert first.status_code == 303
    post(client, "/case/send")
    cases = kiosk.outbox("case")
    assert [payload(c)["answers"] for c in cases] == [[{"link_id": "main", "value": "A cough"}]]


def test_a_photo_is_shown_by_its_own_number_only_and_travels_with_the_case(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    # No camera at this kiosk: taking a photo only returns to the page.
    assert post(client, "/case/photos/take").headers["location"] == "/case/photos"
    assert visit_of(kiosk).case.photos == []
    # A photo as the camera would have left it in the draft.
    visit_of(kiosk).case.photos.append(Photo(JPEG, 640, 480))
    shown = client.get("/case/photos/0.jpg")
    assert shown.status_code == 200 and shown.content == JPEG
    assert shown.headers["content-type"] == "image/jpeg" and shown.headers["cache-control"] == "no-store"
    for other in ("1", "2", "-1", "99"):
        assert client.get(f"/case/photos/{other}.jpg").status_code == 404, other
    assert 'src="/case/photos/0.jpg"' in client.get("/case/photos").text
    # Another browser never sees it.
    assert goes_to_welcome(kiosk.browser().get("/case/photos/0.jpg"))
    answer(client, "main", "A rash on my arm")
    assert post(client, "/case/send").status_code == 303
    attachments = kiosk.outbox("attachment")
    assert attachments and all(payload(a)["subject"] == NO_PIN for a in attachments)
    assert b"".join(base64.b64decode(payload(a)["data"]) for a in attachments) == JPEG
    (case,) = kiosk.outbox("case")
    assert payload(case)["attachments"] == [payload(attachments[0])["attachment"]]
    # The photo left the kiosk's memory with the draft.
    assert client.get("/case/photos/0.jpg").status_code == 404


def test_a_removed_photo_is_gone(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    visit_of(kiosk).case.photos.extend([Photo(JPEG, 640, 480), Photo(JPEG[::-1], 640, 480)])
    assert post(client, "/case/photos/0/remove").headers["location"] == "/case/photos"
    assert client.get("/case/photos/0.jpg").content == JPEG[::-1]
    assert client.get("/case/photos/1.jpg").status_code == 404
    assert post(client, "/case/photos/7/remove").status_code == 303  # nothing there: nothing removed
    assert len(visit_of(kiosk).case.photos) == 1


def test_another_patients_sent_case_is_not_found(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    first, second = kiosk.client, kiosk.browser()
    checked_in(first, NO_PIN)
    answer(first, "main", "A cough")
    location = post(first, "/case/send").headers["location"]
    assert first.get(location).status_code == 200
    post(first, "/finish")
    checked_in(second, OTHER)
    assert second.get(location).status_code == 404
    assert second.get(f"{location}/status").status_code == 404
    assert second.get("/case/sent/0b1e8c2a-1111-4222-8333-444455556666").status_code == 404


def test_the_guided_vitals_pages(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    overview = client.get("/vitals")
    assert overview.status_code == 200 and 'href="/vitals/blood_pressure"' in overview.text
    step = client.get("/vitals/blood_pressure")
    assert step.status_code == 200 and 'href="/vitals/pulse_oximeter"' in step.text
    assert client.get("/vitals/no-such-device").status_code == 404
    # No virtual devices and no camera at this kiosk.
    assert post(client, "/vitals/blood_pressure/simulate").status_code == 404
    assert post(client, "/vitals/camera/measure").status_code == 404
    assert client.get("/vitals/camera").status_code == 404


def test_a_branch_on_a_decimal_item_opens_when_the_patient_types_that_number(kiosk: Kiosk) -> None:
    """The questionnaire model accepts a whole number as the branch answer of a decimal item (as YAML `answer: 2`
    gives it), so the kiosk must open that branch when the patient types 2."""
    questionnaire = Questionnaire(
        id="inhaler",
        version=1,
        title="Your inhaler",
        items=[
            Item(link_id="puffs", text="How many puffs a day, on average?", type="decimal", required=True),
            Item(
                link_id="puffs_why",
                text="What makes you need two?",
                type="text",
                enable_when=EnableWhen(question="puffs", answer=2),
            ),
            Item(link_id="other", text="Anything else?", type="text"),
        ],
    )
    kiosk.give_setup(setup_body().model_copy(update={"questionnaire": questionnaire}))
    client = kiosk.client
    checked_in(client, NO_PIN)
    assert answer(client, "puffs", "2") == "/case/q/puffs_why"
