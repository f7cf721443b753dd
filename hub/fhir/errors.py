"""Every error under /fhir as an OperationOutcome, whoever raises it.

The routes raise FhirError; the token check (hub/api/auth.py), FastAPI's parameter validation and the router's
own 404/405 raise theirs before a route runs, so the app's exception handlers hand anything under /fhir to
`for_http_error` and `for_validation_error` here. A FHIR client then parses one shape for every failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse
from starlette.requests import Request

FHIR_JSON = "application/fhir+json"

# HTTP status -> the OperationOutcome issue type (the required IssueType value set).
_ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                406: "not-supported", 409: "conflict", 413: "too-costly", 422: "invalid", 429: "throttled"}  # fmt: skip


class FhirError(Exception):
    def __init__(self, status: int, code: str, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def is_fhir(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def operation_outcome(code: str, text: str, *, expression: Sequence[str] = ()) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome(exc: Exception) -> JSONResponse:
    """A route's own error: a FhirError, or a search the parameters make impossible (400)."""
    if isinstance(exc, FhirError):
        status, code, text = exc.status, exc.code, exc.text
    else:
        status, code, text = 400, str(getattr(exc, "code", "invalid")), str(exc)
    return JSONResponse(operation_outcome(code, text), status_code=status, media_type=FHIR_JSON)


def for_http_error(request: Request, status: int, detail: Any, headers: Mapping[str, str] | None) -> JSONResponse:
    code = _ISSUE_TYPES.get(status, "exception" if status >= 500 else "processing")
    text = str(detail)
    if status == 404 and text == "Not Found":
        first = request.url.path.removeprefix("/fhir/").split("/", 1)[0]
        code, text = (
            "not-supported",
            f"this server has no {first or 'such'} endpoint; GET /fhir/metadata lists what it serves",
        )
    return JSONResponse(operation_outcome(code, text), status_code=status, media_type=FHIR_JSON, headers=headers)


def for_validation_error(errors: Sequence[Any]) -> JSONResponse:
    """FastAPI's 422 for a malformed parameter: a FHIR client expects 400 and an OperationOutcome."""
    issues = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "query")
        issue: dict[str, Any] = {
            "severity": "error",
            "code": "invalid",
            "diagnostics": f"{where or 'request'}: {e.get('msg', 'invalid')}",
        }
        if where:
            issue["expression"] = [where]
        issues.append(issue)
    body = {"resourceType": "OperationOutcome", "issue": issues}
    if not issues:
        body = operation_outcome("invalid", "invalid request")
    return JSONResponse(body, status_code=400, media_type=FHIR_JSON)
