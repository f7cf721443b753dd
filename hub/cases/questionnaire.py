"""Intake questionnaires as validated configuration, with branching (an item shown only after a given answer).

Pure: which items a set of answers makes visible, and what is wrong or missing in those
answers. A case is never refused for its answers (the patient already left the kiosk);
problems are shown to the provider beside them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device.yaml_config import load_model

ItemType = Literal["boolean", "integer", "decimal", "text", "choice"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnableWhen(_Model):
    question: str = Field(description="link_id of an earlier item")
    answer: bool | int | float | str = Field(description="shown when that item was answered with this")


class Item(_Model):
    link_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    text: str = Field(min_length=1, max_length=300)
    type: ItemType
    options: list[str] | None = Field(default=None, description="for `choice`: what may be chosen (several)")
    required: bool = False
    enable_when: EnableWhen | None = None

    @model_validator(mode="after")
    def _options(self) -> Self:
        if (self.type == "choice") != bool(self.options):
            raise ValueError("a `choice` item lists its options, and only a `choice` item has options")
        return self


class Questionnaire(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    version: int = Field(ge=1)
    title: str
    items: list[Item] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _references(self) -> Self:
        seen: dict[str, Item] = {}
        for item in self.items:
            if item.link_id in seen:
                raise ValueError(f"item {item.link_id!r} appears twice")
            cond = item.enable_when
            if cond is not None:
                source = seen.get(cond.question)
                if source is None:
                    raise ValueError(
                        f"item {item.link_id!r} depends on {cond.question!r}, which is not an earlier item"
                    )
                if not _fits(source, cond.answer):
                    raise ValueError(
                        f"item {item.link_id!r}: {cond.answer!r} is not a possible answer to {source.link_id!r}"
                    )
            seen[item.link_id] = item
        return self

    def item(self, link_id: str) -> Item | None:
        return next((i for i in self.items if i.link_id == link_id), None)


def _fits(item: Item, value: Any) -> bool:
    """Whether `value` is a well-typed answer to `item` (for a choice: one option, or a list of them)."""
    match item.type:
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "decimal":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "text":
            return isinstance(value, str)
        case "choice":
            values = value if isinstance(value, list) else [value]
            return bool(values) and all(isinstance(v, str) and v in (item.options or []) for v in values)
    return False  # pragma: no cover - exhaustive above


def _matches(answer: Any, wanted: Any) -> bool:
    return wanted in answer if isinstance(answer, list) else answer == wanted and type(answer) is type(wanted)


def visible(q: Questionnaire, answers: dict[str, Any]) -> list[Item]:
    """The items a patient with these answers was shown (branches follow earlier answers)."""
    shown: list[Item] = []
    shown_ids: set[str] = set()
    for item in q.items:
        cond = item.enable_when
        if cond is None or (cond.question in shown_ids and cond.question in answers
                            and _matches(answers[cond.question], cond.answer)):  # fmt: skip
            shown.append(item)
            shown_ids.add(item.link_id)
    return shown


def problems(q: Questionnaire, answers: dict[str, Any]) -> list[str]:
    """What a provider should know about these answers: unknown items, wrong types, hidden or missing answers."""
    found: list[str] = []
    shown = {i.link_id for i in visible(q, answers)}
    for link_id, value in answers.items():
        item = q.item(link_id)
        if item is None:
            found.append(f"{link_id!r} is not in {q.id} v{q.version}")
        elif not _fits(item, value):
            found.append(f"{link_id!r}: {value!r} is not a valid {item.type} answer")
        elif link_id not in shown:
            found.append(f"{link_id!r} was answered though the earlier answers hide it")
    found += [f"{i.link_id!r} (required) is unanswered" for i in visible(q, answers)
              if i.required and i.link_id not in answers]  # fmt: skip
    return found


BUILT_IN_DIR = Path(__file__).parent / "questionnaires"


def _built_in() -> dict[tuple[str, int], Questionnaire]:
    found = {}
    for path in sorted(BUILT_IN_DIR.glob("*.yaml")):
        q = load_model(path, Questionnaire, document="a questionnaire")
        found[(q.id, q.version)] = q
    return found


BUILT_IN = _built_in()
GENERAL_INTAKE = BUILT_IN[("general-intake", 1)]


def lookup(
    conn: sqlite3.Connection, clinic_id: str | None, questionnaire_id: str, version: int
) -> Questionnaire | None:
    """The clinic's own questionnaire of that id and version, else a built-in one."""
    if clinic_id is not None:
        row = conn.execute(
            "SELECT definition FROM questionnaires WHERE clinic_id = ? AND id = ? AND version = ?",
            (clinic_id, questionnaire_id, version),
        ).fetchone()
        if row is not None:
            return Questionnaire.model_validate_json(row[0])
    return BUILT_IN.get((questionnaire_id, version))


def store(conn: sqlite3.Connection, clinic_id: str, q: Questionnaire, by: str, now: float) -> None:
    """Versions are immutable (cases name the version they answered): a changed questionnaire needs a new one."""
    row = conn.execute(
        "SELECT definition FROM questionnaires WHERE clinic_id = ? AND id = ? AND version = ?",
        (clinic_id, q.id, q.version),
    ).fetchone()
    if row is not None:
        if Questionnaire.model_validate_json(row[0]) != q:
            raise ValueError(
                f"{q.id} version {q.version} exists with other content: give the new one version {q.version + 1}"
            )
        return
    conn.execute(
        "INSERT INTO questionnaires (clinic_id, id, version, definition, created_by, created_at) VALUES (?,?,?,?,?,?)",
        (clinic_id, q.id, q.version, q.model_dump_json(), by, now),
    )
