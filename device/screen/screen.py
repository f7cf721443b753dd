"""The screen's state and the glue between a visit and the kiosk's parts (outbox, inbox, hardware).

Everything here runs on the web server's event loop except `on_receipt`, which the forwarder
calls from its network thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from device.attachments import chunk_payloads
from device.ble.collector import CheckIn
from device.inbox import Inbox
from device.intake import general_intake
from device.outbox import Outbox
from device.protocol.downlink import KioskSetupBody
from device.protocol.envelope import utc_iso
from device.protocol.questionnaire import Questionnaire, visible
from device.protocol.signaling import Vital
from device.screen.checkin import Gate
from device.screen.events import Events
from device.screen.notices import Notices
from device.screen.station import Bluetooth, Camera, VirtualDevices
from device.screen.visit import Desk, IdlePolicy, ShownReading, Visit

if TYPE_CHECKING:
    from device.screen.consult import Consults

log = logging.getLogger(__name__)

INTERMEDIATE_CUFF_PRESSURE = 0x2A36


@dataclass(frozen=True)
class ScreenSettings:
    kiosk_id: str
    idle: IdlePolicy = field(default_factory=IdlePolicy)
    clinic_name: str = ""  # until the hub's setup names the clinic
    consults: bool = False  # live video consults (not at this kiosk yet)


class Screen:
    def __init__(
        self,
        settings: ScreenSettings,
        *,
        outbox: Outbox,
        inbox: Inbox,
        notices: Notices,
        connected: Callable[[], bool],
        camera: Camera | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.inbox = inbox
        self.notices = notices
        self.connected = connected
        self.camera = camera
        self.clock = clock
        self.desk = Desk(settings.idle)
        self.gate = Gate()
        self.events = Events()
        self.checkin = CheckIn()
        self.bluetooth: Bluetooth | None = None
        self.virtual: VirtualDevices | None = None
        self.consults: Consults | None = None  # live video consults, where the kiosk knows its hub
        self._watch: asyncio.Task[None] | None = None

    # -- what the hub told this kiosk

    def setup(self) -> KioskSetupBody | None:
        return self.inbox.setup()

    def clinic_name(self) -> str:
        setup = self.setup()
        return setup.clinic_name if setup else self.settings.clinic_name

    def questionnaire(self) -> Questionnaire:
        setup = self.setup()
        return setup.questionnaire if setup else general_intake()

    # -- visits

    def begin_visit(self, subject: str, language: str) -> Visit:
        if self.desk.visit is not None:
            self.end_visit("replaced")
        visit = self.desk.begin(subject, language, self.clock())
        self.checkin.check_in(subject, datetime.now(UTC))
        return visit

    def end_visit(self, reason: str) -> None:
        """Forget the visit: its unsent drafts go, answers shown are removed from the kiosk, screens are told."""
        visit = self.desk.end()
        self.checkin.check_out()
        if visit is None:
            return
        if self.consults is not None and self.consults.current is not None:
            asyncio.get_running_loop().create_task(self.consults.finish("cancelled"))
        self.inbox.forget(visit.answers_seen)
        self.notices.forget_shown(visit.notices_seen)
        self.events.publish("ended", {"reason": reason})
        log.info("visit ended (%s) after %.0f s", reason, self.clock() - visit.started)

    async def start(self) -> None:
        self.events.bind(asyncio.get_running_loop())
        if self.bluetooth is not None:
            self.bluetooth.start()
        if self.consults is not None:
            await self.consults.start()
        self._watch = asyncio.get_running_loop().create_task(self._watch_idle())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self.end_visit("shutdown")
        if self.consults is not None:
            await self.consults.stop()
        if self.bluetooth is not None:
            await self.bluetooth.close()
        if self.virtual is not None:
            await self.virtual.close()
        if self.camera is not None:
            await asyncio.to_thread(self.camera.close)

    async def _watch_idle(self) -> None:
        """A walked-away patient's visit ends even if their screen's own countdown could not run."""
        while True:
            await asyncio.sleep(0.5)
            visit = self.desk.visit
            if visit is not None and self.desk.policy.expired(visit, self.clock()):
                self.end_visit("idle")

    # -- readings, progress and receipts

    def on_reading(self, payload: dict[str, Any]) -> object:
        """The collector's sink: into the outbox (raises when it cannot store), then onto the screen."""
        envelope = self.outbox.enqueue("observations", payload)
        visit = self.desk.visit
        if visit is not None and payload.get("subject") == visit.subject:
            self._shown(visit, envelope.id, payload)
        return envelope

    def _shown(self, visit: Visit, envelope_id: str, payload: dict[str, Any]) -> None:
        visit.touch(self.clock())
        visit.vitals_ids.append(envelope_id)
        self.notices.saved(visit.subject, "vitals", envelope_id, self.clock())
        for o in payload["observations"]:
            device = o.get("device", {})
            reading = ShownReading(o["code"], float(o["value"]), o["unit"], str(device.get("type", "")))
            visit.readings.append(reading)
            self.events.publish(
                "reading", {"code": reading.code, "value": reading.value, "unit": reading.unit, "id": envelope_id}
            )
        if self.consults is not None:
            observations = payload["observations"]
            self.consults.reading_taken([_vital(o) for o in observations])

    def on_progress(self, _device: str, uuid: int, value: Any) -> None:
        if uuid == INTERMEDIATE_CUFF_PRESSURE and self.desk.visit is not None:
            self.desk.visit.touch(self.clock())
            self.events.publish("pressure", {"mmHg": round(float(value.current_cuff_pressure.value))})

    def on_receipt(self, ids: list[str]) -> None:
        """The hub has committed these: notices learn when (forwarder thread)."""
        now = self.clock()
        self.notices.delivered(ids, now)
        self.events.publish_threadsafe("delivered", {"ids": ids, "at": now})

    def record_camera_vitals(self, visit: Visit, observations: list[dict[str, Any]]) -> str:
        payload = {"observations": observations, "subject": visit.subject}
        envelope = self.outbox.enqueue("observations", payload)
        self._shown(visit, envelope.id, payload)
        return envelope.id

    # -- cases

    def send_case(self, visit: Visit, case_id: str) -> str:
        """Photos and the case into the outbox in one transaction; returns the case envelope's id."""
        q = self.questionnaire()
        shown = {i.link_id for i in visible(q, visit.case.answers)}
        answers = [{"link_id": k, "value": v} for k, v in visit.case.answers.items() if k in shown]
        items: list[tuple[str, Any]] = []
        attachment_ids = []
        for photo in visit.case.photos:
            chunks = chunk_payloads(photo.jpeg, subject=visit.subject)
            attachment_ids.append(str(chunks[0]["attachment"]))
            items += [("attachment", c) for c in chunks]
        items.append(
            (
                "case",
                {
                    "case": case_id,
                    "subject": visit.subject,
                    "questionnaire": {"id": q.id, "version": q.version},
                    "answers": answers,
                    "text": visit.case.text,
                    "attachments": attachment_ids,
                    "vitals": visit.vitals_ids[-50:],
                    "created": utc_iso(datetime.now(UTC)),
                },
            )
        )
        envelopes = self.outbox.enqueue_many(items)
        case_envelope = envelopes[-1].id
        self.notices.saved(visit.subject, "case", case_envelope, self.clock())
        visit.case = type(visit.case)()  # sent: the draft (and its photos) leave memory
        return case_envelope


def _vital(o: dict[str, Any]) -> Vital:
    return Vital(code=o["code"], value=float(o["value"]), unit=o["unit"], effective=str(o.get("effective", "")))
