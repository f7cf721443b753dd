"""`kiosk serve`: the agent (outbox, forwarder, status), the Bluetooth collector, the camera, and the screen.

One process, so the camera and the radio have one owner. The screen listens on 127.0.0.1 only:
the kiosk's own browser is its only client.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path

import uvicorn

from device.agent import KioskAgent
from device.consult.client import HubLink
from device.consult.settings import ConsultSettings
from device.protocol import sd_notify
from device.screen.app import create_app
from device.screen.notices import Notices
from device.screen.screen import Screen, ScreenSettings
from device.screen.station import Bluetooth, Camera, CameraConfig, VirtualDevices
from device.screen.visit import IdlePolicy

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServeOptions:
    port: int
    ble: str  # bleak | virtual | off
    profiles: Path
    camera_profile: Path | None
    camera_video: Path | None
    camera_seconds: float
    idle: IdlePolicy
    clinic_name: str
    hub: HubLink | None = None
    consult: ConsultSettings = field(default_factory=ConsultSettings)
    camera_skin_video: Path | None = None  # demo: the camera's picture on the photo page (CameraConfig.skin_video)


def options_from(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        port=args.port,
        ble=args.ble,
        profiles=args.profiles,
        camera_profile=None if args.no_camera else args.camera_profile,
        camera_video=args.camera_video,
        camera_seconds=args.camera_seconds,
        idle=IdlePolicy(idle_s=args.idle_timeout, warn_s=min(args.idle_warning, args.idle_timeout)),
        clinic_name=args.clinic_name,
        hub=_hub_link(args),
        consult=ConsultSettings(
            microphone=args.microphone,
            speaker=args.speaker,
            wait_limit_s=args.consult_wait_limit,
            return_after_s=args.consult_return_after,
            connect_timeout_s=args.consult_connect_timeout,
        ),
        camera_skin_video=args.camera_skin_video,
    )


def _hub_link(args: argparse.Namespace) -> HubLink | None:
    """Live consults need the hub's address and this kiosk's credential (`hub kiosks credential`)."""
    identity = getattr(args, "identity", None)
    if identity is not None and identity.hub_url and args.hub_url is None:
        args.hub_url = identity.hub_url
        args.hub_credential_file = args.hub_credential_file or identity.hub_credential_file
    if args.hub_url is None:
        return None
    if args.hub_credential_file is None:
        raise SystemExit("--hub-url needs --hub-credential-file (the kiosk's credential from `hub kiosks credential`)")
    credential = args.hub_credential_file.read_text().strip()
    if not credential:
        raise SystemExit(f"{args.hub_credential_file} is empty")
    return HubLink(args.hub_url, credential, args.hub_ca)


def build(agent: KioskAgent, options: ServeOptions) -> Screen:
    camera = None
    if options.camera_profile is not None:
        config = CameraConfig(options.camera_profile, options.camera_video, options.camera_seconds)
        camera = Camera(replace(config, skin_video=options.camera_skin_video))
    screen = Screen(
        ScreenSettings(kiosk_id=agent.config.kiosk_id, idle=options.idle, clinic_name=options.clinic_name),
        outbox=agent.outbox,
        inbox=agent.inbox,
        notices=Notices(agent.config.data_dir / "notices.db"),
        connected=agent.forwarder.connected.is_set,
        camera=camera,
    )
    agent.forwarder.on_receipt = screen.on_receipt
    if options.hub is not None:
        from device.screen.consult import Consults  # noqa: PLC0415 - aiortc loads only where calls are possible

        screen.consults = Consults(screen, options.hub, options.consult)
    return screen


async def attach_bluetooth(screen: Screen, options: ServeOptions, data_dir: Path) -> None:
    """Radio first (bleak on the Pi, bumble's virtual link for demos), then the collector on it."""
    if options.ble == "off":
        return
    if options.ble == "virtual":
        screen.virtual = await VirtualDevices.start()
        # The virtual devices keep the machine's clock, in UTC; real ones keep the kiosk's local time.
        radio, scan_s, tz = screen.virtual.radio, 0.5, UTC
    else:
        from device.ble.transports.bleak import BleakRadio  # noqa: PLC0415

        radio, scan_s, tz = BleakRadio(), 3.0, None
    screen.bluetooth = Bluetooth(
        radio,
        options.profiles,
        data_dir / "ble.db",
        screen.checkin,
        screen.on_reading,
        screen.on_progress,
        scan_seconds=scan_s,
        tz=tz,
    )


STREAMS_CUT_S = 3  # s: well inside kiosk-agent.service's TimeoutStopSec


def serve(agent: KioskAgent, options: ServeOptions) -> int:
    screen = build(agent, options)
    app = create_app(screen)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, options.port))
    sock.listen(64)  # connections wait in the backlog while the radio powers on; never refused
    # A page's streams (live updates, the camera's preview) never end by themselves, and uvicorn's graceful stop
    # waits for every open request: the live updates are ended when the stop begins, the rest cut after a while.
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=STREAMS_CUT_S)
    server = uvicorn.Server(config)

    async def end_streams_on_stop() -> None:
        while not server.should_exit:  # set by uvicorn's signal handler; it polls it the same way
            await asyncio.sleep(0.1)
        screen.events.close()

    async def main() -> None:
        await attach_bluetooth(screen, options, agent.config.data_dir)
        # Pinged from this loop: a screen that stops answering, or a dead agent thread, stops the pings.
        notifications = asyncio.create_task(sd_notify.serve_notifications(lambda: server.started, agent.healthy))
        stopping = asyncio.create_task(end_streams_on_stop())
        try:
            await server.serve(sockets=[sock])
        finally:
            notifications.cancel()
            stopping.cancel()
            sd_notify.notify("STOPPING=1")

    agent.start()
    print(f"kiosk screen: http://{HOST}:{sock.getsockname()[1]}/", flush=True)
    # uvicorn re-raises SIGTERM after its graceful stop; the default handler would then kill us before
    # the agent has stopped (see hub.service.HubService.serve_forever).
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        asyncio.run(main())
    finally:
        agent.stop()
        screen.notices.close()
        sock.close()
    return 0
