"""The kiosk's hardware as the screen uses it: the Bluetooth collector, the camera, and (demo) virtual devices.

The Bluetooth collector runs for as long as the screen does, on the server's event loop; the
patient checked in is its attribution (`CheckIn`), so a reading is sent under their code only
when it was taken during their visit. The camera is opened for one job at a time (a photo, a
measurement, a card scan) in a worker thread, never twice at once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from device.ble.collector import CheckIn, Collector, DevicePlan
from device.ble.ledger import Ledger
from device.ble.profiles import DeviceProfile, load_profiles
from device.ble.profiles import match as match_profile
from device.camera.errors import CameraError

if TYPE_CHECKING:
    from device.ble.transport import Advertisement, Radio
    from device.ble.virtual import Bench
    from device.camera.photos import PhotoCheck, PreparedPhoto
    from device.camera.preview import Preview
    from device.camera.source import Frame
    from device.camera.vitals import CameraVitals

log = logging.getLogger(__name__)

INTERMEDIATE_CUFF_PRESSURE, PLX_SPOT_CHECK, TEMPERATURE_MEASUREMENT = 0x2A36, 0x2A5E, 0x2A1C


class Bluetooth:
    """The collector with the screen's hooks: readings to `on_reading`, in-progress values to `on_progress`."""

    def __init__(  # noqa: PLR0917 - the collector's parts, each named at the one call site
        self,
        radio: Radio,
        profiles_dir: Path,
        ledger_path: Path,
        checkin: CheckIn,
        sink: Callable[[dict[str, Any]], object],
        on_progress: Callable[[str, int, Any], None],
        *,
        plan_for: Callable[[Any], DevicePlan | None] | None = None,
        scan_seconds: float = 2.0,
        tz: tzinfo | None = None,
    ) -> None:
        self.ledger = Ledger(ledger_path)
        self._kinds: dict[str, str] = {}  # address -> the kind of the profile it matched
        self.collector = Collector(
            radio,
            plan_for or self._plans(load_profiles(profiles_dir)),
            self.ledger,
            sink,
            checkin,
            on_progress=on_progress,
            tz=tz,
            scan_seconds=scan_seconds,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _plans(self, profiles: list[DeviceProfile]) -> Callable[[Advertisement], DevicePlan | None]:
        """The collector's `plan_for` (the best-matching profile, as a plan), remembering each device's kind."""
        plans = {p.id: DevicePlan.from_profile(p) for p in profiles}

        def plan_for(ad: Advertisement) -> DevicePlan | None:
            profile = match_profile(profiles, ad)
            if profile is None:
                return None
            self._kinds[ad.address] = profile.kind
            return plans[profile.id]

        return plan_for

    def kind_of(self, device_id: str) -> str | None:
        """What the device that sent a reading is ("blood_pressure", "pulse_oximeter" ...): the kind of the profile
        it matched by the GATT service (and name) it advertises. None for a device not served here.

        The screen shows a reading on the step of this kind (`steps.step_of`): several devices report a pulse,
        and only the device tells whose it is. Readings carry the device's id (`_identify`, remembered in the
        ledger by address before any reading is routed); the few addresses heard are looked up, newest first.
        """
        for address, kind in reversed(self._kinds.items()):
            info = self.ledger.device_info(address)
            if info is not None and info.get("id") == device_id:
                return kind
        return None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.collector.run(self._stop))

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        self.ledger.close()


