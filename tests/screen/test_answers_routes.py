"""The clinic's answers and the delivery notices, per patient: shown only to their patient, removed from the kiosk
once shown and the visit is over, kept while not yet seen."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime

from device.protocol.downlink import CaseAnswerBody, CaseAnswerMessage
from device.protocol.ids import new_message_id
from device.screen.i18n import translations
from device.screen.visit import CaseDraft
from device.screen.web import LANG_COOKIE, environment
from tests.screen.kiosk import KIOSK_ID, NO_PIN, OTHER, Kiosk, answer_message, checked_in, post


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


def _answer_to(case: dict[str, object], message: str) -> CaseAnswerMessage:
    body = CaseAnswerBody(case=str(case["case"]), subject=str(case["subject"]), message=message)
    return CaseAnswerMessage(id=new_message_id(), kiosk=KIOSK_ID, created=datetime.now(UTC), body=body)


def _articles(page: str) -> list[str]:
    return [html.unescape(a) for a in page.split("<article")[1:]]


def test_each_answer_says_which_question_it_answers_in_the_patients_language(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    long = "An itchy rash on my arm that will not go away whatever cream I put on it, morning or night"
    sent = {}
    for words in ("Headache since Monday", long):
        post(client, "/case/q/main", {"value": words})
        envelope_id = post(client, "/case/send").headers["location"].rsplit("/", 1)[1]
        notice = kiosk.screen.notices.status(NO_PIN, envelope_id)
        assert notice is not None
        sent[words] = notice.saved_at
    post(client, "/finish")
    cases = {c["payload"]["answers"][0]["value"]: c["payload"] for c in kiosk.outbox("case")}
    kiosk.agent.inbox.store(_answer_to(cases[long], "Use the cream twice a day."))
    kiosk.agent.inbox.store(_answer_to(cases["Headache since Monday"], "Drink more water."))

    client.cookies.set(LANG_COOKIE, "es")
    checked_in(client, NO_PIN)
    when = environment("es").filters["when"]
    es = translations("es").gettext
    articles = _articles(client.get("/answers").text)
    (rash,) = [a for a in articles if "Use the cream twice a day." in a]
    (headache,) = [a for a in articles if "Drink more water." in a]
    assert es("Your question of %(sent)s") % {"sent": when(sent["Headache since Monday"])} in headache
    assert es("You wrote: “%(words)s”") % {"words": "Headache since Monday"} in headache
    assert es("Your question of %(sent)s") % {"sent": when(sent[long])} in rash
    # The first words, not the whole text: enough for the patient to know it again.
    first_words = "An itchy rash on my arm that will not go away whatever cream…"
    assert es("You wrote: “%(words)s”") % {"words": first_words} in rash
    assert "Headache" not in rash and "rash" not in headache
    post(client, "/finish")
    # Shown and signed out: the kiosk forgets the answers and what identified their cases.
    assert kiosk.agent.inbox.messages(NO_PIN) == []
    assert kiosk.screen.notices.sent_cases(NO_PIN, [str(c["case"]) for c in cases.values()]) == {}


def test_an_answer_to_a_call_that_became_a_case_says_so(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    visit = kiosk.screen.desk.visit
    assert visit is not None
    visit.case = CaseDraft(text="The video call dropped. The patient asked to see a provider now.")
    kiosk.screen.send_case(visit, str(uuid.uuid4()), origin="call")
    (case,) = kiosk.outbox("case")
    kiosk.agent.inbox.store(_answer_to(case["payload"], "Sorry we lost you: come in tomorrow."))
    (article,) = _articles(client.get("/answers").text)
    assert "Your video call request of" in article and "You wrote" not in article
    assert "The video call dropped" not in article  # the provider's words, not the patient's


def test_an_answer_to_a_case_the_kiosk_does_not_know_still_shows_when_it_came(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    kiosk.agent.inbox.store(answer_message(NO_PIN, "Rest and drink water."))
    checked_in(kiosk.client, NO_PIN)
    (article,) = _articles(kiosk.client.get("/answers").text)
    assert "Answer received" in article and "Your question of" not in article
