"""The patient's side of a live consult: ask, wait (with an honest position and estimate), talk, and what
happens when it cannot go on.

A call that cannot be held (no provider free in time, the media cannot connect, the provider's side
vanishes) becomes an asynchronous case with the visit's readings attached, and the patient is told so:
nothing the patient did is lost because the call was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from device.consult.call import Call
from device.consult.client import HubLink, Inbound, SignalingClient
from device.consult.settings import ConsultSettings
from device.protocol.signaling import Answer, End, Ended, Form, Joined, Message, Queued, Request, Vital
from device.protocol.signaling import Vitals as VitalsMessage
from device.screen.visit import CaseDraft, Visit

if TYPE_CHECKING:
    from device.screen.screen import Screen

log = logging.getLogger(__name__)

Phase = Literal["waiting", "connecting", "live", "ended"]
# Why a call became a case, in the words the case carries to the provider.
FALLBACK_TEXT = {
    "failed": "The video call could not connect.",
    "peer_gone": "The video call dropped.",
    "declined": "No provider could take the video call.",
    "timeout": "No provider was free for the video call in time.",
}


@dataclass
class Consult:
    id: str
    subject: str
    phase: Phase = "waiting"
    position: int | None = None
    estimate_s: int | None = None
    provider: str = ""
    reason: str | None = None
    fallback_case: str | None = None
    messages: list[str] = field(default_factory=list)
    form: Literal["vitals", "case"] | None = None  # the provider's request to show, until its page is shown
    visit: str = ""  # the token of the visit that asked: no other visit is shown it, the same patient's next neither


class Consults:
    def __init__(self, screen: Screen, link: HubLink | None, settings: ConsultSettings) -> None:
        self.screen = screen
        self.settings = settings
        self.client = SignalingClient(link, self._on_message, gone_after_s=settings.gone_after_s) if link else None
        self.current: Consult | None = None
        self.call: Call | None = None
        self._timers: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        return self.client is not None

    def reachable(self) -> bool:
        return self.client is not None and self.client.connected.is_set()

    async def start(self) -> None:
        if self.client is not None:
            self.client.start()

    async def stop(self) -> None:
        await self.finish("cancelled")
        if self.client is not None:
            await self.client.stop()

    def _later(self, delay: float, action: object) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            action()  # type: ignore[operator]

        task = asyncio.get_running_loop().create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def snapshot(self) -> dict[str, object]:
        c = self.current
        if c is None:
            return {}
        # The count of the provider's messages (not their words): a page rendered before one arrived renders again.
        # The provider's request for a form stays in the state until its page is served, so a page that was
        # loading when it came still follows it.
        return {
            "phase": c.phase, "position": c.position, "estimate_s": c.estimate_s, "reason": c.reason,
            "messages": len(c.messages), "form": c.form if c.phase in ("connecting", "live") else None,
        }  # fmt: skip

    def _publish(self) -> None:
        if self.current is not None:
            self.screen.events.publish("consult", self.snapshot())

    # -- the patient

    async def request(self, visit: Visit) -> Consult | None:
        """Ask for a provider now; None when the hub cannot be reached (the screen offers a case instead)."""
        if self.client is None or not self.reachable():
            return None
        if self.current is not None and self.current.phase != "ended" and self.current.subject == visit.subject:
            return self.current
        consult = Consult(id=str(uuid.uuid4()), subject=visit.subject, visit=visit.token)
        vitals = [Vital(code=r.code, value=r.value, unit=r.unit, effective="") for r in visit.readings[-50:]]
        # Current before it is sent: the hub's first answer can arrive while the send is still being awaited.
        self.current = consult
        sent = await self.client.send(
            Request(consult=consult.id, subject=visit.subject, language=visit.language, vitals=vitals)
        )
        if not sent:
            self.current = None
            return None
        self._later(self.settings.wait_limit_s, lambda: self._wait_expired(consult))
        return consult

    def _wait_expired(self, consult: Consult) -> None:
        if self.current is consult and consult.phase == "waiting":
            asyncio.get_running_loop().create_task(self._drop(consult, "timeout", tell_hub=True))

    async def finish(self, reason: Literal["finished", "cancelled"] = "finished") -> None:
        """The patient ends the call (or leaves the queue, or their visit ends)."""
        consult = self.current
        if consult is None or consult.phase == "ended":
            return
        consult.phase, consult.reason = "ended", reason
        if self.client is not None:
            await self.client.send(End(consult=consult.id, reason=reason))
        await self._close_call()
        self._publish()

    def form_shown(self, form: Literal["vitals", "case"]) -> None:
        """The page the provider asked for is being served: the request is done."""
        if self.current is not None and self.current.form == form:
            self.current.form = None

    def reading_taken(self, vitals: list[Vital]) -> None:
        """Readings taken during the call appear on the provider's screen as they arrive."""
        c = self.current
        if c is not None and c.phase == "live" and self.client is not None and vitals:
            asyncio.get_running_loop().create_task(self.client.send(VitalsMessage(consult=c.id, vitals=vitals)))

    # -- the hub

    def _on_message(self, message: Inbound) -> None:
        c = self.current
        if c is None or getattr(message, "consult", c.id) != c.id:
            return
        if isinstance(message, Queued):
            c.position, c.estimate_s = message.position, message.estimate_s
            self._publish()
        elif isinstance(message, Joined):
            c.phase, c.provider = "connecting", message.provider
            self._publish()
            asyncio.get_running_loop().create_task(self._connect(c, message))
        elif isinstance(message, Answer):
            asyncio.get_running_loop().create_task(self._answer(c, message.sdp))
        elif isinstance(message, Ended):
            dropped = message.reason in ("peer_gone", "failed", "declined")
            if dropped:
                asyncio.get_running_loop().create_task(self._drop(c, message.reason, tell_hub=False))
            else:
                c.phase, c.reason = "ended", message.reason
                asyncio.get_running_loop().create_task(self._close_call())
                self._publish()
        elif isinstance(message, Message):
            c.messages.append(message.text)
            self.screen.events.publish("consult-message", {"text": message.text})
        elif isinstance(message, Form):
            log.info("call: the provider asks for the %s page", message.form)
            c.form = message.form
            self._publish()

    async def _connect(self, consult: Consult, joined: Joined) -> None:
        from device.consult.tracks import CameraTrack, microphone  # noqa: PLC0415 - aiortc and av load for calls

        video = CameraTrack(self.screen.camera) if self.screen.camera is not None else None
        try:
            audio = microphone(self.settings.microphone)
        except ValueError as exc:
            log.error("call without a microphone: %s", exc)
            audio = None
        self.call = Call(
            joined.ice_servers,
            video,
            audio,
            lambda reason: self._media_gone(consult, reason),
            gone_after_s=self.settings.gone_after_s,
            speaker=self.settings.speaker,
            relay_only=joined.relay_only,
            on_connected=lambda: self._connected(consult),
        )
        try:
            sdp = await self.call.offer()
        except Exception:
            log.exception("call: could not make an offer")
            await self._drop(consult, "failed", tell_hub=True)
            return
        if self.client is None or not await self.client.send_offer(consult.id, sdp):
            await self._drop(consult, "failed", tell_hub=True)

    async def _answer(self, consult: Consult, sdp: str) -> None:
        if self.call is None:
            return
        try:
            await self.call.answer(sdp)
        except Exception:
            log.exception("call: the provider's answer was refused")
            await self._drop(consult, "failed", tell_hub=True)
            return
        # Media has this long to connect; ICE's own failure can take half a minute or more.
        self._later(self.settings.connect_timeout_s, lambda: self._connect_expired(consult))

    def _connected(self, consult: Consult) -> None:
        if self.current is consult and consult.phase == "connecting":
            consult.phase = "live"
            self._publish()

    def _connect_expired(self, consult: Consult) -> None:
        if self.current is consult and consult.phase == "connecting":
            asyncio.get_running_loop().create_task(self._drop(consult, "failed", tell_hub=True))

    def _media_gone(self, consult: Consult, reason: str) -> None:
        asyncio.get_running_loop().create_task(self._drop(consult, reason, tell_hub=True))

    async def _drop(self, consult: Consult, reason: str, *, tell_hub: bool) -> None:
        """The call cannot go on: a case with the visit's readings goes to the clinic, and the patient is told."""
        if consult.phase == "ended":
            return
        consult.phase, consult.reason = "ended", reason
        if tell_hub and self.client is not None:
            hub_reason = "cancelled" if reason == "timeout" else reason
            await self.client.send(End(consult=consult.id, reason=hub_reason))
        await self._close_call()
        visit = self.screen.desk.visit
        if visit is not None and visit.subject == consult.subject:
            why = FALLBACK_TEXT.get(reason, FALLBACK_TEXT["failed"])
            draft = CaseDraft(text=f"{why} The patient asked to see a provider now; the visit's readings are attached.")
            kept, visit.case = visit.case, draft
            try:
                consult.fallback_case = self.screen.send_case(visit, str(uuid.uuid4()), origin="call")
            finally:
                visit.case = kept
            self._later(self.settings.return_after_s, lambda: self._return_home(visit))
        self._publish()

    def _return_home(self, visit: Visit) -> None:
        if self.screen.desk.visit is visit:
            self.screen.end_visit("consult_dropped")

    async def _close_call(self) -> None:
        call, self.call = self.call, None
        if call is not None:
            with contextlib.suppress(Exception):
                await call.close()
