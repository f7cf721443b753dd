"""The guided vitals: which device comes next, what it measures, and how to use it.

Pure data: the screen walks a patient through these in order (any can be skipped), and a
reading that arrives is shown on the step of the device that measured it (`step_of`): a pulse is
the cuff's or the oximeter's or the camera's, never shown on another device's step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from device.screen.i18n import _


@dataclass(frozen=True)
class Step:
    kind: str
    title: str
    picture: str  # static/<picture>.svg
    instructions: tuple[str, ...]
    codes: tuple[str, ...]  # LOINC codes this device reports, in the order they are shown


STEPS: tuple[Step, ...] = (
    Step(
        "blood_pressure",
        _("Blood pressure"),
        "cuff",
        (
            _("Sit with your back supported and both feet flat on the floor."),
            _("Put the cuff on your bare upper arm, at the level of your heart."),
            _("Press the Start button on the cuff and keep still and quiet until it is done."),
        ),
        ("8480-6", "8462-4", "8867-4"),
    ),
    Step(
        "pulse_oximeter",
        _("Oxygen level"),
        "oximeter",
        (
            _("Take off any nail polish on that finger if you can."),
            _("Clip the sensor on a fingertip, nail up, and rest your hand."),
            _("Keep still until the numbers stop changing."),
        ),
        ("59408-5", "8867-4"),
    ),
    Step(
        "thermometer",
        _("Temperature"),
        "thermometer",
        (
            _("Press the button on the thermometer."),
            _("Hold it as the picture shows until it beeps."),
        ),
        ("8310-5",),
    ),
    Step(
        "camera",
        _("Heart and breathing rate by camera"),
        "camera",
        (
            _("Sit facing the screen, about an arm's length away, in good light."),
            _("Keep your face in view and stay still until the bar is full. Breathe normally."),
        ),
        ("8867-4", "9279-1"),
    ),
)

BY_KIND = {s.kind: s for s in STEPS}


def step_of(device: Mapping[str, Any], kind: str | None) -> str | None:
    """The step a reading belongs to: the step of the device that measured it, never another device's.

    The kiosk camera's readings (`device.type` "camera") are the camera step's. A Bluetooth device's are the
    step of its kind (`kind`: the kind of the profile it matched, by the GATT service it advertises: 0x1810
    a cuff, 0x1822 an oximeter, 0x1809 a thermometer), whatever codes it reports: the pulse an oximeter
    sends is the oximeter's, not the cuff's. A device of no step's kind, or of an unknown kind, has none.
    """
    if device.get("type") == "camera":
        return "camera"
    return kind if kind is not None and kind != "camera" and kind in BY_KIND else None


CODE_NAMES = {
    "8480-6": _("Systolic"),
    "8462-4": _("Diastolic"),
    "8478-0": _("Mean pressure"),
    "8867-4": _("Pulse"),
    "59408-5": _("Oxygen"),
    "8310-5": _("Temperature"),
    "9279-1": _("Breathing rate"),
    "29463-7": _("Weight"),
    "41653-7": _("Blood sugar"),
}

UNITS = {"mm[Hg]": "mmHg", "/min": "/min", "%": "%", "Cel": "°C", "[degF]": "°F", "kg": "kg", "mg/dL": "mg/dL"}

# Why the camera gave no value (device/camera/rppg.py reasons), as advice the patient can act on.
CAMERA_ADVICE = {
    "face not found": _("We could not see your face. Sit facing the screen with your whole face in view."),
    "too much movement": _("You moved too much. Rest your arms, lean back and keep your head still."),
    "too dark": _("It is too dark. Turn on a light or face a window."),
    "signal too weak": _("The signal was too weak. Move a little closer and keep still."),
    "light flicker": _("A flickering light got in the way. Turn it off, or use daylight, and try again."),
    "measurement too short": _("The measurement was cut short. Please try again."),
}

# What a case photo needs (device/camera/photos.py problem codes), as retake guidance.
PHOTO_ADVICE = {
    "blurry": _("The photo is blurry. Hold still, or rest your arm on the table, and try again."),
    "too_dark": _("The photo is too dark. Move into better light."),
    "too_bright": _("The photo is too bright. Move out of direct light."),
    "face_in_frame": _("Your face is in the photo. Show only the skin you want the clinic to see."),
    "too_small": _("The area is too small in the photo. Bring it closer to the camera."),
}
