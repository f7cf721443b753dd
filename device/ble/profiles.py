"""Bluetooth device profiles: one validated YAML file per device model, in `firmware_configs/ble/`.

What a collector needs to know about a model (how to recognise it in a scan, what to subscribe
to, whether it must be bonded, how it hands over stored readings, whether its clock can be
trusted) differs per model and is learnt one device at a time, often from other people's bug
reports. It is kept as data so that adding a cuff is a reviewed file with its sources, not a
code change, and so that the collector's logic stays the same for every device.

The files are edited by hand, so every problem is reported with the file *and the line* it is
on, all problems of all files at once (one `ProfileError`). Reading YAML that way is shared with
the kiosk's other configuration files (`device.yaml_config`); what is particular to these files
stays here: integers keep their text so that a UUID written `1810` means 0x1810, and an id may be
used by one file only. The format is documented for the people who edit it in
`firmware_configs/README.md`; a test checks that it names every field.

Choosing a profile for an advertisement (`match`): a profile whose name patterns matched is more
specific than one that matched on advertised services alone, so a model-specific profile
(name pattern + service) always beats the generic profile of its service, and a name-only profile
beats a service-only one. Remaining ties go to the alphabetically first id, so the choice never
depends on file order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from device.ble.decoders import REGISTRY, uuid16
from device.ble.errors import DecodeError
from device.ble.transport import Advertisement
from device.protocol.envelope import DeviceKind
from device.yaml_config import ConfigError, Problem, load_located, load_model

Kind = DeviceKind
Bonding = Literal["required", "optional", "none"]
StoredRecords = Literal["none", "on_connect", "racp"]

# The Bluetooth SIG service of each kind: every kind ships a generic profile matching it.
KIND_SERVICES: dict[Kind, int] = {
    "blood_pressure": 0x1810,
    "pulse_oximeter": 0x1822,
    "thermometer": 0x1809,
    "weight_scale": 0x181D,
    "body_composition": 0x181B,
    "glucose": 0x1808,
    "cgm": 0x181F,
    "heart_rate": 0x180D,
}


class Quirk(StrEnum):
    """Known misbehaviours; each is documented in firmware_configs/README.md (a test checks)."""

    ADVERTISES_BRIEFLY_AFTER_MEASUREMENT = "advertises_briefly_after_measurement"
    STALE_GATT_CACHE_AFTER_FIRMWARE_UPDATE = "stale_gatt_cache_after_firmware_update"
    TIME_STAMP_IS_LOCAL_TIME = "time_stamp_is_local_time"
    TIME_STAMP_IS_UTC = "time_stamp_is_utc"
    INDICATES_BEFORE_BOND_FAILS_SILENTLY = "indicates_before_bond_fails_silently"
    SENDS_DUPLICATES_ON_RECONNECT = "sends_duplicates_on_reconnect"
    CLOCK_SET_THROUGH_DATE_TIME = "clock_set_through_date_time"
    REQUIRES_PASSKEY_ENTRY = "requires_passkey_entry"


QUIRK_DESCRIPTIONS: dict[Quirk, str] = {
    Quirk.ADVERTISES_BRIEFLY_AFTER_MEASUREMENT: (
        "The device keeps its radio off and advertises only for a short window after a measurement "
        "(or a button press): the kiosk must scan continuously and connect at once."
    ),
    Quirk.STALE_GATT_CACHE_AFTER_FIRMWARE_UPDATE: (
        "After a firmware update the device's attribute table changes without a Service Changed "
        "indication: the kiosk must drop its cached GATT database for the device and discover again."
    ),
    Quirk.TIME_STAMP_IS_LOCAL_TIME: (
        "Time stamps and the device clock are local wall-clock time of the zone it was set in (what the "
        "collector assumes unless told otherwise); recorded so the assumption is known to hold."
    ),
    Quirk.TIME_STAMP_IS_UTC: "Time stamps and the device clock are UTC, not local time.",
    Quirk.INDICATES_BEFORE_BOND_FAILS_SILENTLY: (
        "Enabling indications before bonding is accepted but nothing is ever indicated (no error to react "
        "to): bond first. Use with `bonding: required`."
    ),
    Quirk.SENDS_DUPLICATES_ON_RECONNECT: (
        "Stored readings already delivered are sent again on the next connection: the collector's "
        "de-duplication must be on (it always is; the quirk records why it matters here)."
    ),
    Quirk.CLOCK_SET_THROUGH_DATE_TIME: (
        "The device has no Current Time Service; its clock is set by writing Date Time (0x2A08) in its "
        "measurement service. The collector cannot read that clock, so its stamps are used uncorrected."
    ),
    Quirk.REQUIRES_PASSKEY_ENTRY: (
        "Bonding needs the passkey the device displays (not Just Works): the kiosk must offer a way to "
        "enter it, or the device must be bonded beforehand."
    ),
}


class YamlInt(int):
    """An integer read from YAML that remembers its text: `1810` written for a UUID means 0x1810, not 1810."""

    source: str

    def __new__(cls, value: int, source: str) -> YamlInt:
        self = super().__new__(cls, value)
        self.source = source
        return self


def _sig_uuid(value: object) -> int:
    """A 16-bit Bluetooth SIG UUID from '1810', '0x1810', the full base-UUID form, or an int."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a UUID")
    if isinstance(value, YamlInt):
        value = value.source
    if isinstance(value, int):
        if 0 <= value <= 0xFFFF:
            return value
        raise ValueError(f"{value:#x} is not a 16-bit UUID")
    if not isinstance(value, str):
        raise ValueError(f"expected a UUID such as '0x1810', got a {type(value).__name__}")
    try:
        return uuid16(value)
    except DecodeError:
        raise ValueError(
            f"{value!r} is not a 16-bit Bluetooth SIG UUID: write 4 hex digits ('1810', '0x1810') or the full "
            "SIG form ('00001810-0000-1000-8000-00805f9b34fb'); vendor 128-bit UUIDs cannot be matched"
        ) from None


