"""The camera's error, importable without OpenCV: the kiosk screen catches it but loads OpenCV only when used."""

from __future__ import annotations


class CameraError(RuntimeError):
    """A frame source cannot be opened or stopped delivering; the message names the file or device."""
