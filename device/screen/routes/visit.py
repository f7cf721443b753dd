"""The visit itself: the home screen, the clinic's answers, "see a provider now", finishing, live events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from device.screen.events import State
from device.screen.routes.vitals import page_shown
from device.screen.visit import Visit
from device.screen.web import COOKIE, cleared, language_of, redirect, render, require_visit, screen_of, visit_of

router = APIRouter(dependencies=[Depends(page_shown)])  # a camera measurement goes once the patient moves on
VisitDep = Annotated[Visit, Depends(require_visit)]


@router.get("/home")
async def home(request: Request, visit: VisitDep) -> Response:
    screen = screen_of(request)
    notices = screen.notices.for_subject(visit.subject)
    visit.notices_seen |= {n.message_id for n in notices if n.delivered_at is not None}
    delivered = [n for n in notices if n.delivered_at is not None]
    waiting = [n for n in notices if n.delivered_at is None]
    answers = screen.inbox.messages(visit.subject)
    unread = [a for a in answers if a.id not in visit.answers_seen]
    return render(
        request,
        "home.html",
        visit,
        delivered=delivered,
        waiting_cases=sum(1 for n in waiting if n.what == "case"),
        waiting_vitals=sum(1 for n in waiting if n.what == "vitals"),
        unread=len(unread),
    )


@router.get("/answers")
async def answers(request: Request, visit: VisitDep) -> Response:
    screen = screen_of(request)
    messages = screen.inbox.messages(visit.subject)
    # Shown now: removed from the kiosk when the visit ends (the hub keeps the record).
    visit.answers_seen |= {m.id for m in messages}
    # Which of the patient's cases each answers: when it was sent and their first words.
    cases = screen.notices.sent_cases(visit.subject, [m.body.case for m in messages])
    return render(request, "answers.html", visit, messages=messages, cases=cases)


@router.get("/consult")
async def consult(request: Request, visit: VisitDep) -> Response:
    return _consult_page(request, visit)


def _consult_page(request: Request, visit: Visit, unreachable: bool = False) -> Response:
    consults = screen_of(request).consults
    current = consults.current if consults is not None else None
    if current is not None and (current.subject != visit.subject or current.visit != visit.token):
        current = None  # another patient's call is never shown, nor a call from the patient's last visit
    return render(
        request,
        "consult.html",
        visit,
        available=consults is not None,
        reachable=consults is not None and consults.reachable(),
        consult=current,
        unreachable=unreachable,
    )


@router.post("/consult/request")
async def request_consult(request: Request, visit: VisitDep) -> Response:
    consults = screen_of(request).consults
    if consults is None:
        return redirect("/consult")
    if await consults.request(visit) is None:
        return _consult_page(request, visit, unreachable=True)
    return redirect("/consult")


@router.post("/consult/end")
async def end_consult(request: Request, visit: VisitDep) -> Response:
    consults = screen_of(request).consults
    if consults is not None and consults.current is not None and consults.current.subject == visit.subject:
        await consults.finish("finished" if consults.current.phase == "live" else "cancelled")
    return redirect("/consult")


@router.get("/consult/remote.mjpg")
async def remote_video(request: Request, visit: VisitDep) -> Response:
    """The provider's picture for the kiosk screen, as a stream of JPEGs (an <img> shows it; no script needed)."""
    consults = screen_of(request).consults
    call = consults.call if consults is not None else None
    if call is None or consults is None or consults.current is None or consults.current.subject != visit.subject:
        return Response(status_code=404)

    async def frames() -> AsyncIterator[bytes]:
        seen = 0  # serial 0: no picture yet (an empty part would break the <img> for good)

        def changed(since: int) -> Callable[[], bool]:
            return lambda: call.remote.serial != since

        while consults.call is call:
            async with call.remote.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(call.remote.changed.wait_for(changed(seen)), 1.0)
                if call.remote.serial == seen:
                    continue
                seen, jpeg = call.remote.serial, call.remote.jpeg
            yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
            yield jpeg + b"\r\n"

    return StreamingResponse(
        frames(), media_type="multipart/x-mixed-replace; boundary=frame", headers={"Cache-Control": "no-store"}
    )


@router.post("/alive")
async def alive(request: Request) -> Response:
    """The patient touched the screen: the idle countdown starts again."""
    visit = visit_of(request)
    if visit is None:
        return Response(status_code=410)
    visit.touch(screen_of(request).clock())
    return Response(status_code=204)


def _end(request: Request, reason: str, then: str) -> Response:
    """End this browser's visit (if it still has one) and clear what the browser holds.

    The goodbye is said in the visit's language: clearing the browser's cookies clears the language's too.
    """
    visit = visit_of(request)
    language = language_of(request, visit)
    if visit is not None:
        screen_of(request).end_visit(reason)
    return cleared(redirect(f"{then}{'&' if '?' in then else '?'}lang={language}"))


@router.post("/finish")
async def finish(request: Request) -> Response:
    return _end(request, "finished", "/bye")


@router.post("/timeout")
async def timeout(request: Request) -> Response:
    """The screen's countdown reached zero."""
    return _end(request, "idle", "/bye?idle=1")


@router.get("/bye")
async def bye(request: Request, idle: int = 0) -> Response:
    return cleared(render(request, "bye.html", None, idle=bool(idle)))


@router.get("/events")
async def events(request: Request) -> Response:
    """Live updates for the open page. Without a visit, the stream says so at once (the page goes home)."""
    screen = screen_of(request)
    visit = visit_of(request)
    if visit is None:
        # Why, when this browser's own visit was the one that ended: the page's goodbye says only what is true.
        ended, token = screen.last_ended, request.cookies.get(COOKIE)
        why = {"reason": ended[1]} if ended is not None and token is not None and ended[0] == token else {}
        return StreamingResponse(iter([f"event: ended\ndata: {json.dumps(why)}\n\n"]), media_type="text/event-stream")
    shown = visit  # narrowed, for the closure

    def initial() -> State:
        state: State = [("readings", {"count": len(shown.readings)})]
        consults = screen.consults
        current = consults.current if consults is not None else None
        if consults is not None and current is not None and current.visit == shown.token:  # this visit's call
            state.append(("consult", consults.snapshot()))
        return state

    return StreamingResponse(
        screen.events.stream(initial=initial), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
