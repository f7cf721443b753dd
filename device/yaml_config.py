"""Hand-edited YAML files read into pydantic models, with every problem reported as `file:line: message`.

The kiosk's configuration (Bluetooth device profiles, kiosk hardware profiles) is written by people,
so a mistake must be reported where they have to look: the file *and the line*, every problem at
once rather than one per run. PyYAML's `safe_load` forgets where values came from and silently keeps
the last of two equal keys, so the loader works on the composed node tree instead: it builds plain
data while recording the line of every key and list item, reports duplicate keys itself, validates
with the caller's model and maps pydantic's error locations back to those lines, in the words of a
YAML file ("should be a list", "unknown key 'x' in camera; allowed: ...") rather than pydantic's.

It lives here, not in one of the formats, so that every format reports problems the same way and a
fix to the wording or the line mapping reaches all of them. What is particular to one format (the
Bluetooth profiles reading `1810` as the hex UUID it means, ids unique across files) stays in that
format's module, through the `scalar` hook and `load_located`'s lines.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)

Loc = tuple[int | str, ...]
"""Where a value is in a file's data: keys and list indexes from the top, as pydantic's error `loc`."""

ScalarHook = Callable[[object, str], object]
"""Called with each scalar as YAML read it and its text as written; returns what the model is given instead."""


class Problem(NamedTuple):
    """One thing wrong in one file; `line` is None when the problem is the file (or folder) itself."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line is not None else f"{self.file}: {self.message}"


class ConfigError(ValueError):
    """Every problem found, each with its file and line; str() is one problem per line, in file and line order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Located(Generic[M]):
    """A validated model and the line of every key and list item it was read from.

    For checks that span files (the same id in two of them) and must still name a line.
    """

    value: M
    lines: Mapping[Loc, int]

    def line(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest parent that was written (a defaulted key: its section's line)."""
        return _line_for(self.lines, loc)


def load_model(
    path: Path, model: type[M], *, document: str = "a configuration file", scalar: ScalarHook | None = None
) -> M:
    """The `model` in the YAML file `path`; raises `ConfigError` with every problem in it.

    `document` names what the file is, for the one problem that is about the file as a whole (its
    top level is not a mapping). `scalar`, when given, replaces each scalar before validation.
    """
    return load_located(path, model, document=document, scalar=scalar).value


def load_located(
    path: Path, model: type[M], *, document: str = "a configuration file", scalar: ScalarHook | None = None
) -> Located[M]:
    """As `load_model`, keeping the line of every key and list item for checks made after validation."""
    problems: list[Problem] = []
    root = _compose(path, document, problems)
    if root is None:
        raise ConfigError(problems)
    builder = _Builder(str(path), problems, scalar)
    builder.lines[()] = root.start_mark.line + 1
    data = builder.value(root, ())
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        locs: list[Loc] = [tuple(e["loc"]) for e in errors]
        problems += [
            Problem(str(path), _line_for(builder.lines, loc), _message(error, model))
            for error, loc in zip(errors, locs, strict=True)
            if not _said_better(loc, locs, builder.unreadable)
        ]
    if problems:
        raise ConfigError(problems)
    return Located(value, builder.lines)


