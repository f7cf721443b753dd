"""What every page shares: rendering in the visit's language, the visit cookie, and the origin check."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from babel.dates import format_datetime
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from device.screen.i18n import DEFAULT_LANGUAGE, LANGUAGES, pick_language, translations
from device.screen.screen import Screen
from device.screen.steps import CODE_NAMES, UNITS
from device.screen.visit import Visit

COOKIE = "__Host-visit"
LANG_COOKIE = "__Host-lang"
# Sent whenever a visit ends: the browser drops this site's cookies, storage and cache.
CLEAR_SITE_DATA = '"cache", "cookies", "storage"'


@cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = lambda ts: format_datetime(
        datetime.fromtimestamp(ts).astimezone(), "d MMM y, HH:mm", locale=language
    )
    gettext = translations(language).gettext

    def code_name(code: str) -> str:
        return gettext(CODE_NAMES.get(code, code))

    env.globals["code_name"] = code_name
    # Every name the live script may need: a device sends more than its step asks for (a cuff's mean pressure).
    env.globals["code_names"] = lambda: [(code, code_name(code)) for code in CODE_NAMES]
    env.globals["unit_label"] = lambda unit: UNITS.get(unit, unit)
    env.globals["languages"] = LANGUAGES
    return env


def screen_of(request: Request) -> Screen:
    screen: Screen = request.app.state.screen
    return screen


def form_shown(request: Request, form: Literal["vitals", "case"]) -> None:
    """The page a provider asked for during a call is served: their request is done."""
    consults = screen_of(request).consults
    if consults is not None:
        consults.form_shown(form)


def visit_of(request: Request) -> Visit | None:
    screen = screen_of(request)
    return screen.desk.current(request.cookies.get(COOKIE), screen.clock())


def require_visit(request: Request) -> Visit:
    """The checked-in patient's visit; anyone else goes back to the welcome screen."""
    visit = visit_of(request)
    if visit is None:
        raise HTTPException(303, headers={"Location": "/?ended=1"})
    visit.touch(screen_of(request).clock())
    return visit


def language_of(request: Request, visit: Visit | None) -> str:
    """The visit's language; without a visit, the one the page asked for (a goodbye, whose redirect cleared the
    browser's cookies, says `?lang=`), else the language cookie."""
    if visit:
        return visit.language
    return pick_language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def render(
    request: Request, template: str, visit: Visit | None = None, status: int = 200, **context: Any
) -> HTMLResponse:
    screen = screen_of(request)
    language = language_of(request, visit)
    html = (
        environment(language)
        .get_template(template)
        .render(
            request=request,
            visit=visit,
            lang=language,
            clinic=screen.clinic_name(),
            online=screen.connected(),
            camera=screen.camera is not None,
            in_call=_in_call(screen, visit),
            idle_s=screen.desk.policy.idle_s,
            warn_s=screen.desk.policy.warn_s,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _in_call(screen: Screen, visit: Visit | None) -> bool:
    consult = screen.consults.current if screen.consults is not None else None
    return bool(visit and consult and consult.subject == visit.subject and consult.phase in ("connecting", "live"))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def set_visit_cookie(response: Response, visit: Visit) -> None:
    # Session cookie (no Max-Age): gone with the in-memory browser profile, and cleared at every visit's end.
    response.set_cookie(COOKIE, visit.token, httponly=True, secure=True, samesite="strict", path="/")


def cleared(response: Response) -> Response:
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


__all__ = ["DEFAULT_LANGUAGE", "LANG_COOKIE"]
