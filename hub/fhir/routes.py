"""FHIR R4 REST (`/fhir`): Patient, Observation, Device, QuestionnaireResponse, and a clinic's bulk export.

Clients authenticate with an API token that has the `fhir:read` scope and belongs to a
clinic; everything they can reach is that clinic's, and every search, read and export is
audited like a page view. Errors come back as OperationOutcome resources.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from device.protocol.envelope import utc_iso
from hub import audit
from hub.api.auth import TokenPrincipal, require_scope
from hub.cases import questionnaire
from hub.cases import store as case_store
from hub.fhir import resources as fr
from hub.review import corrected_seconds
from hub.workspace import Workspace, from_request

FHIR_JSON = "application/fhir+json"
router = APIRouter(prefix="/fhir", tags=["FHIR R4"])
Ws = Annotated[Workspace, Depends(from_request)]
Fhir = Annotated[TokenPrincipal, Depends(require_scope("fhir:read"))]


class FhirError(Exception):
    def __init__(self, status: int, code: str, text: str) -> None:
        self.status, self.code, self.text = status, code, text


def outcome(exc: FhirError) -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": exc.code, "diagnostics": exc.text}],
    }
    return JSONResponse(body, status_code=exc.status, media_type=FHIR_JSON)


def _fhir(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type=FHIR_JSON)


def _clinic(token: TokenPrincipal) -> str:
    if token.clinic_id is None:
        raise FhirError(403, "forbidden", "FHIR access needs a clinic's token: an operator token sees no patients")
    return token.clinic_id


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


# -- rows ----------------------------------------------------------------------------------------

_OBS_COLUMNS = [
    "message_id", "idx", "kiosk", "code", "value", "unit", "effective", "clock_offset_ms", "device",
    "device_clock_offset_s", "method", "patient_id",
]  # fmt: skip


def _observation_rows(
    conn: sqlite3.Connection, clinic_id: str, where: str, params: list[Any], *, limit: int, offset: int
) -> list[dict[str, Any]]:
    cur = conn.execute(
        f"SELECT {', '.join(_OBS_COLUMNS)} FROM observations WHERE clinic_id = ? AND attribution = 'attributed' "
        f"{where} ORDER BY effective, message_id, idx LIMIT ? OFFSET ?",
        [clinic_id, *params, limit, offset],
    )
    rows = []
    for row in cur:
        r = dict(zip(_OBS_COLUMNS, row, strict=True))
        r["device"] = json.loads(r["device"])
        r["corrected"] = utc_iso(datetime.fromtimestamp(corrected_seconds(r["effective"], r["clock_offset_ms"]), UTC))
        rows.append(r)
    return rows


def _patient_ref(value: str) -> str:
    return fr.patient_hub_id(value)


def _codes(values: list[str]) -> list[str]:
    codes: list[str] = []
    for value in values:
        for token in value.split(","):
            system, bar, code = token.rpartition("|")
            if bar and system not in (fr.LOINC, ""):
                raise FhirError(400, "not-supported", f"code system {system!r}: only {fr.LOINC} is searchable")
            codes.extend(list(fr.BP_PARTS) if code == fr.BP_PANEL else [code])
    return codes


_PREFIXES = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _dates(values: list[str]) -> tuple[str, list[Any]]:
    where, params = "", []
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise FhirError(
                400, "invalid", f"date {value!r}: use a prefix (ge, gt, le, lt) and an ISO-8601 date"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if prefix == "eq":
            raise FhirError(400, "not-supported", "date needs a prefix: ge, gt, le or lt")
        where += f" AND effective {_PREFIXES[prefix]} ?"
        params.append(utc_iso(when))
    return where, params


def _record(ws: Workspace, token: TokenPrincipal, action: str, *, patient_id: str | None = None,
            detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    with ws.write() as w:
        audit.record(w, token.actor, action, ws.now(), patient_id=patient_id, detail=detail)


# -- Patient -------------------------------------------------------------------------------------

_PATIENT_COLUMNS = ["id", "clinic_id", "code", "name", "birth_date"]


def _patients(
    conn: sqlite3.Connection, clinic_id: str, where: str, params: list[Any], limit: int = 1000
) -> list[dict[str, Any]]:
    cur = conn.execute(
        f"SELECT {', '.join(_PATIENT_COLUMNS)} FROM patients WHERE clinic_id = ? {where} ORDER BY name, id LIMIT ?",
        [clinic_id, *params, limit],
    )
    return [dict(zip(_PATIENT_COLUMNS, r, strict=True)) for r in cur]


@router.get("/Patient")
def search_patients(
    request: Request,
    token: Fhir,
    ws: Ws,
    _id: Annotated[str | None, Query(alias="_id", max_length=64)] = None,
    identifier: Annotated[str | None, Query(max_length=200, description="[system|]check-in code")] = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Search the clinic's patients by id, identifier (the kiosk check-in code) or name (contains)."""
    try:
        clinic_id = _clinic(token)
        where, params = "", []
        if _id:
            where += " AND id = ?"
            params.append(fr.patient_hub_id(_id))
        if identifier:
            where += " AND code = ?"
            params.append(identifier.rpartition("|")[2])
        if name:
            where += " AND name LIKE ?"
            params.append(f"%{name}%")
        found = [fr.patient(p) for p in _patients(ws.conn(), clinic_id, where, params)]
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_search_patient", detail={"results": len(found)})
    return _fhir(fr.bundle(found, _base(request)))


