"""A questionnaire answer as a form sends it, checked against its item: pure."""

from __future__ import annotations

import re

from device.protocol.questionnaire import Item
from device.screen.i18n import _

MAX_TEXT = 1000
_INTEGER = re.compile(r"[0-9]{1,6}", re.ASCII)
_DECIMAL = re.compile(r"-?[0-9]{1,7}([.,][0-9]{1,4})?", re.ASCII)

Answer = bool | int | float | str | list[str]


class AnswerError(ValueError):
    """What to tell the patient (a translatable message)."""


def parse_answer(item: Item, values: list[str]) -> Answer | None:
    """The typed answer, None for no answer, or AnswerError saying what is wrong."""
    values = [v.strip() for v in values if v.strip()]
    if not values:
        if item.required:
            raise AnswerError(_("Please answer this question."))
        return None
    first = values[0]
    match item.type:
        case "boolean":
            if first not in ("yes", "no"):
                raise AnswerError(_("Please choose Yes or No."))
            return first == "yes"
        case "integer":
            # Digits only: Python's int() would also take "1_000" or full-width digits.
            if not _INTEGER.fullmatch(first) or int(first) > 100_000:
                raise AnswerError(_("Please enter a whole number."))
            return int(first)
        case "decimal":
            if not _DECIMAL.fullmatch(first):
                raise AnswerError(_("Please enter a number."))
            value = float(first.replace(",", "."))
            if abs(value) > 1e6:
                raise AnswerError(_("Please enter a number."))
            return value
        case "text":
            return first[:MAX_TEXT]
        case "choice":
            options = item.options or []
            if any(v not in options for v in values):
                raise AnswerError(_("Please choose from the list."))
            return [o for o in options if o in values]  # each once, in the questionnaire's order
    raise AnswerError(_("Please answer this question."))  # pragma: no cover - item types are exhaustive
