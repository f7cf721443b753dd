"""Guided vitals: one device at a time, with its picture, live progress, and the reading as it arrives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from device.screen.steps import BY_KIND, CAMERA_ADVICE, CODE_NAMES, STEPS, Step
from device.screen.visit import ShownReading, Visit
from device.screen.web import form_shown, redirect, render, require_visit, screen_of

router = APIRouter()
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
        readings=_readings(visit, current.kind, current.codes),
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
        readings=_readings(visit, "camera", current.codes),
        simulated=False,
        camera_advice=advice,
    )


def _readings(visit: Visit, kind: str, codes: tuple[str, ...]) -> list[ShownReading]:
    """This step's readings: a camera pulse is not the cuff's, nor the other way round."""
    return [r for r in visit.readings if r.code in codes and (r.device == "camera") == (kind == "camera")]
