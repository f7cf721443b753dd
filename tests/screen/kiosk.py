"""The kiosk screen as `kiosk serve` builds it, without hardware or network (the fixture is in conftest.py):
the real agent (outbox, inbox, forwarder) on SQLite files in tmp_path, a broker address nothing listens on
(the agent is never started), no Bluetooth and no camera. The FastAPI app is driven through starlette's
TestClient over https://127.0.0.1, so the screen's Secure `__Host-` cookies travel as in Chromium.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from device.agent import AgentConfig, KioskAgent
from device.intake import general_intake
from device.protocol.downlink import (
    CaseAnswerBody,
    CaseAnswerMessage,
    KioskSetupBody,
    KioskSetupMessage,
    RosterEntry,
)
from device.protocol.endpoints import BrokerUrl
from device.protocol.ids import new_message_id
from device.screen.app import create_app
from device.screen.screen import Screen
from device.screen.serve import ServeOptions, build
from device.screen.visit import IdlePolicy
from device.screen.web import COOKIE

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "https://127.0.0.1"
ORIGIN = {"Origin": BASE_URL}
KIOSK_ID = "k-screen"
PIN = "1234"
# A patient without a PIN, one with a PIN, and one more without (for a second patient at the kiosk).
NO_PIN, WITH_PIN, OTHER = "P-1001", "P-2002", "P-3003"


@cache
def pin_hash(pin: str = PIN) -> str:
    """The hub's argon2id parameters (OWASP's minimum): hashed once per run, it costs tens of milliseconds."""
    return PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1).hash(pin)


def setup_body(*, version: int = 1, pin_required: bool = False) -> KioskSetupBody:
    return KioskSetupBody(
        clinic="riverside",
        clinic_name="Riverside Clinic",
        version=version,
        pin_required=pin_required,
        patients=[RosterEntry(code=NO_PIN), RosterEntry(code=WITH_PIN, pin_hash=pin_hash()), RosterEntry(code=OTHER)],
        questionnaire=general_intake(),
    )


def setup_message(body: KioskSetupBody) -> KioskSetupMessage:
    return KioskSetupMessage(id=new_message_id(), kiosk=KIOSK_ID, created=datetime.now(UTC), body=body)


def answer_message(subject: str, message: str) -> CaseAnswerMessage:
    body = CaseAnswerBody(case=str(uuid.uuid4()), subject=subject, message=message)
    return CaseAnswerMessage(id=new_message_id(), kiosk=KIOSK_ID, created=datetime.now(UTC), body=body)


@dataclass
class Kiosk:
    agent: KioskAgent
    screen: Screen
    app: FastAPI
    client: TestClient  # the kiosk's own browser, with the app's lifespan running
    others: list[TestClient] = field(default_factory=list)

    def browser(self) -> TestClient:
        """Another browser profile (its own cookie jar) talking to the same screen."""
        other = TestClient(self.app, base_url=BASE_URL, follow_redirects=False)
        self.others.append(other)
        return other

    def give_setup(self, body: KioskSetupBody | None = None) -> None:
        assert self.agent.inbox.store(setup_message(body or setup_body()))

    def outbox(self, kind: str) -> list[dict[str, Any]]:
        """The envelopes of one kind waiting in the outbox, as the forwarder would read them."""
        return [json.loads(item.body) for item in self.agent.outbox.pending() if item.kind == kind]


def post(client: TestClient, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Response:
    """A form post from the kiosk's own page: the browser sends the page's Origin."""
    headers = {**ORIGIN, **kwargs.pop("headers", {})}
    return client.post(url, data=data, headers=headers, **kwargs)


def check_in(client: TestClient, code: str, pin: str | None = None) -> Response:
    data = {"code": code} if pin is None else {"code": code, "pin": pin}
    return post(client, "/check-in", data)


def checked_in(client: TestClient, code: str, pin: str | None = None) -> str:
    """Check in and return the visit cookie's token."""
    response = check_in(client, code, pin)
    assert response.status_code == 303 and response.headers["location"] == "/home", response.text
    token = client.cookies.get(COOKIE)
    assert token
    return token


def set_cookies(response: Response) -> dict[str, str]:
    """Each Set-Cookie header by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def goes_to_welcome(response: Response) -> bool:
    return response.status_code == 303 and response.headers.get("location") == "/?ended=1"


VIDEO_FILE_PROFILE = REPO / "firmware_configs" / "kiosk" / "video-file.yaml"


@contextmanager
def kiosk_screen(tmp_path: Path, videos: tuple[Path, Path] | None) -> Iterator[Kiosk]:
    """`kiosk serve --camera-video face --camera-skin-video skin` (or `--no-camera`), without Bluetooth or network."""
    face, skin = videos or (None, None)
    config = AgentConfig(kiosk_id=KIOSK_ID, broker=BrokerUrl.parse("mqtt://127.0.0.1:1"), data_dir=tmp_path / "kiosk")
    agent = KioskAgent(config)  # never started
    options = ServeOptions(
        port=0,
        ble="off",
        profiles=REPO / "firmware_configs" / "ble",
        camera_profile=VIDEO_FILE_PROFILE if videos else None,
        camera_video=face,
        camera_seconds=1.0,
        idle=IdlePolicy(),
        clinic_name="Test kiosk",
        camera_skin_video=skin,
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
        screen.notices.close()
        agent.forwarder.close()
        agent.forwarder.outbox.close()
        agent.outbox.close()
        agent.inbox.close()
