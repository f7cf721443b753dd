"""FHIR R4 REST (`/fhir`): Patient, Observation, Device, QuestionnaireResponse, a clinic's bulk export, and
the CapabilityStatement (`/fhir/metadata`) that declares all of it.

Clients authenticate with an API token that has the `fhir:read` scope and belongs to a
clinic; everything they can reach is that clinic's, and every search, read and export is
audited like a page view. Every error under /fhir is an OperationOutcome (hub/fhir/errors.py,
installed on the app for the auth and validation errors raised before a route runs).

Searches page by resources, not stored rows: a blood-pressure panel is one Observation made of
several readings, so a page of `_count` Observations never splits one, and `Bundle.total` counts
every match. Observations are ordered and searched by their measurement time on the hub's clock
(`observations.measured_ms`), the time their `effectiveDateTime` shows. A search parameter the
server does not know is refused, not ignored: ignoring `subjct=` would answer with every patient.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from hub import audit
from hub.api.auth import TokenPrincipal, require_scope
from hub.cases import questionnaire
from hub.cases import store as case_store
from hub.db import Connection
from hub.fhir import capability, search, store
from hub.fhir import resources as fr
from hub.fhir.errors import FHIR_JSON, FhirError, outcome
from hub.web.security import refuse_nul
from hub.workspace import Workspace, from_request

router = APIRouter(prefix="/fhir", tags=["FHIR R4"], dependencies=[Depends(refuse_nul)])
Ws = Annotated[Workspace, Depends(from_request)]
Fhir = Annotated[TokenPrincipal, Depends(require_scope("fhir:read"))]
Count = Annotated[
    int | None, Query(alias="_count", description=f"page size, 0 for the total only (at most {search.MAX_COUNT})")
]
Offset = Annotated[
    int, Query(alias="_offset", ge=0, le=10_000_000, description="matches to skip (the next link sets it)")
]
PatientParam = Annotated[str | None, Query(max_length=80, description="Patient/<id> or <id>")]
PAGING = frozenset({"_count", "_offset", "_format"})


def _fhir(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type=FHIR_JSON)


def _clinic(token: TokenPrincipal) -> str:
    if token.clinic_id is None:
        raise FhirError(403, "forbidden", "FHIR access needs a clinic's token: an operator token sees no patients")
    return token.clinic_id


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _known_params(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed - PAGING)
    if unknown:
        takes = ", ".join(sorted(allowed | PAGING))
        raise FhirError(
            400, "not-supported", f"unknown search parameter(s) {', '.join(unknown)}; this search takes {takes}"
        )
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt not in ("json", FHIR_JSON, "application/json"):
        raise FhirError(406, "not-supported", f"_format {fmt!r}: this server writes JSON only")


def _page(request: Request, found: list[dict[str, Any]], *, total: int, count: int, offset: int,
          notes: Sequence[str] = ()) -> JSONResponse:  # fmt: skip
    """A searchset page with its links: self, first, previous and next, each a search of the same terms."""
    url = request.url
    links = [("self", str(url)), ("first", str(url.include_query_params(_offset=0)))]
    if offset > 0 and count > 0:
        links.append(("previous", str(url.include_query_params(_offset=max(0, offset - count)))))
    if count > 0 and offset + count < total:
        links.append(("next", str(url.include_query_params(_offset=offset + count))))
    return _fhir(fr.bundle(found, _base(request), total=total, links=links, notes=notes))


def _record(ws: Workspace, token: TokenPrincipal, action: str, *, patient_id: str | None = None,
            detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    with ws.write() as w:
        audit.record(w, token.actor, action, ws.now(), patient_id=patient_id, detail=detail)


def _patient_ref(value: str) -> str:
    return fr.patient_hub_id(value)


# -- capability ----------------------------------------------------------------------------------


@router.get("/metadata")
def metadata(request: Request) -> Response:
    """What this server supports (a CapabilityStatement); public, as FHIR clients ask it before logging in."""
    return _fhir(capability.statement(_base(request)))


@router.get("/Patient")
def search_patients(
    request: Request,
    token: Fhir,
    ws: Ws,
    _id: Annotated[str | None, Query(alias="_id", max_length=64)] = None,
    identifier: Annotated[str | None, Query(max_length=200, description="[system|]check-in code")] = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
    count: Count = None,
    offset: Offset = 0,
) -> Response:
    """Search the clinic's patients by id, identifier (the kiosk check-in code) or name (contains)."""
    try:
        _known_params(request, frozenset({"_id", "identifier", "name"}))
        clinic_id = _clinic(token)
        size, notes = search.count(count)
        matches = store.patients(
            ws.conn(),
            clinic_id,
            patient_id=fr.patient_hub_id(_id) if _id else None,
            code=identifier.rpartition("|")[2] if identifier else None,
            name_contains=name or None,
        )
    except (FhirError, search.SearchError) as exc:
        return outcome(exc)
    found = [fr.patient(p) for p in matches[offset : offset + size]]
    _record(ws, token, "fhir_search_patient", detail={"results": len(found)})
    return _page(request, found, total=len(matches), count=size, offset=offset, notes=notes)


