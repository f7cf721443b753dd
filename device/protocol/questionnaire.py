"""Intake questionnaires, with branching (an item shown only after a given answer): the hub stores them,
the kiosk shows them, so both import this one definition.

Pure: which items a set of answers makes visible, and what is wrong or missing in those
answers. A case is never refused for its answers (the patient already left the kiosk);
problems are shown to the provider beside them.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class ItemTranslation(_Model):
    text: str = Field(min_length=1, max_length=300)
    options: list[str] | None = Field(default=None, description="The item's options in this language, same order.")


class Translation(_Model):
    title: str = Field(min_length=1, max_length=200)
    items: dict[str, ItemTranslation] = Field(default_factory=dict, description="link_id -> the item's words")


class Questionnaire(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    version: int = Field(ge=1)
    title: str
    items: list[Item] = Field(min_length=1, max_length=200)
    translations: dict[str, Translation] = Field(
        default_factory=dict,
        description="Language code (e.g. es) -> title and item texts shown to patients in that language; answers "
        "keep the original option values, so providers read them the same whatever the patient's language.",
    )

    @model_validator(mode="after")
    def _translations(self) -> Self:
        for language, translation in self.translations.items():
            for link_id, words in translation.items.items():
                item = self.item(link_id)
                if item is None:
                    raise ValueError(f"translation {language!r}: {link_id!r} is not an item")
                if (words.options is None) != (item.options is None) or (
                    words.options is not None and len(words.options) != len(item.options or [])
                ):
                    raise ValueError(f"translation {language!r} of {link_id!r}: give one option per option")
        return self

    def words(self, item: Item, language: str) -> tuple[str, list[tuple[str, str]]]:
        """The item's text and its (value, label) options in `language`, falling back to the original."""
        words = self.translations.get(language, Translation(title=self.title)).items.get(item.link_id)
        labels = (words.options if words and words.options else None) or item.options or []
        return (words.text if words else item.text), list(zip(item.options or [], labels, strict=True))

    def title_in(self, language: str) -> str:
        translation = self.translations.get(language)
        return translation.title if translation else self.title

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
    """Choices by membership; yes/no only against yes/no; numbers by value (a decimal 2.0 answers a branch on 2)."""
    if isinstance(answer, list):
        return wanted in answer
    if isinstance(answer, bool) or isinstance(wanted, bool):
        return answer is wanted
    return bool(answer == wanted)


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
