"""Device profiles: the shipped ones load and are matched as documented; broken ones are reported with the
file and line a person has to open, and the format's documentation names exactly the model's fields."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from device.ble.profiles import (
    KIND_SERVICES,
    QUIRK_DESCRIPTIONS,
    Bonding,
    DeviceProfile,
    Kind,
    Problem,
    ProfileError,
    Quirk,
    StoredRecords,
    load_profile,
    load_profiles,
    match,
)
from device.ble.transport import Advertisement

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "firmware_configs" / "ble"
FORMAT_DOC = (REPO / "firmware_configs" / "README.md").read_text()


@pytest.fixture(scope="module")
def shipped() -> list[DeviceProfile]:
    return load_profiles(SHIPPED)


def ad(name: str | None, *services: int) -> Advertisement:
    return Advertisement(address="AA:BB:CC:DD:EE:FF", name=name, service_uuids=frozenset(services))


# -- the shipped profiles ----------------------------------------------------------------------


def test_all_shipped_profiles_load_sorted_by_id(shipped: list[DeviceProfile]) -> None:
    ids = [p.id for p in shipped]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == len(list(SHIPPED.rglob("*.yaml")))


def test_each_shipped_file_names_its_sources_and_is_named_after_its_id() -> None:
    for path in sorted(SHIPPED.rglob("*.yaml")):
        assert path.read_text().startswith("# Sources"), f"{path.name} must start with a comment naming its sources"
        assert load_profile(path).id == path.stem


@pytest.mark.parametrize("kind", get_args(Kind))
def test_each_kind_has_a_generic_profile_for_its_standard_service(shipped: list[DeviceProfile], kind: str) -> None:
    generic = [p for p in shipped if p.kind == kind and not p.match.name_patterns]
    assert generic, f"no generic profile for {kind}"
    assert any(KIND_SERVICES[kind] in p.match.service_uuids for p in generic)


# (profile id, an advertised name of that model, the services it advertises)
REAL_DEVICES = [
    ("omron-evolv", "BLESmart_0000015428FFB251DB2C", {0x1810}),
    ("omron-evolv", "BLEsmart_0000016428FFB251DB2C", {0x1810}),  # pairing mode: lowercase s
    ("and-ua-651ble", "A&D_UA-651BLE_1A2B3C", {0x1810}),
    ("and-uc-352ble", "A&D_UC-352BLE_AA26F0", {0x181D}),
    ("and-ut-201ble", "A&D_UT201BLE_1A2B3C", {0x1809}),
    ("nonin-3230", "Nonin3230_501900083", {0x1822}),
    ("contour-next-one", "Contour Next One", {0x1808}),
    ("accu-chek-guide", "meter+02252924", {0x1808}),
]


@pytest.mark.parametrize(("expected", "name", "services"), REAL_DEVICES)
def test_a_model_gets_its_own_profile_and_an_unknown_name_the_generic_one(
    shipped: list[DeviceProfile], expected: str, name: str, services: set[int]
) -> None:
    chosen = match(shipped, ad(name, *services))
    assert chosen is not None and chosen.id == expected
    fallback = match(shipped, ad("Some Other Device", *services))
    assert fallback is not None and fallback.id == f"generic-{chosen.kind.replace('_', '-')}"


def test_an_omron_scale_is_not_taken_for_a_cuff(shipped: list[DeviceProfile]) -> None:
    chosen = match(shipped, ad("BLESmart_0000021F28FFB251DB2C", 0x181D))
    assert chosen is not None and chosen.id == "generic-weight-scale"


def test_nothing_matches_an_unknown_device(shipped: list[DeviceProfile]) -> None:
    assert match(shipped, ad("Headphones", 0x110B)) is None
    assert match(shipped, ad(None)) is None


def profile(id_: str, **match_: Any) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {"id": id_, "name": id_, "manufacturer": "x", "kind": "thermometer", "match": match_, "measurements": ["2a1c"]}
    )


def test_precedence_is_name_and_service_then_name_then_service_then_id() -> None:
    both = profile("z-both", name_patterns=["Therm.*"], service_uuids=["1809"])
    name_only = profile("y-name", name_patterns=["Therm.*"])
    service_only = profile("a-service", service_uuids=["1809"])
    other_service_only = profile("b-service", service_uuids=["1809"])
    everything = [service_only, other_service_only, name_only, both]
    assert match(everything, ad("Therm 1", 0x1809)) is both
    assert match(everything, ad("Therm 1")) is name_only
    assert match(everything, ad("Other", 0x1809)) is service_only
    assert match(list(reversed(everything)), ad("Other", 0x1809)) is service_only  # file order does not matter


def test_device_clock_zone_follows_the_quirks(shipped: list[DeviceProfile]) -> None:
    utc = DeviceProfile.model_validate(
        {**profile("u", service_uuids=["1809"]).model_dump(), "quirks": ["time_stamp_is_utc"]}
    )
    assert utc.device_clock_is_utc
    assert not any(p.device_clock_is_utc for p in shipped)


def test_name_patterns_match_the_whole_name() -> None:
    p = profile("p", name_patterns=["A&D_UA-651BLE"])
    assert match([p], ad("A&D_UA-651BLE")) is p
    assert match([p], ad("A&D_UA-651BLE_1A2B3C")) is None
    assert match([p], ad("x A&D_UA-651BLE")) is None


# -- broken profiles: every problem names its file and line ------------------------------------

VALID = """\
# Sources: a test
id: test-cuff
name: Test cuff
manufacturer: Test
kind: blood_pressure
match:
  service_uuids: ["0x1810"]
  name_patterns: ["Test.*"]
