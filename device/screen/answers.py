"""A questionnaire answer as a form sends it, checked against its item: pure."""

from __future__ import annotations

import math

from device.protocol.questionnaire import Item
from device.screen.i18n import _

MAX_TEXT = 1000

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
            try:
                number = int(first)
            except ValueError:
                raise AnswerError(_("Please enter a whole number.")) from None
            if not 0 <= number <= 100_000:
                raise AnswerError(_("Please enter a whole number.")) from None
            return number
        case "decimal":
            try:
                value = float(first.replace(",", "."))
            except ValueError:
                raise AnswerError(_("Please enter a number.")) from None
            if math.isnan(value) or abs(value) > 1e6:
                raise AnswerError(_("Please enter a number."))
            return value
        case "text":
            return first[:MAX_TEXT]
        case "choice":
            options = item.options or []
            chosen = [v for v in values if v in options]
            if len(chosen) != len(values):
                raise AnswerError(_("Please choose from the list."))
            return chosen
    raise AnswerError(_("Please answer this question."))  # pragma: no cover - item types are exhaustive