class VirtualDevices:
    """A cuff, an oximeter and a thermometer on bumble's virtual link: real GATT, no radio (demo and tests).

    `press(kind)` is the patient pressing the device's own Start button.
    """

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self._rng = random.Random()

    @classmethod
    async def start(cls) -> VirtualDevices:
        from device.ble.virtual import (  # noqa: PLC0415 - bumble loads only for virtual devices
            Bench,
            BloodPressureCuff,
            DeviceInfo,
            PulseOximeter,
            Thermometer,
        )

        bench = Bench()
        await bench.radio.power_on()
        # Each its own model and serial: the collector knows a device by its Device Information.
        await bench.add(BloodPressureCuff(bench.link, info=DeviceInfo(model="VBP-1", serial="CUFF-0001")))
        await bench.add(PulseOximeter(bench.link, info=DeviceInfo(model="VOX-1", serial="OXI-0001")))
        await bench.add(Thermometer(bench.link, info=DeviceInfo(model="VTH-1", serial="THERM-0001")))
        return cls(bench)

    @property
    def radio(self) -> Radio:
        return self.bench.radio

    def _device(self, name: str) -> Any:
        return next(p for p in self.bench.peripherals if type(p).__name__ == name)

    async def _linked(self, device: Any, uuid: int, timeout: float = 15.0) -> None:
        """Like a patient who waits for the device's Bluetooth symbol: start once the kiosk has subscribed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not device.subscribers(uuid, 3) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    async def press(self, kind: str, values: dict[str, float] | None = None) -> None:
        v = values or {}
        rng = self._rng
        if kind == "blood_pressure":
            cuff = self._device("BloodPressureCuff")
            await self._linked(cuff, INTERMEDIATE_CUFF_PRESSURE)
            for pressure in range(20, 181, 20):
                await cuff.inflate_to(float(pressure))
                await asyncio.sleep(0.25)
            for pressure in range(160, 59, -25):
                await cuff.inflate_to(float(pressure))
                await asyncio.sleep(0.25)
            sys_ = v.get("systolic", rng.randint(108, 138))
            dia = v.get("diastolic", rng.randint(68, 86))
            await cuff.take_measurement(sys_, dia, round((sys_ + 2 * dia) / 3), v.get("pulse", rng.randint(58, 84)))
        elif kind == "pulse_oximeter":
            await self._linked(self._device("PulseOximeter"), PLX_SPOT_CHECK)
            await self._device("PulseOximeter").spot_check(v.get("spo2", rng.randint(95, 99)), v.get("pulse", 72))
        elif kind == "thermometer":
            await self._linked(self._device("Thermometer"), TEMPERATURE_MEASUREMENT)
            await self._device("Thermometer").take_temperature(v.get("celsius", round(rng.uniform(36.3, 37.2), 1)))
        else:
            raise ValueError(f"no virtual {kind}")

    async def close(self) -> None:
        await self.bench.close()


@dataclass(frozen=True)
class CameraConfig:
    profile: Path
    video: Path | None = None  # replaces the camera (demo, tests); played in a loop, at a camera's pace
    vitals_seconds: float = 30.0
    # Demo, with `video` (a face): what the camera plays while the patient shows it skin (the photo page), as a
    # patient holds up the forearm with the rash; `video` the rest of the time. See `Camera.pose`.
    skin_video: Path | None = None


Pose = Literal["face", "skin"]


_END = object()
_OPEN: weakref.WeakSet[Camera] = weakref.WeakSet()


@atexit.register
def _close_cameras() -> None:
    for camera in list(_OPEN):
        camera.close()


class _Watcher:
    def __init__(self, maxsize: int) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize)
        self.dropped = 0

    def offer(self, item: object) -> None:
        """Never blocks the capture: a watcher that falls behind loses its oldest frame (the index shows the gap)."""
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.queue.get_nowait()
                    self.dropped += 1

    def frames(self) -> Iterator[Frame]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]


class Camera:
    """The kiosk's one camera, shared: opened once while anyone watches, every watcher gets every frame.

    A photo, a vitals measurement, a card scan and a live consult can all watch at the same time
    (the consult's video and the vitals pipeline see the same frames); the device is opened by the
    first watcher and closed a moment after the last one leaves. A video file stands in for the
    camera in demos and tests: it plays at its own pace, in a loop, with times that keep increasing.
    """

    LINGER_S = 1.0  # keep the device open this long after the last watcher (a photo right after a scan)

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._watchers: set[_Watcher] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        _OPEN.add(self)
        self._thread: threading.Thread | None = None
        self.opened = 0  # times the device was opened: a test can tell sharing from reopening
        self._pose: Pose = "face"
        self._preview: Preview | None = None

    @property
    def busy(self) -> bool:
        return bool(self._watchers)

    def pose(self, what: Pose) -> None:
        """What the patient shows the camera now, as the screen's page asks: their face (vitals, a call, most
        pages) or the skin of a rash or wound (the photo page). A real camera sees whatever is in front of it;
        a demo camera with a `skin_video` plays that video while the patient shows skin, its face video else."""
        self._pose = what

    def _video(self) -> Path | None:
        if self._pose == "skin" and self.config.skin_video is not None and self.config.video is not None:
            return self.config.skin_video
        return self.config.video

    @property
    def preview(self) -> Preview:
        """A small JPEG of what the camera sees, a few times a second, made only while someone asks for it."""
        if self._preview is None:
            from device.camera.preview import Preview  # noqa: PLC0415 - OpenCV loads only when used

            self._preview = Preview(self.watch)
        return self._preview

    @contextlib.contextmanager
    def watch(self, maxsize: int = 64) -> Iterator[Iterator[Frame]]:
        if self._closed.is_set():
            raise CameraError("the camera is closed")
        watcher = _Watcher(maxsize)
        with self._lock:
            self._watchers.add(watcher)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._capture, name="camera", daemon=True)
                self._thread.start()
        try:
            yield watcher.frames()
        finally:
            with self._lock:
                self._watchers.discard(watcher)

    def _capture(self) -> None:
        try:
            self._capture_until_unwatched()
        except Exception as exc:  # noqa: BLE001 - whatever stopped the camera, every watcher must hear it
            log.warning("camera: %s", exc)
            with self._lock:
                watchers = list(self._watchers)
                self._thread = None
            for w in watchers:
                w.offer(exc if isinstance(exc, CameraError) else CameraError(str(exc)))

    def close(self) -> None:
        """Stop capturing now and release the device; watchers' iterations end. Called when the kiosk stops,
        and at interpreter exit: a capture thread still inside OpenCV's C++ when Python finalises aborts the
        whole process ("FATAL: exception not rethrown")."""
        self._closed.set()
        if self._preview is not None:
            self._preview.close()
        with self._lock:
            thread, watchers = self._thread, list(self._watchers)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        for w in watchers:
            w.offer(_END)
        _OPEN.discard(self)

    def _done(self, idle_since: float | None) -> bool:
        """Stop when nobody has watched for LINGER_S. Decided under the lock `watch()` takes, so a new
        watcher either is seen here or finds no capture running and starts one: none is ever left waiting."""
        if self._closed.is_set():
            with self._lock:
                self._thread = None
            return True
        with self._lock:
            if self._watchers or idle_since is None or time.monotonic() - idle_since <= self.LINGER_S:
                return False
            self._thread = None
            return True

    def _capture_until_unwatched(self) -> None:
        from device.camera.profile import load_kiosk_profile  # noqa: PLC0415 - OpenCV loads only when used
        from device.camera.source import Frame, open_source  # noqa: PLC0415

        profile = load_kiosk_profile(self.config.profile)
        is_file = self.config.video is not None or profile.camera.kind == "file"
        idle_since: float | None = None
        t_offset, index_offset = 0.0, 0
        while True:
            self.opened += 1
            last: Frame | None = None
            video, switched = self._video(), False
            with open_source(profile.camera, file=video, realtime=True) as source:
                period = 1.0 / max(source.nominal_fps, 1.0)
                for frame in source.frames():
                    if self._video() != video:
                        switched = True  # a demo camera: the patient shows it something else now (`pose`)
                        break
                    last = Frame(image=frame.image, t=frame.t + t_offset, index=frame.index + index_offset)
                    with self._lock:
                        watchers = list(self._watchers)
                    for w in watchers:
                        w.offer(last)
                    idle_since = None if watchers else (idle_since or time.monotonic())
                    if self._done(idle_since):
                        return
            if not switched and (last is None or not is_file):
                raise CameraError("the camera stopped delivering frames")
            if last is not None:
                # The video ended (or the other one is wanted): play on, times continuing a frame period after the last.
                t_offset, index_offset = last.t + period, last.index + 1

    def photo(self, allow_face: bool = False) -> tuple[PreparedPhoto, PhotoCheck]:
        from device.camera.photos import best_frame, prepare  # noqa: PLC0415

        with self.watch() as frames:
            image, check = best_frame(frames, allow_face=allow_face)
        return prepare(image), check

    def vitals(self, progress: Callable[[float], None]) -> CameraVitals:
        from device.camera.vitals import measure  # noqa: PLC0415

        seconds = self.config.vitals_seconds

        def timed(frames: Iterator[Frame]) -> Iterator[Frame]:
            first: float | None = None
            last_report = -1.0
            for frame in frames:
                first = frame.t if first is None else first
                elapsed = frame.t - first
                if elapsed > seconds:
                    return
                if elapsed - last_report >= 1.0:
                    progress(min(1.0, elapsed / seconds))
                    last_report = elapsed
                yield frame

        with self.watch(maxsize=4 * 30) as frames:
            return measure(timed(frames))

    def scan_code(self, seconds: float = 10.0) -> str | None:
        """A check-in card's QR code, read from the camera for up to `seconds`."""
        import cv2  # noqa: PLC0415

        detector = cv2.QRCodeDetector()
        with self.watch(maxsize=2) as frames:  # only the newest frames matter
            first: float | None = None
            for n, frame in enumerate(frames):
                first = frame.t if first is None else first
                if frame.t - first > seconds:
                    return None
                if n % 3:
                    continue  # a third of the frames is plenty, and keeps the Pi's core free
                text, _points, _ = detector.detectAndDecode(frame.image)
                if text:
                    return str(text)
        return None


def now_utc() -> datetime:
    return datetime.now(UTC)