measurements:
  - "0x2A35"
bonding: required
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def problems_in(folder: Path) -> list[Problem]:
    with pytest.raises(ProfileError) as caught:
        load_profiles(folder)
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    """The first line of `text` containing `needle`, counted from 1 as editors do."""
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_the_valid_example_loads(tmp_path: Path) -> None:
    write(tmp_path, "test-cuff.yaml", VALID)
    (loaded,) = load_profiles(tmp_path)
    assert loaded.match.service_uuids == (0x1810,) and loaded.measurements == (0x2A35,)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            "  service_uuids:",
            "  servce_uuids:",
            "servce_uuids",
            "unknown key 'servce_uuids' in match; allowed: service_uuids, name_patterns",
        ),
        ("bonding: required", "bonding: required\ncolour: red", "colour", "unknown key 'colour'; allowed: id, name"),
        (
            '["0x1810"]',
            '["0x18100"]',
            "0x18100",
            "match.service_uuids[0]: '0x18100' is not a 16-bit Bluetooth SIG UUID",
        ),
        (
            '["0x1810"]',
            '["0000fe4a-aaaa-1000-8000-00805f9b34fb"]',
            "fe4a",
            "vendor 128-bit UUIDs cannot be matched",
        ),
        ('- "0x2A35"', '- "0x2A35"\n  - "0x2A99"', "0x2A99", "measurements[1]: no decoder for characteristic 0x2a99"),
        ('["Test.*"]', '["Test[.*"]', "Test[", "match.name_patterns[0]: 'Test[.*' is not a valid regular expression"),
        (
            "bonding: required",
            "bonding: always",
            "bonding",
            "bonding: Input should be 'required', 'optional' or 'none'",
        ),
        ("kind: blood_pressure", "kind: [blood_pressure]", "kind:", "kind: Input should be 'blood_pressure'"),
        (
            "bonding: required",
            "bonding: required\nbonding: none",
            "bonding: none",
            "duplicate key 'bonding' (first on line 11)",
        ),
        (
            '  name_patterns: ["Test.*"]',
            '  name_patterns: ["Test.*"]\n  name_patterns: ["Other.*"]',
            "Other",
            "duplicate key 'name_patterns' in match (first on line 8)",
        ),
        ('- "0x2A35"', '- "0x2A35"\n  - "2a35"', "measurements:", "measurements: listed twice: 0x2a35"),
        (
            '- "0x2A35"',
            '- "0x2A35"\nintermediate: ["2a35"]',
            "intermediate",
            "intermediate: 0x2a35 also listed in measurements",
        ),
        (
            "bonding: required",
            "bonding: required\nclock:\n  max_drift_s: -1",
            "max_drift_s",
            "clock.max_drift_s: Input should be",
        ),
        ("bonding: required", "bonding: required\nquirks: [sneezes]", "quirks", "quirks[0]: Input should be"),
        (
            "bonding: required",
            "bonding: required\nquirks: [time_stamp_is_utc, time_stamp_is_local_time]",
            "quirks",
            "quirks: time_stamp_is_local_time and time_stamp_is_utc contradict each other",
        ),
        ('  service_uuids: ["0x1810"]\n  name_patterns: ["Test.*"]\n', "  {}\n", "match:", "match: give service_uuids"),
        (
            "name: Test cuff",
            "name: Test cuff\n  indented: wrong",
            "indented",
            "YAML syntax: mapping values are not allowed",
        ),
        ('["Test.*"]', '["Test.*"', "measurements", "YAML syntax: while parsing a flow sequence"),
        ("bonding: required", "bonding: !!python/object:os.system x", "bonding", "could not determine a constructor"),
    ],
)
def test_a_problem_names_the_file_and_line(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    assert old in VALID
    text = VALID.replace(old, new)
    path = write(tmp_path, "test-cuff.yaml", text)
    found = problems_in(tmp_path)
    assert [(p.file, p.line) for p in found] == [(str(path), line_of(text, needle))], found
    assert message in found[0].message


def test_a_missing_key_is_reported_where_the_profile_starts(tmp_path: Path) -> None:
    text = VALID.replace('measurements:\n  - "0x2A35"\n', "")
    path = write(tmp_path, "test-cuff.yaml", text)
    assert problems_in(tmp_path) == [Problem(str(path), 2, "missing key 'measurements'")]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID.replace("bonding: required", "bonding: always"))
    second = write(tmp_path, "b.yaml", VALID.replace("id: test-cuff", "id: other").replace("0x2A35", "0x2A99"))
    third = write(tmp_path, "c.yml", VALID)
    found = problems_in(tmp_path)
    assert [(p.file, p.line) for p in found] == [(str(first), 11), (str(second), 10), (str(third), None)]
    assert "profiles must end in .yaml" in found[2].message