@router.get("/Patient/{patient_id}")
def read_patient(token: Fhir, ws: Ws, patient_id: str) -> Response:
    try:
        patient_id = fr.patient_hub_id(patient_id)
        found = store.patients(ws.conn(), _clinic(token), patient_id=patient_id)
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
    patient: PatientParam = None,
    code: Annotated[list[str] | None, Query(description="[http://loinc.org|]code, comma-separated for any")] = None,
    date: Annotated[list[str] | None, Query(description="[prefix]date: eq ne gt ge lt le sa eb; repeatable")] = None,
    sort: Annotated[str | None, Query(alias="_sort", description="date (oldest first, the default) or -date")] = None,
    count: Count = None,
    offset: Offset = 0,
) -> Response:
    """The clinic's readings as Observations (blood pressure as one panel with components), oldest first."""
    try:
        _known_params(request, frozenset({"patient", "subject", "code", "date", "_sort"}))
        clinic_id = _clinic(token)
        size, notes = search.count(count)
        order = search.sort(sort)
        subject = patient or request.query_params.get("subject")
        patient_id = _patient_ref(subject) if subject else None
        codes = search.codes(code) if code else None
        total, groups = store.observation_page(
            ws.conn(),
            clinic_id,
            patient_id=patient_id,
            codes=codes,
            dates=search.date_filter(date or []),
            count=size,
            offset=offset,
            order=order,
        )
    except (FhirError, search.SearchError) as exc:
        return outcome(exc)
    found = [fr.observation(g, clinic_id) for g in groups]
    _record(ws, token, "fhir_search_observation", patient_id=patient_id, detail={"results": len(found)})
    return _page(request, found, total=total, count=size, offset=offset, notes=notes)


@router.get("/Observation/{observation_id}")
def read_observation(token: Fhir, ws: Ws, observation_id: str) -> Response:
    try:
        clinic_id = _clinic(token)
        head, _, idx = observation_id.removeprefix("obs-").rpartition("-")
        if not observation_id.startswith("obs-") or not idx.isdigit():
            raise FhirError(404, "not-found", "no such Observation")
        groups = fr.group_blood_pressure(store.message_rows(ws.conn(), clinic_id, [head]))
        group = next((g for g in groups if any(r["idx"] == int(idx) for r in g)), None)
        if group is None:
            raise FhirError(404, "not-found", "no such Observation")
        if group[0]["idx"] != int(idx):
            raise FhirError(
                404, "not-found", f"that reading is part of Observation {fr.observation_id(head, group[0]['idx'])}"
            )
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_read_observation", patient_id=group[0]["patient_id"])
    return _fhir(fr.observation(group, clinic_id))


# -- Device --------------------------------------------------------------------------------------