@router.get("/Patient/{patient_id}")
def read_patient(token: Fhir, ws: Ws, patient_id: str) -> Response:
    try:
        patient_id = fr.patient_hub_id(patient_id)
        found = _patients(ws.conn(), _clinic(token), " AND id = ?", [patient_id])
        if not found:
            raise FhirError(404, "not-found", "no such Patient")
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_read_patient", patient_id=patient_id)
    return _fhir(fr.patient(found[0]))


# -- Observation ---------------------------------------------------------------------------------


@router.get("/Observation")
def search_observations(
    request: Request,
    token: Fhir,
    ws: Ws,
    patient: Annotated[str | None, Query(max_length=80, description="Patient/<id> or <id>")] = None,
    code: Annotated[list[str] | None, Query(description="[http://loinc.org|]code, comma-separated for any")] = None,
    date: Annotated[list[str] | None, Query(description="ge/gt/le/lt + ISO-8601, repeatable")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=10_000_000)] = 0,
) -> Response:
    """The clinic's readings as Observations (blood pressure as one panel with components), oldest first."""
    try:
        clinic_id = _clinic(token)
        where, params = "", []
        if patient:
            where += " AND patient_id = ?"
            params.append(_patient_ref(patient))
        if code:
            codes = _codes(code)
            where += f" AND code IN ({','.join('?' * len(codes))})"
            params += codes
        date_where, date_params = _dates(date or [])
        rows = _observation_rows(
            ws.conn(), clinic_id, where + date_where, params + date_params, limit=count + 1, offset=offset
        )
    except FhirError as exc:
        return outcome(exc)
    more = len(rows) > count
    found = [fr.observation(g, clinic_id) for g in fr.group_blood_pressure(rows[:count])]
    patient_id = _patient_ref(patient) if patient else None
    _record(ws, token, "fhir_search_observation", patient_id=patient_id, detail={"results": len(found)})
    body = fr.bundle(found, _base(request))
    if more:
        nxt = request.url.include_query_params(_offset=offset + count)
        body["link"] = [{"relation": "next", "url": str(nxt)}]
    return _fhir(body)


@router.get("/Observation/{observation_id}")
def read_observation(token: Fhir, ws: Ws, observation_id: str) -> Response:
    try:
        clinic_id = _clinic(token)
        head, _, idx = observation_id.removeprefix("obs-").rpartition("-")
        if not observation_id.startswith("obs-") or not idx.isdigit():
            raise FhirError(404, "not-found", "no such Observation")
        rows = _observation_rows(ws.conn(), clinic_id, " AND message_id = ?", [head], limit=1000, offset=0)
        first = [r for r in rows if r["idx"] == int(idx)]
        if not first:
            raise FhirError(404, "not-found", "no such Observation")
        group = next(g for g in fr.group_blood_pressure(rows) if g[0]["idx"] == first[0]["idx"] or first[0] in g)
        if group[0]["idx"] != int(idx):
            raise FhirError(
                404, "not-found", f"that reading is part of Observation {fr.observation_id(head, group[0]['idx'])}"
            )
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_read_observation", patient_id=group[0]["patient_id"])
    return _fhir(fr.observation(group, clinic_id))


# -- Device --------------------------------------------------------------------------------------