def test_a_duplicate_id_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    sub = tmp_path / "more"
    sub.mkdir()
    second = write(sub, "b.yaml", "# another\n" + VALID)
    found = problems_in(tmp_path)
    assert found == [Problem(str(second), 3, f"duplicate profile id 'test-cuff' (also in {first}:2)")]


def test_a_uuid_written_without_quotes_is_still_hexadecimal(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace('["0x1810"]', "[1810, 0x1822]"))
    (loaded,) = load_profiles(tmp_path)
    assert loaded.match.service_uuids == (0x1810, 0x1822)


def test_an_empty_file_a_list_and_an_empty_folder_are_errors(tmp_path: Path) -> None:
    assert problems_in(tmp_path) == [Problem(str(tmp_path), None, "no *.yaml profiles in this folder")]
    empty = write(tmp_path, "a.yaml", "# nothing\n")
    listed = write(tmp_path, "b.yaml", "- id: x\n")
    found = problems_in(tmp_path)
    assert [(p.file, p.line) for p in found] == [(str(empty), 1), (str(listed), 1)]
    assert problems_in(tmp_path / "absent") == [Problem(str(tmp_path / "absent"), None, "no such folder")]


def test_the_error_reads_one_problem_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID.replace("bonding: required", "bonding: always\nmulti_user: maybe"))
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:11: bonding: ") and lines[1].startswith(f"{path}:12: multi_user: ")


# -- the command ---------------------------------------------------------------------------------


def kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.cli", *args], cwd=REPO, check=False, capture_output=True, text=True, timeout=60
    )


def test_command_lists_the_shipped_profiles(shipped: list[DeviceProfile]) -> None:
    out = kiosk("ble", "profiles")  # the default folder, from the repository root
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [p.id for p in shipped]
    omron = next(line for line in lines if line.startswith("omron-evolv "))
    assert "blood_pressure" in omron and "BLE[Ss]mart_" in omron and "0x1810" in omron


def test_command_reports_problems_as_file_line_and_exits_2(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("  service_uuids", "  servce_uuids"))
    write(tmp_path, "b.yaml", "id: [\n")
    out = kiosk("ble", "profiles", "--dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stdout == "" and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 2
    assert all(re.match(rf"{re.escape(str(tmp_path))}/[ab]\.yaml:\d+: ", line) for line in lines), lines
    assert (
        lines[0] == f"{tmp_path}/a.yaml:7: unknown key 'servce_uuids' in match; allowed: service_uuids, name_patterns"
    )


# -- the documentation cannot drift from the model ---------------------------------------------


def documented_keys(section: str) -> set[str]:
    """The backquoted first cells of the table under `### {section}` in firmware_configs/README.md."""
    body = FORMAT_DOC.split(f"### {section}\n", 1)[1].split("\n### ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", body, re.MULTILINE)}


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= model_keys(field.annotation, f"{prefix}{name}.")
    return keys


def test_the_format_doc_names_exactly_the_model_fields() -> None:
    assert documented_keys("Fields") == model_keys(DeviceProfile)


def test_the_format_doc_names_exactly_the_quirks() -> None:
    assert documented_keys("Quirks") == {q.value for q in Quirk}
    assert set(QUIRK_DESCRIPTIONS) == set(Quirk)


@pytest.mark.parametrize("allowed", [Kind, Bonding, StoredRecords])
def test_the_format_doc_names_every_allowed_value(allowed: Any) -> None:
    for value in get_args(allowed):
        assert f"`{value}`" in FORMAT_DOC, f"{value!r} is not documented in firmware_configs/README.md"


def test_every_field_has_a_description() -> None:
    def fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
        found = [(f"{model.__name__}.{n}", f) for n, f in model.model_fields.items()]
        for _, field in list(found):
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found += fields(field.annotation)
        return found

    for name, field in fields(DeviceProfile):
        assert field.description, f"{name} has no description"