def _devices(conn: Connection, clinic_id: str, patient_id: str | None) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    kiosks: set[str] = set()
    for dev, kiosk in store.devices_and_kiosks(conn, clinic_id, patient_id):
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
    count: Count = None,
    offset: Offset = 0,
) -> Response:
    """Measuring devices and the kiosks (gateways) that forwarded their readings."""
    try:
        _known_params(request, frozenset({"patient"}))
        size, notes = search.count(count)
        matches = _devices(ws.conn(), _clinic(token), _patient_ref(patient) if patient else None)
    except (FhirError, search.SearchError) as exc:
        return outcome(exc)
    _record(ws, token, "fhir_search_device", patient_id=_patient_ref(patient) if patient else None)
    return _page(request, matches[offset : offset + size], total=len(matches), count=size, offset=offset, notes=notes)


@router.get("/Device/{device_id}")
def read_device(token: Fhir, ws: Ws, device_id: str) -> Response:
    try:
        found = [d for d in _devices(ws.conn(), _clinic(token), None) if d["id"] == device_id]
        if not found:
            raise FhirError(404, "not-found", "no such Device")
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_read_device")
    return _fhir(found[0])


# -- QuestionnaireResponse (asynchronous cases) ----------------------------------------------------


def _responses(conn: Connection, clinic_id: str, case_ids: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for cid in case_ids:
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
    patient: PatientParam = None,
    count: Count = None,
    offset: Offset = 0,
) -> Response:
    """Asynchronous cases as QuestionnaireResponses (answers, the patient's words, photo ids)."""
    try:
        _known_params(request, frozenset({"patient"}))
        size, notes = search.count(count)
        clinic_id = _clinic(token)
        ids = store.case_ids(ws.conn(), clinic_id, _patient_ref(patient) if patient else None)
        found = _responses(ws.conn(), clinic_id, ids[offset : offset + size])
    except (FhirError, search.SearchError) as exc:
        return outcome(exc)
    _record(ws, token, "fhir_search_questionnaire_response", patient_id=_patient_ref(patient) if patient else None)
    return _page(request, found, total=len(ids), count=size, offset=offset, notes=notes)


@router.get("/QuestionnaireResponse/{response_id}")
def read_response(token: Fhir, ws: Ws, response_id: str) -> Response:
    try:
        clinic_id = _clinic(token)
        ids = store.case_ids(ws.conn(), clinic_id, None, response_id.removeprefix("case-"))
        if not ids or not response_id.startswith("case-"):
            raise FhirError(404, "not-found", "no such QuestionnaireResponse")
        found = _responses(ws.conn(), clinic_id, ids)
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_read_questionnaire_response")
    return _fhir(found[0])


# -- bulk export ---------------------------------------------------------------------------------


@router.get("/$export", responses={200: {"content": {"application/fhir+ndjson": {}}}})
def export(request: Request, token: Fhir, ws: Ws) -> Response:
    """Everything of the clinic, one resource per line (NDJSON): Patients, Devices, cases, then Observations.

    Synchronous, streamed: the FHIR Bulk Data kick-off/poll protocol is not implemented.
    """
    try:
        _known_params(request, frozenset())
        clinic_id = _clinic(token)
    except FhirError as exc:
        return outcome(exc)
    _record(ws, token, "fhir_export", detail={"clinic": clinic_id})
    conn = ws.conn()

    def lines() -> Iterator[bytes]:
        for p in store.patients(conn, clinic_id):
            yield json.dumps(fr.patient(p)).encode() + b"\n"
        for d in _devices(conn, clinic_id, None):
            yield json.dumps(d).encode() + b"\n"
        for r in _responses(conn, clinic_id, store.case_ids(conn, clinic_id, None)):
            yield json.dumps(r).encode() + b"\n"
        for group in store.all_observation_groups(conn, clinic_id):
            yield json.dumps(fr.observation(group, clinic_id)).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/fhir+ndjson")
