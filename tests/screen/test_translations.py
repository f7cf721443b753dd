"""Every string the screen can show is translated into Spanish, consistently, and Spanish is what es pages show."""

from __future__ import annotations

import html
import re
from functools import cache

from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from device.screen.catalog import extract, po_path
from device.screen.web import LANG_COOKIE
from tests.screen.kiosk import NO_PIN, Kiosk, checked_in, post


@cache
def spanish() -> Catalog:
    with po_path("es").open("rb") as f:
        return read_po(f, locale="es")


def translation(message: Message) -> Message | None:
    return spanish().get(message.id, context=message.context)


def in_spanish(msgid: str) -> str:
    found = spanish().get(msgid)
    assert found is not None and isinstance(found.string, str) and found.string, msgid
    return found.string


def text_of(page: str) -> str:
    """What the page says: its text and attribute values, entities decoded."""
    return html.unescape(page)


def test_every_extracted_string_has_a_spanish_translation_that_is_not_fuzzy() -> None:
    template = extract()
    msgids = [m for m in template if m.id]
    assert len(msgids) > 100
    missing = []
    for message in msgids:
        found = translation(message)
        if found is None or found.fuzzy:
            missing.append(message.id)
            continue
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        forms = spanish().num_plurals if message.pluralizable else 1
        if len(strings) != forms or not all(strings):
            missing.append(message.id)
    assert missing == []


def test_the_spanish_catalog_is_consistent() -> None:
    catalog = spanish()
    # A fuzzy header would drop the plural rule when the catalog is compiled.
    assert not catalog.fuzzy
    assert catalog.num_plurals == 3
    assert [(m.id, errors) for m, errors in catalog.check()] == []


def test_placeholders_survive_translation() -> None:
    """Babel's check covers python-format strings; this also covers the %(name)s the templates pass by keyword."""
    placeholder = re.compile(r"%\(\w+\)[sd]")
    for message in extract():
        if not message.id:
            continue
        found = translation(message)
        assert found is not None
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        wanted = sorted(placeholder.findall(ids[0]))
        for string in strings:
            assert sorted(placeholder.findall(string)) == wanted, (message.id, string)


def welcome_and_base_msgids() -> list[str]:
    """The strings the welcome page (and the frame around it) always shows, with a Spanish that differs."""
    always = []
    for message in extract():
        places = {path for path, _ in message.locations}
        if not message.id or isinstance(message.id, tuple) or not places & {"templates/welcome.html"}:
            continue
        if "%(" in message.id or in_spanish(message.id) == message.id:
            continue
        always.append(message.id)
    return always


def test_the_welcome_page_in_spanish_shows_no_english(kiosk: Kiosk) -> None:
    client = kiosk.client
    response = post(client, "/language", {"lang": "es"})
    assert response.status_code == 303 and client.cookies.get(LANG_COOKIE) == "es"
    page = client.get("/")
    assert page.status_code == 200 and '<html lang="es">' in page.text
    text = text_of(page.text)
    for msgid in (
        "Welcome",
        "Check in",
        "Type the code on your card",
        "No card? Ask the staff for your code.",
        "Health kiosk",
    ):
        assert in_spanish(msgid) in text, msgid
    shown_english = [m for m in welcome_and_base_msgids() if m in text]
    assert shown_english == []
    assert in_spanish("Offline: what you send is saved here and sent later") in text


def test_english_is_the_default_and_an_unknown_language_falls_back_to_it(kiosk: Kiosk) -> None:
    client = kiosk.client
    assert '<html lang="en">' in client.get("/").text
    post(client, "/language", {"lang": "xx"})
    assert client.cookies.get(LANG_COOKIE) == "en"
    page = client.get("/")
    assert '<html lang="en">' in page.text and "Welcome" in page.text and "Check in" in page.text


def test_a_visit_begun_in_spanish_stays_in_spanish(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    post(client, "/language", {"lang": "es"})
    checked_in(client, NO_PIN)
    home = text_of(client.get("/home").text)
    for msgid in ("What would you like to do?", "Take my vitals", "Answers from my clinic", "Finish and sign out"):
        assert in_spanish(msgid) in home and msgid not in home, msgid
    # The clinic's questionnaire carries its own Spanish.
    question = text_of(client.get("/case/q/main").text)
    assert "¿Cuál es el motivo principal de esta visita?" in question
    assert "What is the main reason for this visit?" not in question
    assert in_spanish("Question %(n)d") % {"n": 1} in question
    # A refused answer is explained in Spanish.
    post(client, "/case/q/main", {"value": "x"})
    post(client, "/case/q/fever", {"value": "yes"})
    refused = post(client, "/case/q/fever_days", {"value": "tres"})
    assert refused.status_code == 400
    assert in_spanish("Please enter a whole number.") in text_of(refused.text)
    # Vitals steps and their instructions come from Python strings, translated where they are shown.
    step = text_of(client.get("/vitals/blood_pressure").text)
    assert in_spanish("Blood pressure") in step
    assert in_spanish("Put the cuff on your bare upper arm, at the level of your heart.") in step


def test_spanish_plurals_follow_the_count(kiosk: Kiosk) -> None:
    """Waiting cases on the home screen: one, then two (the kiosk is offline, so both wait)."""
    kiosk.give_setup()
    client = kiosk.client
    post(client, "/language", {"lang": "es"})
    checked_in(client, NO_PIN)
    found = spanish().get("%(num)d case is saved on this kiosk and waiting to be sent.")
    assert found is not None and isinstance(found.string, tuple)
    one, _millions, other = found.string
    for count, form in ((1, one), (2, other)):
        assert post(client, "/case/q/main", {"value": f"tos {count}"}).status_code == 303
        assert post(client, "/case/send").status_code == 303
        assert form % {"num": count} in text_of(client.get("/home").text)
