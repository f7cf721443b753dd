"""The clinic's answers and the delivery notices, per patient: shown only to their patient, removed from the kiosk
once shown and the visit is over, kept while not yet seen."""

from __future__ import annotations

from tests.screen.kiosk import NO_PIN, OTHER, Kiosk, answer_message, checked_in, post


def test_answers_show_only_the_checked_in_patients_and_leave_the_kiosk_after_the_visit(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    inbox = kiosk.agent.inbox
    mine, theirs = answer_message(NO_PIN, "Rest and drink water."), answer_message(OTHER, "Come in on Monday.")
    assert inbox.store(mine) and inbox.store(theirs)
    client = kiosk.client
    checked_in(client, NO_PIN)
    home = client.get("/home")
    assert "1 new" in home.text
    page = client.get("/answers")
    assert page.status_code == 200
    assert "Rest and drink water." in page.text and "Come in on Monday." not in page.text
    assert "removed from this kiosk when you sign out" in page.text
    # Shown, but the visit goes on: still there until the patient leaves.
    assert [m.id for m in inbox.messages(NO_PIN)] == [mine.id]
    assert post(client, "/finish").status_code == 303
    assert inbox.messages(NO_PIN) == []
    assert [m.id for m in inbox.messages(OTHER)] == [theirs.id]
    # The hub resends it (its ack was lost): it does not come back.
    assert not inbox.store(mine)
    checked_in(client, NO_PIN)
    assert "Rest and drink water." not in client.get("/answers").text


def test_answers_not_yet_opened_stay_for_the_next_visit(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    waiting = answer_message(NO_PIN, "Your results are normal.")
    kiosk.agent.inbox.store(waiting)
    checked_in(kiosk.client, NO_PIN)
    assert "1 new" in kiosk.client.get("/home").text
    post(kiosk.client, "/finish")
    assert [m.id for m in kiosk.agent.inbox.messages(NO_PIN)] == [waiting.id]


def test_a_replaced_visit_removes_the_answers_it_showed(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    shown = answer_message(NO_PIN, "Rest and drink water.")
    kiosk.agent.inbox.store(shown)
    checked_in(kiosk.client, NO_PIN)
    assert "Rest and drink water." in kiosk.client.get("/answers").text
    checked_in(kiosk.browser(), OTHER)
    assert kiosk.agent.inbox.messages(NO_PIN) == []


def test_the_other_patient_sees_none_of_them(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    kiosk.agent.inbox.store(answer_message(NO_PIN, "Rest and drink water."))
    checked_in(kiosk.client, OTHER)
    assert 'class="badge"' not in kiosk.client.get("/home").text
    page = kiosk.client.get("/answers").text
    assert "Rest and drink water." not in page and "There are no answers for you yet." in page
    post(kiosk.client, "/finish")
    assert len(kiosk.agent.inbox.messages(NO_PIN)) == 1


def test_a_delivered_case_is_told_once_and_a_waiting_one_until_it_arrives(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    post(client, "/case/q/main", {"value": "A cough"})
    delivered_id = post(client, "/case/send").headers["location"].rsplit("/", 1)[1]
    post(client, "/case/q/main", {"value": "And a fever"})
    post(client, "/case/send")
    kiosk.screen.on_receipt([delivered_id])
    post(client, "/finish")

    checked_in(client, NO_PIN)
    home = client.get("/home").text
    assert "reached your clinic on" in home
    assert "1 case is saved on this kiosk and waiting to be sent." in home
    post(client, "/finish")
    # Told once: the delivered notice is gone, the waiting one stays until its receipt.
    notices = kiosk.screen.notices.for_subject(NO_PIN)
    assert [n.delivered_at is None for n in notices] == [True]
    checked_in(client, NO_PIN)
    home = client.get("/home").text
    assert "reached your clinic on" not in home and "1 case is saved" in home
    # Another patient hears nothing of it.
    checked_in(kiosk.browser(), OTHER)
    assert kiosk.screen.notices.for_subject(OTHER) == []
