"""The kiosk's call (aiortc, the shared camera, a tone for a microphone) against a real second WebRTC peer.

The far peer is aiortc too, standing in for the provider's browser (the browser itself is met in
tests/browser/test_consult.py): SDP, ICE and media are real; only the signaling channel is a function call.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from collections.abc import Coroutine
from pathlib import Path

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from device.consult.call import Call
from device.consult.tracks import CameraTrack, ToneTrack
from device.protocol.signaling import IceServer
from device.screen.station import Camera, CameraConfig
from tests.camera.test_checkin_card import PROFILE, card_video


class Provider:
    """The far end: answers the kiosk's offer, sends a tone (and the kiosk's own camera video back), counts."""

    def __init__(self, camera: Camera, ice_servers: list[IceServer] | None = None) -> None:
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers or []]
        policy = RTCIceTransportPolicy.RELAY if servers else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.video_frames = 0
        self.audio_frames = 0
        self.pc.addTrack(ToneTrack(frequency=660))
        self.pc.addTrack(CameraTrack(camera))
        self.pc.on("track", self._on_track)
        self._tasks: list[asyncio.Task[None]] = []

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    self.video_frames += 1
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            return

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)


def run(coro: Coroutine[object, object, None], timeout: float = 60) -> None:
    """asyncio.run in its own thread: Playwright's sync API (the browser tests) keeps a loop running in the
    main thread for the whole session, and asyncio.run refuses to start beside it."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(asyncio.wait_for(coro, timeout))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def test_video_and_audio_flow_both_ways_and_a_vanished_provider_is_noticed_within_the_limit(tmp_path: Path) -> None:
    camera = Camera(CameraConfig(PROFILE, card_video(tmp_path / "cam.avi", "P-1001", seconds=2.0, fps=15)))
    gone: list[tuple[str, float]] = []

    async def scenario() -> None:
        call = Call([], CameraTrack(camera), ToneTrack(), lambda reason: gone.append((reason, time.monotonic())),
                    gone_after_s=2.0)  # fmt: skip
        # Never aiortc's public default (Google's STUN server, used when the list is None rather than empty).
        assert call.pc._RTCPeerConnection__configuration.iceServers == []  # type: ignore[attr-defined]
        provider = Provider(camera)
        await call.answer(await provider.answer(await call.offer()))
        await until(lambda: call.stats.video_frames >= 10 and call.stats.audio_frames >= 50, 15, "media at the kiosk")
        await until(lambda: provider.video_frames >= 10 and provider.audio_frames >= 50, 15, "media at the provider")
        assert call.remote.jpeg.startswith(b"\xff\xd8")  # the provider's picture, ready for the kiosk screen
        assert camera.opened == 1 or (camera.opened >= 1 and camera.busy)  # one shared opening for both tracks
        # The provider's side vanishes without a word (a killed browser sends no BYE).
        vanished = time.monotonic()
        await provider.pc.close()
        await until(lambda: bool(gone), 10, "the kiosk to notice")
        reason, noticed = gone[0]
        assert reason in ("peer_gone", "failed")
        assert noticed - vanished < 5.0
        await call.close()

    run(scenario())


def test_a_relay_only_call_goes_through_the_turn_server_with_time_limited_credentials(tmp_path: Path) -> None:
    from tests.turn import turn_server

    camera = Camera(CameraConfig(PROFILE, card_video(tmp_path / "cam.avi", "P-1001", seconds=2.0, fps=15)))

    async def scenario(server: IceServer) -> None:
        call = Call([server], CameraTrack(camera), ToneTrack(), lambda _reason: None, relay_only=True)
        provider = Provider(camera, [server])
        offer = await call.offer()
        candidates = [line for line in offer.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" typ relay" in c for c in candidates)  # nothing but the relay
        await call.answer(await provider.answer(offer))
        await until(lambda: call.stats.video_frames >= 10 and call.stats.audio_frames >= 50, 20, "media at the kiosk")
        await until(lambda: provider.video_frames >= 10, 20, "media at the provider")
        await call.close()
        await provider.pc.close()

    with turn_server(tmp_path / "turn") as turn:
        run(scenario(turn.ice_server()))
        assert "allocation" in turn.log.read_text().lower()  # the TURN server carried it


def test_the_kiosk_encodes_h264_at_the_veryfast_preset() -> None:
    """aiortc fixes x264 at its default preset; the kiosk's encoder must really hand `veryfast` to x264."""
    import aiortc.rtcrtpsender
    import av
    import numpy as np
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from device.consult import h264

    h264.install()
    encoder = aiortc.rtcrtpsender.get_encoder(RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000))  # type: ignore[attr-defined]
    assert isinstance(encoder, h264.FastH264Encoder)
    frame = av.VideoFrame.from_ndarray(np.zeros((480, 640, 3), np.uint8), format="bgr24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    payloads, _ = encoder.encode(frame)
    stream = b"".join(payloads)
    # x264 writes the settings it encoded with into the stream (an SEI message): veryfast's, not medium's.
    assert b"x264" in stream
    assert b"subme=2" in stream and b" ref=1 " in stream  # medium would say subme=7 and ref=3
