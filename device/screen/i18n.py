"""Translations: gettext catalogs (`locale/<lang>/LC_MESSAGES/messages.po`) read with Babel at start-up.

English is the source language (the msgids). Templates mark strings with `_()` and `ngettext()`;
Python code marks them with `_` from here (a no-op marker that Babel's extractor finds). A test
extracts every marked string and checks each language translates all of them.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT_LANGUAGE = "en"


def _(message: str) -> str:
    """Marks a string for translation; it is translated where it is shown (templates call gettext)."""
    return message


@cache
def translations(language: str) -> gettext.NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=language)
    buffer = BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def pick_language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE
