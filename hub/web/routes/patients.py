"""Patient list, the patient page (trends and raw readings), its JSON for the charts, the CSV export,
the patient's kiosk PIN and their printable check-in card.

Every handler reads through the principal's clinic: a patient id from another clinic is
"not found", exactly like an id that does not exist. Every view and export is audited.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

import segno
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from hub import attribution, audit, kiosk_setup, patients, review
from hub.accounts import users
from hub.db import Connection
from hub.review import TimeRange
from hub.web.actions import perform
from hub.web.security import Principal, require_admin, require_user, workspace
from hub.web.templating import TEMPLATES
from hub.web.units import unit_label
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]
PAGE = 50
RANGES = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}


@router.get("/", response_class=HTMLResponse)
def home(principal: User_) -> Response:
    return RedirectResponse("/patients", status_code=303)


@router.get("/patients", response_class=HTMLResponse)
def patient_list(
    request: Request,
    principal: User_,
    ws: Ws,
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
) -> Response:
    conn = ws.conn()
    found = patients.search(conn, principal.clinic_id, q, offset=(page - 1) * PAGE, limit=PAGE + 1)
    with ws.write() as w:
        audit.record(w, principal.actor, "view_patient_list", ws.now(), detail={"page": page, "searched": bool(q)})
    return TEMPLATES.TemplateResponse(
        request,
        "patients.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "patients": found[:PAGE],
            "q": q,
            "page": page,
            "more": len(found) > PAGE,
            "total": patients.count(conn, principal.clinic_id),
            "queue_size": attribution.queue_size(conn, principal.clinic_id),
            "error": request.query_params.get("error"),
        },
    )


@router.post("/patients")
def create_patient(
    principal: Admin,
    ws: Ws,
    code: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=200)],
    birth_date: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    now = ws.now()
    try:
        with ws.write() as conn:
            patient_id = patients.create(
                conn, principal.clinic_id, code=code, name=name, birth_date=birth_date or None, now=now
            )
            requeued = attribution.reconsider_code(conn, principal.clinic_id, code)
            audit.record(
                conn, principal.actor, "create_patient", now, patient_id=patient_id, detail={"requeued": requeued}
            )
    except patients.PatientError as exc:
        return RedirectResponse(f"/patients?error={str(exc)[:200]}", status_code=303)
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


def _range(
    range_: str | None, since: datetime | None, until: datetime | None, now: float
) -> tuple[TimeRange, str | None]:
    since, until = _utc(since), _utc(until)
    if since is not None or until is not None:
        end = until or datetime.fromtimestamp(now, UTC)
        start = since or end - timedelta(days=30)
        if start >= end:
            raise HTTPException(422, "`since` must be before `until`")
        return TimeRange(start, end), None
    key = range_ if range_ in RANGES else "30d"
    return TimeRange.last(RANGES[key], datetime.fromtimestamp(now, UTC)), key


def patient_or_404(ws: Workspace, principal: Principal, patient_id: str) -> patients.Patient:
    """The clinic's patient, or 404 exactly as for an id that does not exist (another clinic's included)."""
    patient = patients.get(ws.conn(), principal.clinic_id, patient_id)
    if patient is None:
        raise HTTPException(404, "no such patient")
    return patient


RangeQ = Annotated[str | None, Query(alias="range", pattern=r"^(7d|30d|90d|365d)$")]
Since = Annotated[datetime | None, Query(description="start of the time range (ISO-8601; UTC when no offset)")]
Until = Annotated[datetime | None, Query(description="end of the time range (ISO-8601; UTC when no offset)")]


def _utc(value: datetime | None) -> datetime | None:
    """The range form's datetime-local fields carry no offset; the page says its times are UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(
    request: Request,
    principal: User_,
    ws: Ws,
    patient_id: str,
    range_: RangeQ = None,
    since: Since = None,
    until: Until = None,
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    rng, preset = _range(range_, since, until, ws.now())
    rows = review.readings(ws.conn(), principal.clinic_id, patient.id, rng, limit=PAGE + 1, offset=(page - 1) * PAGE)
    query = f"since={rng.since.isoformat()}&until={rng.until.isoformat()}".replace("+", "%2B")
    with ws.write() as w:
        audit.record(
            w, principal.actor, "view_patient", ws.now(), patient_id=patient.id, detail={"since": rng.since.isoformat()}
        )
    return TEMPLATES.TemplateResponse(
        request,
        "patient.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "patient": patient,
            "readings": rows[:PAGE],
            "more": len(rows) > PAGE,
            "page": page,
            "preset": preset,
            "presets": list(RANGES),
            "rng": rng,
            "query": query,
            "refresh_s": ws.settings.chart_refresh_s,
            "error": request.query_params.get("error"),
            "slots": [
                {**slot, "device": json.loads(str(slot["device"]))}
                for slot in attribution.slots_of(ws.conn(), principal.clinic_id, patient.id)
            ],
        },
    )


