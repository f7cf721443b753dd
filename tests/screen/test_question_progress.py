"""The question counter says only what is true: "Question 3", and a progress bar through the questionnaire that
only grows as the patient goes on. A total that counted the follow-up questions of the answers so far jumped
("Question 3 of 5", then "Question 4 of 7") whenever an answer opened a branch."""

from __future__ import annotations

import itertools
import re
from typing import Any

from device.intake import general_intake
from device.protocol.questionnaire import EnableWhen, Item, Questionnaire, visible
from device.screen.progress import progress
from tests.screen.kiosk import NO_PIN, Kiosk, checked_in, post

BAR = re.compile(r'<progress class="question-progress" max="(\d+)" value="(\d+)"')


def walk(q: Questionnaire, choose: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """A patient going forward through `q`, answering each question with `choose` (or a plain answer): for each
    question shown, (link_id, number, done, total) as the screen computes them when it is shown."""
    answers: dict[str, Any] = {}
    seen: list[tuple[str, int, int, int]] = []
    while True:
        pending = [i for i in visible(q, answers) if i.link_id not in answers]
        if not pending:
            return seen
        item = pending[0]
        where = progress(q, answers, item.link_id)
        assert where is not None
        seen.append((item.link_id, where.number, where.done, where.total))
        answers[item.link_id] = choose.get(item.link_id, "x" if item.type == "text" else 1)


def test_every_path_through_the_intake_counts_one_by_one_and_only_moves_forward() -> None:
    q = general_intake()
    branches = [i for i in q.items if i.type == "boolean"]
    for values in itertools.product([True, False], repeat=len(branches)):
        choose: dict[str, Any] = {i.link_id: v for i, v in zip(branches, values, strict=True)}
        choose["pain_where"] = ["head"]
        seen = walk(q, choose)
        assert [n for _, n, _, _ in seen] == list(range(1, len(seen) + 1)), (values, seen)
        done = [d for _, _, d, _ in seen]
        assert done == sorted(set(done)), (values, seen)  # grows at every question, never back
        assert {t for _, _, _, t in seen} == {len(q.items)}  # the same scale on every question
        assert all(0 <= d < t for _, _, d, t in seen)


def test_a_questions_number_does_not_change_with_the_answers_after_it() -> None:
    q = general_intake()
    early = {"main": "x", "fever": False}
    later = {**early, "pain": True, "pain_where": ["chest"], "pain_score": 3, "breathless": True}
    for link_id in ("main", "fever", "pain"):
        assert progress(q, early, link_id) == progress(q, later, link_id)
    assert progress(q, early, "fever_days") is None  # hidden by the answer before it: no number at all


def test_a_branch_at_the_end_still_leaves_the_bar_short_of_full() -> None:
    q = Questionnaire(
        id="short", version=1, title="Short",
        items=[Item(link_id="a", text="A?", type="boolean"),
               Item(link_id="b", text="B?", type="text", enable_when=EnableWhen(question="a", answer=True))],
    )  # fmt: skip
    assert [(n, d, t) for _, n, d, t in walk(q, {"a": True})] == [(1, 0, 2), (2, 1, 2)]
    assert [(n, d, t) for _, n, d, t in walk(q, {"a": False})] == [(1, 0, 2)]


def test_the_screen_says_question_n_and_its_bar_only_grows_as_branches_open(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    checked_in(client, NO_PIN)
    shown = []
    path = [("main", "A cough"), ("fever", "yes"), ("fever_days", "2"), ("pain", "yes"), ("pain_where", "chest"),
            ("pain_score", "4"), ("breathless", "no"), ("medicines", "")]  # fmt: skip
    for link_id, value in path:
        page = client.get(f"/case/q/{link_id}")
        assert page.status_code == 200, link_id
        assert re.search(r"Question \d+ of", page.text) is None  # no total that the next answer would change
        number = re.search(r"Question (\d+)<", page.text)
        bar = BAR.search(page.text)
        assert number is not None and bar is not None, link_id
        shown.append((int(number.group(1)), int(bar.group(2)), int(bar.group(1))))
        assert post(client, f"/case/q/{link_id}", {"value": value}).status_code == 303
    assert [n for n, _, _ in shown] == list(range(1, 9))
    values = [v for _, v, _ in shown]
    assert values == sorted(set(values)) and {m for _, _, m in shown} == {8}
