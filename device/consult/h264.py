"""H.264 for the kiosk's calls at x264's `veryfast` preset instead of aiortc's fixed default (`medium`).

`kiosk bench consult` measured one 640x480 call on this machine at 51-55 % of a core with aiortc's H.264
encoder and about 33 % with `veryfast` (latency lower too); the kiosk is a Raspberry Pi. aiortc offers no
setting for it, so the kiosk's senders get this encoder instead (`install()`), which adds the preset to
the codec context aiortc creates, just before it is opened. A test checks that the preset really reaches
x264, so an aiortc release that changes its encoder fails loudly here rather than silently costing CPU.
"""

from __future__ import annotations

from typing import Any

import aiortc.rtcrtpsender
from aiortc.codecs import get_encoder
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

PRESET = "veryfast"


class FastH264Encoder(H264Encoder):
    """aiortc's encoder; its codec context gets the preset before its first frame opens it."""

    @property
    def codec(self) -> Any:
        context = self.__dict__.get("_codec")
        if context is not None and not context.is_open and context.options.get("preset") != PRESET:
            context.options = {**context.options, "preset": PRESET}
        return context

    @codec.setter
    def codec(self, context: Any) -> None:
        self.__dict__["_codec"] = context


def _kiosk_encoder(codec: RTCRtpCodecParameters) -> Encoder:
    if codec.mimeType.lower() == "video/h264":
        return FastH264Encoder()
    return get_encoder(codec)


def install() -> None:
    """Every RTP sender made from now on in this process encodes H.264 with `FastH264Encoder`."""
    aiortc.rtcrtpsender.get_encoder = _kiosk_encoder  # type: ignore[attr-defined]
