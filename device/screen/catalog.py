"""The screen's message catalogs: extract every marked string, and bring each language's .po up to date.

`python -m device.screen.catalog` (or `make messages`) adds new strings to every catalog (untranslated,
for a translator) and marks vanished ones obsolete. The tests use `extract()` to prove that every
string the screen can show is translated in every language it ships.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from device.screen.i18n import DEFAULT_LANGUAGE, LANGUAGES, LOCALE_DIR

ROOT = Path(__file__).parent
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def extract() -> Catalog:
    catalog = Catalog(project="kiosk-screen", locale=DEFAULT_LANGUAGE)
    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, METHODS, OPTIONS, keywords={"_": None, "gettext": None, "ngettext": (1, 2)}
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


def update() -> None:
    template = extract()
    for language in LANGUAGES:
        if language == DEFAULT_LANGUAGE:
            continue
        path = po_path(language)
        if path.exists():
            with path.open("rb") as f:
                catalog = read_po(f, locale=language)
        else:
            catalog = Catalog(locale=language, project="kiosk-screen")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.fuzzy = False  # the header: a fuzzy header would drop the plural rule from the compiled catalog
        catalog.project, catalog.version = "telehealth-edge kiosk screen", "1"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write_po(f, catalog, width=120, omit_header=False, sort_output=False, ignore_obsolete=True)
        missing = sum(1 for m in catalog if m.id and not m.string)
        print(f"{path}: {len(catalog)} messages, {missing} untranslated")


if __name__ == "__main__":
    update()
