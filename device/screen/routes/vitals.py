"""Guided vitals: one device at a time, with its picture, live progress, and the reading as it arrives;
and what the camera sees, for the camera step and the photo page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from device.screen.screen import Screen
from device.screen.station import Camera
from device.screen.steps import BY_KIND, CAMERA_ADVICE, CODE_NAMES, STEPS, Step
from device.screen.visit import ShownReading, Visit
from device.screen.web import form_shown, redirect, render, require_visit, screen_of, visit_of

PREVIEW_POLL_S = 0.1  # how often a preview stream looks for a new picture (the preview makes 5 a second)


async def page_shown(request: Request) -> None:
    """Every page the patient opens (not the live stream, not pictures): see `Screen.page_shown`."""
    path = request.url.path
    if request.method != "GET" or path == "/events" or path.endswith((".jpg", ".mjpg")):
        return
    visit = visit_of(request)
    if visit is not None:
        screen_of(request).page_shown(visit, path)


router = APIRouter(dependencies=[Depends(page_shown)])
VisitDep = Annotated[Visit, Depends(require_visit)]


def _steps(request: Request) -> tuple[Step, ...]:
    """The steps this kiosk can offer: the camera's only where there is a camera."""
    has_camera = screen_of(request).camera is not None
    return tuple(s for s in STEPS if s.kind != "camera" or has_camera)


@router.get("/vitals")
async def overview(request: Request, visit: VisitDep) -> Response:
    form_shown(request, "vitals")
    return render(request, "vitals.html", visit, steps=_steps(request))


@router.get("/vitals/{kind}")
async def step(request: Request, visit: VisitDep, kind: str) -> Response:
    steps = _steps(request)
    current = next((s for s in steps if s.kind == kind), None)
    if current is None:
        raise HTTPException(404, "no such step")
    index = steps.index(current)
    following = steps[index + 1].kind if index + 1 < len(steps) else None
    screen = screen_of(request)
    return render(
        request,
        "step.html",
        visit,
        step=current,
        next_kind=following,
        readings=_readings(visit, current.kind),
        simulated=screen.virtual is not None and kind != "camera",
    )


@router.post("/vitals/{kind}/simulate")
async def simulate(request: Request, _visit: VisitDep, kind: str) -> Response:
    """Demo kiosks only: press the virtual device's own Start button (the devices speak real GATT)."""
    screen = screen_of(request)
    if screen.virtual is None or kind not in BY_KIND:
        raise HTTPException(404, "no simulated devices here")
    task = asyncio.get_running_loop().create_task(screen.virtual.press(kind))
    request.app.state.tasks = getattr(request.app.state, "tasks", set()) | {task}
    return redirect(f"/vitals/{kind}")


@router.post("/vitals/camera/measure")
async def camera_measure(request: Request, visit: VisitDep) -> Response:
    screen = screen_of(request)
    if screen.camera is None:
        raise HTTPException(404, "this kiosk has no camera")
    screen.camera.pose("face")

    def progress(fraction: float) -> None:
        screen.events.publish_threadsafe("camera", {"progress": round(fraction, 2)})
        visit.touch(screen.clock())

    result = await asyncio.to_thread(screen.camera.vitals, progress)
    now = datetime.now(UTC)
    device = {"id": "camera:kiosk", "type": "camera"}
    observations = result.observations(now, device)
    if observations and screen.desk.visit is visit:
        screen.record_camera_vitals(visit, observations)
    # Per vital, so the patient knows which one to try again for.
    advice = [
        (name, CAMERA_ADVICE.get(reason, reason))
        for name, reason in (
            (CODE_NAMES["8867-4"], result.heart.abstained),
            (CODE_NAMES["9279-1"], result.breathing.abstained),
        )
        if reason
    ]
    current = BY_KIND["camera"]
    return render(
        request,
        "step.html",
        visit,
        step=current,
        next_kind=None,
        readings=_readings(visit, "camera"),
        simulated=False,
        camera_advice=advice,
    )


def _readings(visit: Visit, kind: str) -> list[ShownReading]:
    """This step's readings: those its own device measured (a pulse is the cuff's, the oximeter's or the camera's)."""
    return [r for r in visit.readings if r.step == kind]


def _previewing(request: Request) -> tuple[Screen, Visit, Camera]:
    """The screen, its visit and its camera. The visit is not touched: a picture streaming is not the patient
    touching the screen, and the idle countdown must still run under a live preview."""
    screen = screen_of(request)
    visit = visit_of(request)
    if visit is None:
        raise HTTPException(303, headers={"Location": "/?ended=1"})
    if screen.camera is None:
        raise HTTPException(404, "this kiosk has no camera")
    return screen, visit, screen.camera


@router.get("/camera/preview.jpg")
async def preview_picture(request: Request) -> Response:
    """What the camera sees now: one small JPEG (waits a moment for the first picture of a camera just opened)."""
    _screen, _visit, camera = _previewing(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while (latest := camera.preview.latest()) is None:
        if loop.time() > deadline:
            raise HTTPException(503, "the camera shows nothing")
        await asyncio.sleep(PREVIEW_POLL_S / 2)
    return Response(latest[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/camera/preview.mjpg")
async def preview_stream(request: Request) -> Response:
    """What the camera sees, live: a stream of small JPEGs an <img> shows (no script needed), for as long as
    the page is open and the visit lasts. Shown on the camera step (keep the face in view, hold still) and on
    the photo page (frame the rash)."""
    screen, visit, camera = _previewing(request)

    async def pictures() -> AsyncIterator[bytes]:
        seen = 0
        while screen.desk.visit is visit:
            latest = camera.preview.latest()
            if latest is not None and latest[0] != seen:
                seen, jpeg = latest
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
                yield jpeg + b"\r\n"
            await asyncio.sleep(PREVIEW_POLL_S)

    return StreamingResponse(
        pictures(), media_type="multipart/x-mixed-replace; boundary=frame", headers={"Cache-Control": "no-store"}
    )
