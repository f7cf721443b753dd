"""Welcome and check-in: a code typed or scanned (a card's QR code, or a handheld scanner typing it), a PIN
where the clinic or the patient wants one."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from device.screen.checkin import CheckInResult
from device.screen.i18n import _, pick_language
from device.screen.web import LANG_COOKIE, cleared, redirect, render, screen_of, set_visit_cookie, visit_of

router = APIRouter()

MESSAGES = {
    "bad_code": _("That does not look like a check-in code. It is printed on your card, for example P-1001."),
    "unknown_code": _("We do not know this code. Check your card, or ask the staff for help."),
    "wrong_pin": _("That PIN is not right. Please try again."),
    "locked": _("Too many wrong PINs. Please wait a few minutes, or ask the staff for help."),
    "no_scan": _("We could not read a card. Hold it up to the camera, or type the code."),
}


@router.get("/")
async def welcome(request: Request, ended: int = 0) -> Response:
    if visit_of(request) is not None:
        return redirect("/home")
    response = render(request, "welcome.html", None)
    return cleared(response) if ended else response


@router.post("/language")
async def language(request: Request, lang: Annotated[str, Form()]) -> Response:
    response = redirect("/")
    response.set_cookie(LANG_COOKIE, pick_language(lang), secure=True, httponly=True, samesite="strict", path="/")
    return response


@router.post("/check-in")
async def check_in(
    request: Request, code: Annotated[str, Form(max_length=100)], pin: Annotated[str | None, Form(max_length=16)] = None
) -> Response:
    screen = screen_of(request)
    result = screen.gate.check(screen.setup(), code, pin or None, screen.clock())
    return _outcome(request, result)


@router.post("/check-in/scan")
async def scan(request: Request) -> Response:
    screen = screen_of(request)
    if screen.camera is None:
        return render(request, "welcome.html", None, 400, error=MESSAGES["no_scan"])
    text = await asyncio.to_thread(screen.camera.scan_code)
    if not text:
        return render(request, "welcome.html", None, 400, error=MESSAGES["no_scan"])
    return _outcome(request, screen.gate.check(screen.setup(), text, None, screen.clock()))


def _outcome(request: Request, result: CheckInResult) -> Response:
    screen = screen_of(request)
    if result.outcome == "ok":
        visit = screen.begin_visit(result.code, pick_language(request.cookies.get(LANG_COOKIE)))
        response = redirect("/home")
        set_visit_cookie(response, visit)
        return response
    if result.outcome in ("need_pin", "wrong_pin"):
        error = MESSAGES["wrong_pin"] if result.outcome == "wrong_pin" else None
        return render(request, "pin.html", None, 200 if error is None else 400, code=result.code, error=error)
    return render(request, "welcome.html", None, 400, error=MESSAGES[result.outcome])
