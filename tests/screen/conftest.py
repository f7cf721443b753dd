"""The `kiosk` fixture: a screen built by `kiosk serve`'s own build(), with its app's lifespan running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from device.agent import AgentConfig, KioskAgent
from device.protocol.endpoints import BrokerUrl
from device.screen.app import create_app
from device.screen.serve import ServeOptions, build
from device.screen.visit import IdlePolicy
from tests.screen.kiosk import BASE_URL, KIOSK_ID, REPO, Kiosk


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Kiosk]:
    config = AgentConfig(kiosk_id=KIOSK_ID, broker=BrokerUrl.parse("mqtt://127.0.0.1:1"), data_dir=tmp_path / "kiosk")
    agent = KioskAgent(config)  # never started: no thread, no connection attempt
    options = ServeOptions(
        port=0,
        ble="off",
        profiles=REPO / "firmware_configs" / "ble",
        camera_profile=None,
        camera_video=None,
        camera_seconds=1.0,
        idle=IdlePolicy(),
        clinic_name="Test kiosk",
    )
    screen = build(agent, options)
    app = create_app(screen)
    try:
        with TestClient(app, base_url=BASE_URL, follow_redirects=False) as client:
            kiosk = Kiosk(agent, screen, app, client)
            yield kiosk
            for other in kiosk.others:
                other.close()
    finally:
        # What agent.stop() closes, minus joining threads that never started.
        screen.notices.close()
        agent.forwarder.close()
        agent.forwarder.outbox.close()
        agent.outbox.close()
        agent.inbox.close()
