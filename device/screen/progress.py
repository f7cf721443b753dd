"""Where a patient is in the questionnaire, said so that it stays true whatever they answer next.

"Question 3 of 5" promised a total the kiosk cannot know: follow-up questions appear only after the answer
that opens them, so the total grew as the patient answered ("3 of 5", then "4 of 7"). Instead the screen says
the question's number, which depends only on the answers before it (a follow-up always follows its question),
and shows how far through the questionnaire's items the patient is: the items before this one, answered or
passed over by a branch. That share only grows as the patient goes on, and reaches the end only when they do.

Pure: the questionnaire and the answers in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from device.protocol.questionnaire import Questionnaire, visible


@dataclass(frozen=True)
class Progress:
    number: int  # the question's place among those the patient is asked, from 1
    done: int  # the questionnaire's items before this one (asked or passed over by a branch)
    total: int  # the questionnaire's items


def progress(q: Questionnaire, answers: dict[str, Any], link_id: str) -> Progress | None:
    """The progress shown on question `link_id`; None when these answers do not show that question."""
    asked = [i.link_id for i in visible(q, answers)]
    if link_id not in asked:
        return None
    done = next(n for n, item in enumerate(q.items) if item.link_id == link_id)
    return Progress(number=asked.index(link_id) + 1, done=done, total=len(q.items))
