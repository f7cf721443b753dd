"""The shared YAML loader on a model of its own: what neither profile format exercises (models inside lists,
optional and mapping values, aliases, the scalar hook, the lines kept for later checks) is checked here; the
formats' own tests check the wording and lines their files get."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from device.yaml_config import ConfigError, Problem, load_located, load_model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Port(Strict):
    name: str
    speed: int = 9600


class Lamp(Strict):
    colour: str = Field(default="white", alias="color")


class Station(Strict):
    id: str
    ports: list[Port] = []
    pair: tuple[Port, Lamp] | None = None
    lamp: Lamp | None = None
    spares: dict[str, Port] = {}
    count: int = 0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_model(path, Station)
    return str(caught.value).splitlines()


def test_a_valid_file_loads_and_keeps_its_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "# a station\nid: s1\nports:\n  - name: a\n  - name: b\n    speed: 115200\n")
    loaded = load_located(path, Station)
    assert loaded.value.ports[1] == Port(name="b", speed=115200)
    assert loaded.line(("id",)) == 2 and loaded.line(("ports", 1)) == 5 and loaded.line(("ports", 1, "speed")) == 6
    assert loaded.line(("ports", 0, "speed")) == 4  # defaulted: the line of its section
    assert loaded.line(("count",)) == 2  # the top-level mapping starts on line 2, after the comment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: s\nports:\n  - name: a\n    baud: 1\n", "4: unknown key 'baud' in ports[0]; allowed: name, speed"),
        ("id: s\nlamp:\n  shade: red\n", "3: unknown key 'shade' in lamp; allowed: color"),
        ("id: s\npair:\n  - name: a\n  - size: 2\n", "4: unknown key 'size' in pair[1]; allowed: color"),
        ("id: s\nspares:\n  left:\n    name: a\n    rate: 2\n", "5: unknown key 'rate' in spares.left; allowed: name"),
    ],
)
def test_an_unknown_key_lists_the_keys_allowed_where_it_is(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:{expected}"), found


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, "id: s\ncount: many\nid: t\nports: {}\n")
    assert problems(path) == [
        f"{path}:2: count: Input should be a valid integer, unable to parse string as an integer (got 'many')",
        f"{path}:3: duplicate key 'id' (first on line 1)",
        f"{path}:4: ports: should be a list (got {{}})",
    ]


def test_the_document_is_named_when_the_file_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- id: s\n")
    with pytest.raises(ConfigError) as caught:
        load_model(path, Station, document="a station file")
    assert caught.value.problems == [
        Problem(str(path), 1, "a station file is a mapping of keys to values (key: value lines)")
    ]


def test_the_scalar_hook_sees_each_scalar_with_its_text(tmp_path: Path) -> None:
    seen: list[tuple[object, str]] = []

    def hook(value: object, text: str) -> object:
        seen.append((value, text))
        return int(text, 16) if isinstance(value, int) else value

    path = write(tmp_path, "id: s\ncount: 10\n")
    assert load_model(path, Station, scalar=hook).count == 16
    assert seen == [("s", "s"), (10, "10")]
