"""The kiosk's configuration file (`/etc/telehealth/kiosk.yaml`), checked before the service starts.

`kiosk config check FILE` and `kiosk serve --config FILE` read it the same way: every problem is
reported as `file:line: message`, the file's own and those of the files it names (the Bluetooth
profiles, the camera's hardware profile), all at once. The unit runs the check as ExecStartPre=,
so a mistake keeps the service from starting with a message that says where to look. Flags given
on the command line win over the file. Relative paths are relative to the file's own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device.ble.profiles import load_profiles
from device.camera.profile import load_kiosk_profile
from device.identity import IdentityError, load_identity
from device.protocol.endpoints import describe_brokers
from device.yaml_config import ConfigError, Located, Problem, load_located


class KioskFile(BaseModel):
    """What a kiosk's operator may set; anything else in the file is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(default=8090, ge=0, le=65535, description="The screen's port on 127.0.0.1.")
    ble: Literal["bleak", "virtual", "off"] = "bleak"
    profiles: Path = Path("/opt/telehealth/firmware_configs/ble")
    camera_profile: Path | None = None
    camera_seconds: float = Field(default=30.0, ge=10, le=120)
    idle_timeout: float = Field(default=120.0, ge=15, le=3600)
    idle_warning: float = Field(default=30.0, ge=5, le=600)
    clinic_name: str = Field(default="", max_length=120)
    hub_ca: Path | None = None
    microphone: str = Field(default="tone", pattern=r"^(tone|alsa:\S+)$")
    speaker: str | None = None
    consult_wait_limit: float = Field(default=900.0, ge=30, le=7200)
    heartbeat: float = Field(default=30.0, ge=5, le=3600)

    @field_validator("ble", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML 1.1 reads a bare `off` as false; `ble: off` means the word."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _warning_inside_timeout(self) -> KioskFile:
        if self.idle_warning >= self.idle_timeout:
            raise ValueError(f"idle_warning ({self.idle_warning:g} s) must be shorter than idle_timeout")
        return self


@dataclass(frozen=True)
class Checked:
    config: KioskFile
    summary: str

    def as_defaults(self) -> dict[str, Any]:
        """Argument defaults for `kiosk serve`: each key is the option's argparse dest."""
        return {**self.config.model_dump(), "no_camera": self.config.camera_profile is None}


def _resolve(path: Path | None, base: Path) -> Path | None:
    return None if path is None else (path if path.is_absolute() else base / path)


def check(path: Path, *, data_dir: Path | None = None) -> Checked:
    """The file and everything it names, or `ConfigError` listing every problem with its file and line."""
    located: Located[KioskFile] = load_located(path, KioskFile, document="a kiosk configuration")
    base = path.parent
    config = located.value.model_copy(
        update={
            "profiles": _resolve(located.value.profiles, base),
            "camera_profile": _resolve(located.value.camera_profile, base),
            "hub_ca": _resolve(located.value.hub_ca, base),
        }
    )
    problems: list[Problem] = []

    def at(key: str, message: str) -> None:
        problems.append(Problem(str(path), located.line((key,)), message))

    profiles = []
    if config.ble != "off":
        if not config.profiles.is_dir():
            at("profiles", f"no such folder {config.profiles}")
        else:
            try:
                profiles = load_profiles(config.profiles)
            except ConfigError as exc:
                problems.extend(exc.problems)
    camera = "no camera"
    if config.camera_profile is not None:
        if not config.camera_profile.is_file():
            at("camera_profile", f"no such file {config.camera_profile}")
        else:
            try:
                camera = f"camera {load_kiosk_profile(config.camera_profile).camera.kind}"
            except ConfigError as exc:
                problems.extend(exc.problems)
    if config.hub_ca is not None and not config.hub_ca.is_file():
        at("hub_ca", f"no such file {config.hub_ca}")
    identity = "identity not checked (no --data)"
    if data_dir is not None:
        try:
            found = load_identity(data_dir)
        except IdentityError as exc:
            problems.append(Problem(str(data_dir), None, str(exc)))
        else:
            if found is None:
                problems.append(Problem(str(data_dir), None, "not provisioned: run `kiosk provision BUNDLE`"))
            else:
                identity = f"kiosk {found.kiosk_id} -> {describe_brokers(found.brokers)}"
    if problems:
        raise ConfigError(problems)
    summary = (
        f"{path}: ok; screen on 127.0.0.1:{config.port}, Bluetooth {config.ble} "
        f"({len(profiles)} device profile(s)), {camera}, {identity}"
    )
    return Checked(config, summary)