def _devices(conn: sqlite3.Connection, clinic_id: str, patient_id: str | None) -> list[dict[str, Any]]:
    where, params = "clinic_id = ? AND attribution = 'attributed'", [clinic_id]
    if patient_id:
        where += " AND patient_id = ?"
        params.append(patient_id)
    seen: dict[str, dict[str, Any]] = {}
    kiosks: set[str] = set()
    for device_json, kiosk in conn.execute(f"SELECT DISTINCT device, kiosk FROM observations WHERE {where}", params):
        dev = json.loads(device_json)
        seen.setdefault(str(dev["id"]), dev)
        kiosks.add(kiosk)
    out = [fr.device(clinic_id, d) for _, d in sorted(seen.items())]
    return out + [fr.gateway(k) for k in sorted(kiosks)]


@router.get("/Device")
def search_devices(
    request: Request,
    token: Fhir,
    ws: Ws,
    patient: Annotated[str | None, Query(max_length=80, description="devices that measured this patient")] = None,
) -> Response:
    """Measuring devices and the kiosks (gateways) that forwarded their readings."""
    try:
        found = _devices(ws.conn(), _clinic(token), _patient_ref(patient) if patient else None)
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_search_device", patient_id=_patient_ref(patient) if patient else None)
    return _fhir(fr.bundle(found, _base(request)))


# -- QuestionnaireResponse (asynchronous cases) ----------------------------------------------------


def _responses(
    conn: sqlite3.Connection, clinic_id: str, patient_id: str | None, case_id: str | None = None
) -> list[dict[str, Any]]:
    where, params = "clinic_id = ? AND patient_id IS NOT NULL", [clinic_id]
    if patient_id:
        where += " AND patient_id = ?"
        params.append(patient_id)
    if case_id:
        where += " AND id = ?"
        params.append(case_id)
    out = []
    for (cid,) in conn.execute(f"SELECT id FROM cases WHERE {where} ORDER BY received_at", params).fetchall():
        case = case_store.get(conn, clinic_id, cid)
        assert case is not None
        q = questionnaire.lookup(conn, clinic_id, case["questionnaire_id"], case["questionnaire_version"])
        texts = {i.link_id: i.text for i in q.items} if q else {}
        out.append(fr.questionnaire_response(case, texts))
    return out


@router.get("/QuestionnaireResponse")
def search_responses(
    request: Request,
    token: Fhir,
    ws: Ws,
    patient: Annotated[str | None, Query(max_length=80, description="Patient/<id> or <id>")] = None,
) -> Response:
    """Asynchronous cases as QuestionnaireResponses (answers, the patient's words, photo ids)."""
    try:
        found = _responses(ws.conn(), _clinic(token), _patient_ref(patient) if patient else None)
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_search_questionnaire_response", patient_id=_patient_ref(patient) if patient else None)
    return _fhir(fr.bundle(found, _base(request)))


@router.get("/QuestionnaireResponse/{response_id}")
def read_response(token: Fhir, ws: Ws, response_id: str) -> Response:
    try:
        found = _responses(ws.conn(), _clinic(token), None, response_id.removeprefix("case-"))
        if not found or not response_id.startswith("case-"):
            raise FhirError(404, "not-found", "no such QuestionnaireResponse")
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_read_questionnaire_response")
    return _fhir(found[0])


# -- bulk export ---------------------------------------------------------------------------------


@router.get("/$export", responses={200: {"content": {"application/fhir+ndjson": {}}}})
def export(token: Fhir, ws: Ws) -> Response:
    """Everything of the clinic, one resource per line (NDJSON): Patients, Devices, then Observations.

    Synchronous, streamed: the FHIR Bulk Data kick-off/poll protocol is not implemented.
    """
    try:
        clinic_id = _clinic(token)
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_export", detail={"clinic": clinic_id})
    conn = ws.conn()

    def lines() -> Iterator[bytes]:
        for p in _patients(conn, clinic_id, "", [], limit=10_000_000):
            yield json.dumps(fr.patient(p)).encode() + b"\n"
        for d in _devices(conn, clinic_id, None):
            yield json.dumps(d).encode() + b"\n"
        for r in _responses(conn, clinic_id, None):
            yield json.dumps(r).encode() + b"\n"
        offset = 0
        while rows := _observation_rows(conn, clinic_id, "", [], limit=5000, offset=offset):
            offset += len(rows)
            # A panel split across two pages is completed from the next page's start.
            while rows[-1]["code"] in fr.BP_PARTS:
                extra = _observation_rows(conn, clinic_id, "", [], limit=1, offset=offset)
                if not extra or extra[0]["message_id"] != rows[-1]["message_id"]:
                    break
                rows += extra
                offset += 1
            for group in fr.group_blood_pressure(rows):
                yield json.dumps(fr.observation(group, clinic_id)).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/fhir+ndjson")
