"""Kiosk hardware profiles: which camera (and, later, other hardware) a kiosk model has, one YAML file per model.

Kiosks are built from a few hardware combinations (a Raspberry Pi 5 with the Pi camera, a small PC
with a USB webcam, a laptop replaying videos for demos). What differs between them is data, kept
in `firmware_configs/kiosk/*.yaml` so that fitting a different camera is a reviewed file, not a
code change; `device.camera.source.open_source` turns the camera part into a frame source.

The files are edited by hand, so problems are reported with file and line, exactly as for the
Bluetooth device profiles: both are read by `device.yaml_config`, so they word problems alike. The
format is documented in `firmware_configs/README.md`, and a test checks that the documentation
names every field of the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from device.yaml_config import ConfigError, Problem, load_model

CameraKind = Literal["opencv", "picamera2", "file"]
PixelFormat = Literal["YUYV", "UYVY", "NV12", "MJPG", "RGB888", "YUV420"]

# The formats each kind of camera can be asked for (files decode to BGR whatever they hold).
FORMATS_OF_KIND: dict[CameraKind, frozenset[str]] = {
    "opencv": frozenset({"YUYV", "UYVY", "NV12", "MJPG"}),
    "picamera2": frozenset({"RGB888", "YUV420"}),
    "file": frozenset(),
}


class CameraProfile(BaseModel):
    """The camera used for contact-free vitals and case photos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: CameraKind = Field(
        description=(
            "How frames are read: opencv (USB/UVC or other V4L2 camera through OpenCV), picamera2 (Raspberry Pi "
            "camera through libcamera), file (a video file, for demos and tests)."
        )
    )
    device: int | str | None = Field(
        default=None,
        validate_default=True,  # an opencv camera must not silently go without one
        description=(
            "opencv: V4L2 index (0 for /dev/video0) or absolute device path (required); picamera2: camera "
            "number (default 0); file: path of the video (optional, usually given when the source is opened)."
        ),
    )
    width: int = Field(default=640, ge=16, le=7680, description="Frame width in pixels asked of the camera.")
    height: int = Field(default=480, ge=16, le=4320, description="Frame height in pixels asked of the camera.")
    fps: float = Field(default=30.0, gt=0, le=240, description="Frame rate asked of the camera, frames per second.")
    pixel_format: tuple[PixelFormat, ...] = Field(
        default=(),
        description=(
            "Pixel formats in order of preference; uncompressed first, because compression (MJPG) erases the "
            "small colour changes of the pulse. Empty: the source's default (opencv YUYV then MJPG; picamera2 "
            "RGB888)."
        ),
    )
    lock_exposure: bool = Field(
        default=True,
        description=(
            "Lock automatic exposure (after it settles on the scene) while measuring: an exposure loop "
            "adjusting to a face moving adds slow brightness drift in the band of breathing and pulse."
        ),
    )
    lock_white_balance: bool = Field(
        default=True,
        description=(
            "Lock automatic white balance (after it settles) while measuring: its slow colour corrections "
            "are exactly the kind of chrominance change the pulse is measured from."
        ),
    )

    @field_validator("device", mode="before")
    @classmethod
    def _device_is_not_a_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"expected a device number or path, got {str(value).lower()}")
        return value

    @field_validator("device")
    @classmethod
    def _device_fits_kind(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        kind = info.data.get("kind")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a device number is 0 or more, got {value}")
        if kind == "opencv":
            if value is None:
                raise ValueError("an opencv camera needs a device: its index (0 for /dev/video0) or its /dev path")
            if isinstance(value, str) and not value.startswith("/"):
                raise ValueError(f"a device path is absolute (/dev/video0, /dev/v4l/by-id/...), got {value!r}")
        elif kind == "picamera2" and isinstance(value, str):
            raise ValueError(f"a Raspberry Pi camera is chosen by number (0, 1), got {value!r}")
        elif kind == "file" and isinstance(value, int):
            raise ValueError(f"a file camera's device is the path of a video, got the number {value}")
        return value

    @field_validator("pixel_format")
    @classmethod
    def _formats_fit_kind(cls, value: tuple[PixelFormat, ...], info: ValidationInfo) -> tuple[PixelFormat, ...]:
        kind: CameraKind | None = info.data.get("kind")
        repeated = sorted({f for f in value if value.count(f) > 1})
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        if kind is None:
            return value
        allowed = FORMATS_OF_KIND[kind]
        wrong = [f for f in value if f not in allowed]
        if wrong and not allowed:
            raise ValueError("a file camera takes no pixel_format: the video decodes to BGR whatever it holds")
        if wrong:
            raise ValueError(f"{', '.join(wrong)} not available to kind {kind} (use {', '.join(sorted(allowed))})")
        return value


class KioskHardwareProfile(BaseModel):
    """One kiosk hardware model: its camera now; other hardware (screen, radios) as it gets configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        max_length=64,
        description="Unique slug (lowercase letters, digits, hyphens); by convention the file name without .yaml.",
    )
    name: str = Field(min_length=1, max_length=120, description="Human-readable name shown to staff.")
    camera: CameraProfile = Field(description="The camera (see camera.*).")
    bluetooth_adapter: str = Field(
        default="hci0",
        pattern=r"^hci[0-9]+$",
        description="BlueZ adapter the health devices are reached through (hciconfig / bluetoothctl list).",
    )
    touchscreen: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the touchscreen as the input subsystem reports it; null for a kiosk without one.",
    )
    notes: str = Field(default="", description="Free text: what was verified on this hardware and what is not.")


# -- loading ---------------------------------------------------------------------------------------


# The name callers catch; the shared loader's class, as the Bluetooth profiles' `ProfileError` is.
ProfileError = ConfigError


def load_kiosk_profile(path: Path | str) -> KioskHardwareProfile:
    """The kiosk hardware profile in `path`; raises `ProfileError` with every problem as file:line: message."""
    return load_model(Path(path), KioskHardwareProfile, document="a profile")


__all__ = [
    "FORMATS_OF_KIND",
    "CameraKind",
    "CameraProfile",
    "KioskHardwareProfile",
    "PixelFormat",
    "Problem",
    "ProfileError",
    "load_kiosk_profile",
]
