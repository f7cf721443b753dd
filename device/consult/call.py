"""One video call from the kiosk: aiortc with the shared camera and the microphone, the provider's media received.

The kiosk offers once the provider has joined (aiortc gathers every candidate before it answers
`createOffer`, so the offer carries them). ICE servers come from the hub: always an explicit list,
because aiortc falls back to Google's public STUN server when given none.

The provider's video is kept as the newest decoded frame (JPEG) for the kiosk screen; audio is
played through the kiosk's speaker where there is one, and counted either way. A call whose media
stops for `GONE_AFTER_S` is over: aiortc's own consent check would take about 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from device.consult import h264
from device.protocol.signaling import GONE_AFTER_S, IceServer

log = logging.getLogger(__name__)
h264.install()  # x264 at `veryfast` for the kiosk's H.264 (device/consult/h264.py says why)


@dataclass
class MediaStats:
    video_frames: int = 0
    audio_frames: int = 0
    first_video_at: float | None = None  # monotonic
    last_media_at: float | None = None


@dataclass
class RemoteVideo:
    """The provider's picture for the kiosk screen: the newest frame as JPEG, and a condition to wait on."""

    jpeg: bytes = b""
    serial: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class Call:
    def __init__(
        self,
        ice_servers: list[IceServer],
        video: MediaStreamTrack | None,
        audio: MediaStreamTrack | None,
        on_gone: Callable[[str], None],
        *,
        gone_after_s: float = GONE_AFTER_S,
        speaker: str | None = None,
        relay_only: bool = False,
        on_connected: Callable[[], None] | None = None,
        on_video_frame: Callable[[av.VideoFrame, float], None] | None = None,
    ) -> None:
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers]
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.stats = MediaStats()
        self.remote = RemoteVideo()
        self._on_gone = on_gone
        self._on_connected = on_connected
        self._on_video_frame = on_video_frame  # every decoded frame of the provider's, with its wall time
        self._gone_after_s = gone_after_s
        self._speaker = speaker
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        for track in (video, audio):
            if track is not None:
                self.pc.addTrack(track)
        self._local = [t for t in (video, audio) if t is not None]
        _prefer_vp8(self.pc)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._spawn(self._watchdog())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._spawn(self._receive_video(track))
        else:
            self._spawn(self._receive_audio(track))

    def _on_state(self) -> None:
        log.info("call: connection %s", self.pc.connectionState)
        if self.pc.connectionState == "connected" and self._on_connected is not None:
            self._on_connected()
        if self.pc.connectionState == "failed":
            self._gone("failed")

    async def _receive_video(self, track: MediaStreamTrack) -> None:
        import cv2  # noqa: PLC0415

        last_encoded = 0.0
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if self._on_video_frame is not None and isinstance(frame, av.VideoFrame):
                    self._on_video_frame(frame, time.time())
                self.stats.video_frames += 1
                self.stats.last_media_at = now
                if self.stats.first_video_at is None:
                    self.stats.first_video_at = now
                    log.info("call: first frame from the provider")
                if now - last_encoded < 1 / 15:  # the kiosk screen shows 15 frames/s at most
                    continue
                last_encoded = now
                image = frame.to_ndarray(format="bgr24")  # type: ignore[union-attr]
                ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
                if ok:
                    async with self.remote.changed:
                        self.remote.jpeg = jpeg.tobytes()
                        self.remote.serial += 1
                        self.remote.changed.notify_all()

    async def _receive_audio(self, track: MediaStreamTrack) -> None:
        recorder = None
        if self._speaker is not None:
            from aiortc.contrib.media import MediaRecorder  # noqa: PLC0415

            recorder = MediaRecorder(self._speaker, format="alsa")
            recorder.addTrack(track)
            await recorder.start()
            return  # the recorder reads the track; media liveness comes from the video
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.stats.audio_frames += 1
                self.stats.last_media_at = time.monotonic()

    async def _watchdog(self) -> None:
        """Media that stops for `gone_after_s` once it has flowed: the provider has vanished."""
        while not self._closed:
            await asyncio.sleep(0.25)
            last = self.stats.last_media_at
            if last is not None and time.monotonic() - last > self._gone_after_s:
                self._gone("peer_gone")
                return

    def _gone(self, reason: str) -> None:
        if not self._closed:
            self._on_gone(reason)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        log.info("call ended: %d video frames, %d audio frames received", self.stats.video_frames,
                 self.stats.audio_frames)  # fmt: skip
        for track in self._local:
            track.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()


def _prefer_vp8(pc: RTCPeerConnection) -> None:
    """VP8 first, H.264 when the browser will take nothing else. Both hold a 640x480 call under half a core here
    (VP8 about 30 %, H.264 at `veryfast` about 26 %; aiortc's own H.264 took 51-55 %): `kiosk bench consult`."""
    order = {"video/vp8": 0, "video/h264": 1}
    codecs = sorted(RTCRtpSender.getCapabilities("video").codecs, key=lambda c: order.get(c.mimeType.lower(), 2))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)