@router.post("/patients/{patient_id}/slots/unmap")
def unmap_slot(
    principal: User_,
    ws: Ws,
    patient_id: str,
    device_id: Annotated[str, Form(max_length=128)],
    device_user: Annotated[int, Form(ge=0, le=254)],
) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    now = ws.now()
    with ws.write() as w:
        if not attribution.unmap_slot(w, principal.clinic_id, patient.id, device_id, device_user):
            raise HTTPException(404, "that device slot is not mapped to this patient")
        detail = {"device_id": device_id, "device_user": device_user}
        audit.record(w, principal.actor, "unmap_device_slot", now, patient_id=patient.id, detail=detail)
    return RedirectResponse(f"/patients/{patient.id}", status_code=303)


@router.post("/patients/{patient_id}/kiosk-pin")
def set_kiosk_pin(principal: User_, ws: Ws, patient_id: str, pin: Annotated[str, Form(max_length=64)] = "") -> Response:
    """The PIN is hashed before the write transaction and goes no further: not in the audit log, not in a redirect."""
    patient = patient_or_404(ws, principal, patient_id)
    back = f"/patients/{patient.id}"
    try:
        pin_hash = kiosk_setup.hash_pin(pin)
    except kiosk_setup.PinError as exc:
        return RedirectResponse(f"{back}?error={quote(str(exc))}", status_code=303)
    return _pin_step(ws, principal, patient, "set_kiosk_pin", pin_hash)


@router.post("/patients/{patient_id}/kiosk-pin/clear")
def clear_kiosk_pin(principal: User_, ws: Ws, patient_id: str) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    return _pin_step(ws, principal, patient, "clear_kiosk_pin", None)


def _pin_step(
    ws: Workspace, principal: Principal, patient: patients.Patient, action: str, pin_hash: str | None
) -> Response:
    def run(w: Connection, now: float) -> str | None:
        kiosk_setup.set_pin(w, principal.clinic_id, patient.id, pin_hash, now)
        return patient.id

    return perform(ws, principal, action=action, target="kiosk_pin", run=run, back=f"/patients/{patient.id}", errors=())


def card_qr(code: str) -> segno.QRCode:
    """The check-in code as a full QR code, never a Micro QR (segno's choice for short text): the kiosk camera
    (OpenCV) and most handheld scanners read only full QR. Error correction M survives a worn or creased card."""
    return segno.make_qr(code, error="m")


def _code_svg(code: str) -> str:
    return card_qr(code).svg_inline(scale=6, dark="#000", light="#fff")


@router.get("/patients/{patient_id}/card", response_class=HTMLResponse)
def checkin_card(request: Request, principal: User_, ws: Ws, patient_id: str) -> Response:
    """A printable card: the clinic, the patient's check-in code in large type and as a QR code for a scanner."""
    patient = patient_or_404(ws, principal, patient_id)
    with ws.write() as w:
        audit.record(w, principal.actor, "view_checkin_card", ws.now(), patient_id=patient.id)
    return TEMPLATES.TemplateResponse(
        request,
        "checkin_card.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "patient": patient,
            "clinic_name": users.clinic_name(ws.conn(), principal.clinic_id) or principal.clinic_id,
            "qr_svg": _code_svg(patient.code),
        },
    )


@router.get("/patients/{patient_id}/trends.json")
def patient_trends(
    principal: User_, ws: Ws, patient_id: str, range_: RangeQ = None, since: Since = None, until: Until = None
) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    now = ws.now()
    rng, _ = _range(range_, since, until, now)
    data = review.trends(ws.conn(), principal.clinic_id, patient.id, rng)
    for chart in data["charts"]:  # `unit` stays UCUM for programs; the chart shows what people write
        chart["unit_label"] = unit_label(chart["unit"])
    # Charts refresh every few seconds: one audit entry per session and patient per `audit_refresh_s`.
    window_start = now - ws.settings.audit_refresh_s
    target = principal.session.id[:12]
    if not audit.viewed_trends_since(ws.conn(), principal.user.id, patient.id, target, window_start):
        with ws.write() as w:
            audit.record(w, principal.actor, "view_trends", now, patient_id=patient.id, target=target)
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/patients/{patient_id}/readings.csv")
def export_readings(
    principal: User_, ws: Ws, patient_id: str, range_: RangeQ = None, since: Since = None, until: Until = None
) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    now = ws.now()
    rng, _ = _range(range_, since, until, now)
    rows = review.readings(ws.conn(), principal.clinic_id, patient.id, rng, limit=1_000_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["effective_utc", "effective_corrected_utc", "loinc", "name", "value", "ucum", "unit", "device", "device_type",
         "device_user", "device_clock_offset_s", "kiosk", "kiosk_clock_offset_ms", "method", "quality",
         "flags", "attribution", "message_id", "index"]
    )  # fmt: skip
    for r in rows:
        writer.writerow(
            [r["effective"], r["corrected"], r["code"], r["name"], r["value"], r["unit"], unit_label(r["unit"]),
             json.dumps(r["device"]),
             r["device"].get("type"), r["device_user"], r["device_clock_offset_s"], r["kiosk"], r["clock_offset_ms"],
             r["method"], r["quality"], " ".join(r["flags"]), r["attribution_how"], r["message_id"], r["idx"]]
        )  # fmt: skip
    with ws.write() as w:
        audit.record(w, principal.actor, "export_readings", now, patient_id=patient.id, detail={"rows": len(rows)})
    filename = f"readings-{patient.code}-{rng.since.date()}-{rng.until.date()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