def _compose(path: Path, document: str, problems: list[Problem]) -> yaml.MappingNode | None:
    """The file's top-level mapping node, or None with the reason appended to `problems`."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(file, None, f"cannot read: {exc}"))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(m for m in (exc.context, exc.problem) if m) or "not valid YAML"
        problems.append(Problem(file, mark.line + 1 if mark else 1, f"YAML syntax: {message}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, f"YAML syntax: {exc}"))
        return None
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root is not None else 1
        problems.append(Problem(file, line, f"{document} is a mapping of keys to values (key: value lines)"))
        return None
    return root


class _Builder:
    """Plain data from a composed YAML node tree, remembering the line of every key and list item."""

    def __init__(self, file: str, problems: list[Problem], scalar: ScalarHook | None = None) -> None:
        self.file = file
        self.problems = problems
        self.lines: dict[Loc, int] = {}
        self.unreadable: set[Loc] = set()  # already reported: validation errors there would only repeat them
        self._scalar_hook = scalar
        self._constructor = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()

    def value(self, node: yaml.Node, path: Loc) -> Any:
        if id(node) in self._active:
            self._problem(node, f"{_dotted(path)}: an alias refers to itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = item.start_mark.line + 1
                    items.append(self.value(item, (*path, index)))
                return items
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first: dict[str, int] = {}
        where = f" in {_dotted(path)}" if path else ""
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, f"a key must be a plain word{where}")
                continue
            key = str(key_node.value)  # the text as written: `on:` stays "on", not True
            if key in first:
                self.problems.append(
                    Problem(self.file, line, f"duplicate key {key!r}{where} (first on line {first[key]})")
                )
                continue
            first[key] = line
            self.lines[(*path, key)] = line
            result[key] = self.value(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.Node, path: Loc) -> Any:
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self._problem(node, exc.problem or "unreadable value")
            self.unreadable.add(path)
            return None
        if self._scalar_hook is not None:
            return self._scalar_hook(value, str(node.value))
        return value

    def _problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, message))


def _dotted(loc: Loc) -> str:
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The model's fields by the key a file writes them with (the alias, where one is set)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _unwrapped(annotation: object) -> object:
    """`annotation` without `Annotated[...]` metadata and without `| None`: what a present value is."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            present = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(present) == 1:
                annotation = present[0]
                continue
        return annotation


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that the mapping at `loc` is validated against, for the keys an unknown key could have been.

    Follows fields, list and tuple items, mapping values and optional values. None where the way is
    not that plain (a union of models, a custom type): the message then names no keys rather than wrong ones.
    """
    annotation: object = model
    for step in loc:
        annotation = _unwrapped(annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _keys(annotation).get(step) if isinstance(step, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif isinstance(step, int) and origin in (list, tuple, set, frozenset, Sequence) and args:
            homogeneous = origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)
            if homogeneous:
                annotation = args[0]
            elif step < len(args):
                annotation = args[step]
            else:
                return None
        elif isinstance(step, str) and origin in (dict, Mapping) and len(args) == 2:
            annotation = args[1]
        else:
            return None
    annotation = _unwrapped(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _message(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One pydantic error, said the way the person editing the file sees it (`model` is the file's top level)."""
    loc: Loc = tuple(error["loc"])
    where = _dotted(loc)
    section = f" in {_dotted(loc[:-1])}" if len(loc) > 1 else ""
    if error["type"] == "extra_forbidden":
        expected = _model_at(model, loc[:-1])
        allowed = f"; allowed: {', '.join(_keys(expected))}" if expected is not None else ""
        return f"unknown key {loc[-1]!r}{section}{allowed}"
    if error["type"] == "missing":
        return f"missing key {loc[-1]!r}{section}"
    if error["type"] == "value_error":
        text = error["msg"].removeprefix("Value error, ")
    elif error["type"] in _PLAIN_WORDS:
        text = f"{_PLAIN_WORDS[error['type']]} (got {_shown(error['input'])})"
    else:
        text = f"{error['msg']} (got {_shown(error['input'])})"
    return f"{where}: {text}" if where else text


# pydantic's words for container types, said the way a YAML file spells them.
_PLAIN_WORDS = {
    "tuple_type": "should be a list",
    "list_type": "should be a list",
    "model_type": "should be a mapping (key: value lines)",
    "dict_type": "should be a mapping (key: value lines)",
}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _said_better(loc: Loc, others: list[Loc], unreadable: set[Loc]) -> bool:
    """An error that a more precise one explains: a list "too short" because its one item failed, or a
    value already reported as unreadable YAML."""
    if any(loc[: len(bad)] == bad for bad in unreadable):
        return True
    return any(len(other) > len(loc) and other[: len(loc)] == loc for other in others)


def _line_for(lines: Mapping[Loc, int], loc: Loc) -> int:
    """The line of `loc`, or of its nearest recorded parent (a missing key is reported at its section)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


__all__ = ["ConfigError", "Loc", "Located", "Problem", "ScalarHook", "load_located", "load_model"]