def _characteristic(value: object) -> int:
    number = _sig_uuid(value)
    if number not in REGISTRY:
        decoded = ", ".join(f"{uuid:04x}" for uuid in sorted(REGISTRY))
        raise ValueError(f"no decoder for characteristic {number:#06x} (decoded: {decoded})")
    return number


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a name pattern is a non-empty regular expression in quotes, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


ServiceUuid = Annotated[int, BeforeValidator(_sig_uuid)]
CharacteristicUuid = Annotated[int, BeforeValidator(_characteristic)]
NamePattern = Annotated[str, BeforeValidator(_pattern)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchRule(_Section):
    """How to recognise the device in a scan; every criterion given must hold."""

    service_uuids: tuple[ServiceUuid, ...] = Field(
        default=(),
        description=(
            "16-bit SIG service UUIDs ('1810', '0x1810' or the full SIG form); the advertisement must list at "
            "least one of them. Empty: services are not looked at."
        ),
    )
    name_patterns: tuple[NamePattern, ...] = Field(
        default=(),
        description=(
            "Regular expressions for the advertised local name, matched against the whole name and case "
            "sensitive; at least one must match. Empty: the name is not looked at."
        ),
    )

    @model_validator(mode="after")
    def _matches_something(self) -> MatchRule:
        if not self.service_uuids and not self.name_patterns:
            raise ValueError("give service_uuids, name_patterns or both: a profile that matches nothing is never used")
        return self

    def accepts(self, advertisement: Advertisement) -> bool:
        """Every criterion given holds. Whole-name matching, so a pattern cannot accept a longer name by accident."""
        if self.service_uuids and not advertisement.service_uuids.intersection(self.service_uuids):
            return False
        if self.name_patterns:
            name = advertisement.name
            return name is not None and any(re.fullmatch(p, name) for p in self.name_patterns)
        return True

    def describe(self) -> str:
        """One line for people checking which devices a profile will pick up (`kiosk ble profiles`)."""
        parts = []
        if self.name_patterns:
            parts.append("name " + " or ".join(f"'{p}'" for p in self.name_patterns))
        if self.service_uuids:
            parts.append("service " + " or ".join(f"0x{u:04X}" for u in self.service_uuids))
        return " and ".join(parts)


class ClockPolicy(_Section):
    """What to do with the device's clock."""

    current_time_service: bool = Field(
        default=True,
        description=(
            "Set the device clock to the kiosk's through Current Time (0x2A2B) when the device has it, so "
            "later readings need no correction. false for devices whose clock must not be touched."
        ),
    )
    trust_device_time: bool = Field(
        default=True,
        description=(
            "Use the device's own time stamps (corrected by the offset read at connect). false: use the time "
            "the kiosk received each reading, for devices whose clock is known to be unusable."
        ),
    )
    max_drift_s: float = Field(
        default=120.0,
        ge=0,
        le=7 * 24 * 3600,
        description=(
            "Seconds the device clock may be off the kiosk's before readings corrected for it carry the "
            "device_clock_corrected flag."
        ),
    )


class DeviceProfile(_Section):
    """One device model (or, for generic profiles, every device of a standard service)."""

    id: str = Field(
        pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        max_length=64,
        description="Unique slug (lowercase letters, digits, hyphens); by convention the file name without .yaml.",
    )
    name: str = Field(min_length=1, max_length=120, description="Human-readable name shown to staff.")
    manufacturer: str = Field(min_length=1, max_length=120, description="Maker, or 'any' for generic profiles.")
    models: tuple[str, ...] = Field(
        default=(),
        description="Model numbers this profile covers (label or Device Information 0x2A24); empty for generic.",
    )
    kind: Kind = Field(description="What the device measures; decides the screens and the generic fallback.")
    match: MatchRule = Field(description="How to recognise the device in a scan (see match.*).")
    measurements: tuple[CharacteristicUuid, ...] = Field(
        min_length=1,
        description="Characteristics to subscribe to for final readings; each must have a decoder.",
    )
    intermediate: tuple[CharacteristicUuid, ...] = Field(
        default=(),
        description="Characteristics with in-progress values (cuff pressure, a temperature settling): never stored.",
    )
    bonding: Bonding = Field(
        default="optional",
        description="required: bond before anything else; optional: bond only when refused; none: never bond.",
    )
    stored_records: StoredRecords = Field(
        default="none",
        description=(
            "How readings stored on the device arrive: none; on_connect (sent by the device right after "
            "subscribing); racp (downloaded through the Record Access Control Point)."
        ),
    )
    clock: ClockPolicy = Field(default_factory=ClockPolicy, description="Clock policy (see clock.*).")
    multi_user: bool = Field(
        default=False,
        description=(
            "The device keeps several users apart and reports a user index; readings go to the patient "
            "mapped to that user slot, never to whoever is checked in."
        ),
    )
    quirks: tuple[Quirk, ...] = Field(default=(), description="Known misbehaviours, from the fixed list of quirks.")
    notes: str = Field(
        default="",
        description="Free text: what was verified, with which firmware, and what is uncertain.",
    )

    @field_validator("measurements", "intermediate", "quirks")
    @classmethod
    def _no_repeats(cls, values: tuple[Any, ...]) -> tuple[Any, ...]:
        repeated = sorted({f"{v:#06x}" if isinstance(v, int) else str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        return values

    @field_validator("intermediate")
    @classmethod
    def _intermediate_is_not_final(cls, values: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        both = set(values) & set(info.data.get("measurements", ()))
        if both:
            raise ValueError(f"{', '.join(f'{u:#06x}' for u in sorted(both))} also listed in measurements")
        return values

    @field_validator("quirks")
    @classmethod
    def _one_time_zone(cls, values: tuple[Quirk, ...]) -> tuple[Quirk, ...]:
        if Quirk.TIME_STAMP_IS_LOCAL_TIME in values and Quirk.TIME_STAMP_IS_UTC in values:
            raise ValueError("time_stamp_is_local_time and time_stamp_is_utc contradict each other")
        return values

    @property
    def specificity(self) -> tuple[bool, bool]:
        """(matches on name, matches on services): higher wins in `match`."""
        return bool(self.match.name_patterns), bool(self.match.service_uuids)

    @property
    def device_clock_is_utc(self) -> bool:
        """The zone to read the device's stamps in: local time unless the profile says UTC."""
        return Quirk.TIME_STAMP_IS_UTC in self.quirks


def match(profiles: Iterable[DeviceProfile], advertisement: Advertisement) -> DeviceProfile | None:
    """The profile for an advertisement, or None when no profile accepts it.

    Among the profiles that accept it: name pattern + service beats name only, which beats service
    only (a model's profile wins over the generic one of its service); then the alphabetically first id.
    """
    candidates = [p for p in profiles if p.match.accepts(advertisement)]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (not p.specificity[0], not p.specificity[1], p.id))


# -- loading ---------------------------------------------------------------------------------

# The name callers catch. An alias, not a subclass: `load_model` raises ConfigError itself, and the kiosk
# profiles' ProfileError is the same class, as it was when they imported this one.
ProfileError = ConfigError


def _keep_int_text(value: object, text: str) -> object:
    """YAML ints become `YamlInt`, so that `_sig_uuid` can read `1810` as the hex UUID it means."""
    if isinstance(value, int) and not isinstance(value, bool):
        return YamlInt(value, text)
    return value


def _load_file(path: Path, problems: list[Problem]) -> tuple[DeviceProfile, int] | None:
    """The profile in `path` and the line of its id, or None with the file's problems appended."""
    try:
        loaded = load_located(path, DeviceProfile, document="a profile", scalar=_keep_int_text)
    except ConfigError as exc:
        problems += exc.problems
        return None
    return loaded.value, loaded.line(("id",))


def load_profile(path: Path | str) -> DeviceProfile:
    """One profile file; raises `ProfileError` with every problem in it."""
    return load_model(Path(path), DeviceProfile, document="a profile", scalar=_keep_int_text)


def load_profiles(folder: Path | str) -> list[DeviceProfile]:
    """Every `*.yaml` profile under `folder` (subfolders included), sorted by id.

    Raises one `ProfileError` listing every problem in every file, and ids used by more than one file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ProfileError([Problem(str(root), None, "no such folder")])
    problems = [
        Problem(str(stray), None, "profiles must end in .yaml; this file would be ignored")
        for stray in sorted(root.rglob("*.yml"))
    ]
    files = sorted(root.rglob("*.yaml"))
    if not files and not problems:
        raise ProfileError([Problem(str(root), None, "no *.yaml profiles in this folder")])
    first: dict[str, tuple[str, int]] = {}
    profiles: list[DeviceProfile] = []
    for path in files:
        loaded = _load_file(path, problems)
        if loaded is None:
            continue
        profile, id_line = loaded
        if profile.id in first:
            other_file, other_line = first[profile.id]
            problems.append(
                Problem(str(path), id_line, f"duplicate profile id {profile.id!r} (also in {other_file}:{other_line})")
            )
            continue
        first[profile.id] = (str(path), id_line)
        profiles.append(profile)
    if problems:
        raise ProfileError(problems)
    return sorted(profiles, key=lambda p: p.id)


__all__ = [
    "KIND_SERVICES",
    "QUIRK_DESCRIPTIONS",
    "Bonding",
    "ClockPolicy",
    "DeviceProfile",
    "Kind",
    "MatchRule",
    "Problem",
    "ProfileError",
    "Quirk",
    "StoredRecords",
    "load_profile",
    "load_profiles",
    "match",
]
