"""answers.parse_answer: what a form sends, typed and checked against its questionnaire item (pure)."""

from __future__ import annotations

import pytest

from device.protocol.questionnaire import Item
from device.screen.answers import MAX_TEXT, AnswerError, parse_answer
from device.screen.catalog import extract


def item(kind: str, *, required: bool = False, options: list[str] | None = None) -> Item:
    return Item(link_id="q", text="A question?", type=kind, required=required, options=options)  # type: ignore[arg-type]


PAIN = ["head", "chest", "arm or leg"]
KINDS = [("boolean", None), ("integer", None), ("decimal", None), ("text", None), ("choice", PAIN)]


@pytest.mark.parametrize(("kind", "options"), KINDS)
def test_an_empty_answer_is_no_answer_unless_the_item_is_required(kind: str, options: list[str] | None) -> None:
    for empty in ([], [""], ["   "], ["", " \t\n"]):
        assert parse_answer(item(kind, options=options), empty) is None
        with pytest.raises(AnswerError, match="Please answer this question"):
            parse_answer(item(kind, required=True, options=options), empty)


def test_boolean_answers_are_yes_or_no_and_nothing_else() -> None:
    assert parse_answer(item("boolean"), ["yes"]) is True
    assert parse_answer(item("boolean"), ["no"]) is False
    assert parse_answer(item("boolean"), [" yes "]) is True
    for wrong in ("Yes", "true", "1", "si", "on"):
        with pytest.raises(AnswerError, match="Yes or No"):
            parse_answer(item("boolean"), [wrong])


def test_integers_are_whole_numbers_from_0_to_100000() -> None:
    assert parse_answer(item("integer"), ["3"]) == 3
    assert parse_answer(item("integer"), [" 42 "]) == 42
    assert parse_answer(item("integer"), ["0"]) == 0
    assert parse_answer(item("integer"), ["100000"]) == 100_000
    result = parse_answer(item("integer"), ["7"])
    assert type(result) is int


@pytest.mark.parametrize("garbage", ["three", "3.5", "3,5", "1e3", "-1", "100001", "nan", "inf", "0x10", "9" * 5000])
def test_an_integer_that_is_not_a_whole_number_in_range_is_refused(garbage: str) -> None:
    with pytest.raises(AnswerError, match="whole number"):
        parse_answer(item("integer"), [garbage])


def test_decimals_take_a_point_or_a_comma() -> None:
    assert parse_answer(item("decimal"), ["37.5"]) == 37.5
    assert parse_answer(item("decimal"), ["37,5"]) == 37.5
    assert parse_answer(item("decimal"), ["-2"]) == -2.0
    assert parse_answer(item("decimal"), ["1000000"]) == 1e6


@pytest.mark.parametrize(
    "garbage",
    ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "1000001", "-1e7", "abc", "1,000.5", "37..5", "9" * 400],
)
def test_a_decimal_that_is_not_a_finite_number_in_range_is_refused(garbage: str) -> None:
    with pytest.raises(AnswerError, match="Please enter a number"):
        parse_answer(item("decimal"), [garbage])


def test_text_is_trimmed_and_cut_at_the_limit() -> None:
    assert parse_answer(item("text"), ["  a cough  "]) == "a cough"
    long = parse_answer(item("text"), ["x" * (MAX_TEXT + 50)])
    assert long == "x" * MAX_TEXT
    # A form sends one text field; a second value is not glued on.
    assert parse_answer(item("text"), ["first", "second"]) == "first"


def test_choices_are_a_list_of_the_items_options() -> None:
    assert parse_answer(item("choice", options=PAIN), ["head"]) == ["head"]
    assert parse_answer(item("choice", options=PAIN), ["head", "arm or leg"]) == ["head", "arm or leg"]
    assert parse_answer(item("choice", options=PAIN), ["", "chest"]) == ["chest"]


@pytest.mark.parametrize("values", [["knee"], ["head", "knee"], ["Head"], ["cabeza"], ["head,chest"]])
def test_a_choice_outside_the_options_is_refused_whole(values: list[str]) -> None:
    with pytest.raises(AnswerError, match="from the list"):
        parse_answer(item("choice", options=PAIN), values)


def test_every_message_the_patient_can_be_shown_is_a_catalog_string() -> None:
    """parse_answer's messages are msgids: the question page translates them when it shows them."""
    msgids = {m.id for m in extract() if m.id}
    cases = [
        ("boolean", ["maybe"]),
        ("integer", ["x"]),
        ("integer", ["-3"]),
        ("decimal", ["x"]),
        ("decimal", ["nan"]),
        ("choice", ["x"]),
    ]
    for kind, values in cases:
        with pytest.raises(AnswerError) as caught:
            parse_answer(item(kind, options=PAIN if kind == "choice" else None), values)
        assert str(caught.value) in msgids
    with pytest.raises(AnswerError) as caught:
        parse_answer(item("text", required=True), [])
    assert str(caught.value) in msgids
