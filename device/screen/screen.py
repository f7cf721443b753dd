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
from device.screen.notices import Notices, Origin
from device.screen.station import Bluetooth, Camera, VirtualDevices
from device.screen.steps import step_of
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
        self.last_ended: tuple[str, str] | None = None  # (visit token, reason): a page still open on it hears why

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
        self.send_held_camera(visit)  # the patient's last camera measurement: what they saw last is what goes
        if self.consults is not None and self.consults.current is not None:
            asyncio.get_running_loop().create_task(self.consults.finish("cancelled"))
        answered = [m.body.case for m in self.inbox.messages(visit.subject) if m.id in visit.answers_seen]
        self.inbox.forget(visit.answers_seen)
        self.notices.forget_cases(answered)  # answer shown: what identified its case is no longer needed
        self.notices.forget_shown(visit.notices_seen)
        self.last_ended = (visit.token, reason)
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
        self._saved(visit, envelope_id)
        self._show(visit, envelope_id, payload["observations"])

    def _saved(self, visit: Visit, envelope_id: str) -> None:
        visit.vitals_ids.append(envelope_id)
        self.notices.saved(visit.subject, "vitals", envelope_id, self.clock())

    def _show(self, visit: Visit, envelope_id: str | None, observations: list[dict[str, Any]]) -> None:
        """Onto the screen, on the step of the device that measured them (one payload: one device)."""
        visit.touch(self.clock())
        device = observations[0].get("device", {}) if observations else {}
        kind = self.bluetooth.kind_of(str(device.get("id", ""))) if self.bluetooth is not None else None
        step = step_of(device, kind)
        for o in observations:
            reading = ShownReading(o["code"], float(o["value"]), o["unit"], str(device.get("type", "")), step)
            visit.readings.append(reading)
            self.events.publish(
                "reading",
                {"code": reading.code, "value": reading.value, "unit": reading.unit, "step": step, "id": envelope_id},
            )
        if self.consults is not None:
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

    def record_camera_vitals(self, visit: Visit, observations: list[dict[str, Any]]) -> None:
        """A camera measurement: shown at once, and held in the visit until the patient moves on from the camera
        step. Measuring again replaces it, on the screen and in what the clinic gets: one camera pair a sitting,
        the one the patient saw last (`send_held_camera`)."""
        visit.readings = [r for r in visit.readings if r.step != "camera"]
        visit.held_camera = list(observations)
        self._show(visit, None, observations)

    def send_held_camera(self, visit: Visit) -> str | None:
        """The held camera measurement into the outbox (the patient left the camera step, sent a case, or the
        visit ends); its envelope id, or None when nothing was held or the outbox refused it (logged; kept held
        for the next try, and gone with the visit)."""
        if not visit.held_camera:
            return None
        payload = {"observations": visit.held_camera, "subject": visit.subject}
        try:
            envelope = self.outbox.enqueue("observations", payload)
        except Exception as exc:  # noqa: BLE001 - whatever the outbox refuses with, the page must still open
            log.error("the camera's readings could not be stored: %s", exc)
            return None
        visit.held_camera = []
        self._saved(visit, envelope.id)
        return envelope.id

    def page_shown(self, visit: Visit, path: str) -> None:
        """The patient opened the page at `path`: a camera measurement held on the camera step goes out once
        they leave it, and a demo camera shows what a patient shows the camera there (skin on the photo page)."""
        if path != "/vitals/camera":
            self.send_held_camera(visit)
        if self.camera is not None:
            self.camera.pose("skin" if path == "/case/photos" else "face")

    # -- cases

    def send_case(self, visit: Visit, case_id: str, origin: Origin = "form") -> str:
        """Photos and the case into the outbox in one transaction; returns the case envelope's id."""
        self.send_held_camera(visit)  # before the case, which names the visit's readings
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
        # For the answer's page: when it was sent and in the patient's first words (a call's words are ours).
        words = first_words(q, visit.case.answers, visit.case.text) if origin == "form" else ""
        self.notices.case_sent(visit.subject, case_id, case_envelope, self.clock(), words=words, origin=origin)
        visit.case = type(visit.case)()  # sent: the draft (and its photos) leave memory
        return case_envelope


def first_words(q: Questionnaire, answers: dict[str, Any], text: str, most: int = 60) -> str:
    """What lets a patient know their case again: the first words of their first written answer (the reason,
    in the built-in intake), else of their own words; cut at a word, at most `most` characters and an ellipsis."""
    written = [a for i in visible(q, answers) if i.type == "text" and isinstance(a := answers.get(i.link_id), str)]
    words = " ".join(next((w for w in [*written, text] if w.strip()), "").split())
    if len(words) <= most:
        return words
    cut = words[: most + 1].rsplit(" ", 1)[0] if " " in words[: most + 1] else words[:most]
    return cut.rstrip(" ,.;:") + "…"


def _vital(o: dict[str, Any]) -> Vital:
    return Vital(code=o["code"], value=float(o["value"]), unit=o["unit"], effective=str(o.get("effective", "")))
