"""The hub's web application: health probes, the JSON API, the provider workspace pages, and the two
live-consult WebSockets.

Every route needs a logged-in person (pages) or an API token (JSON API), except the short
list in EXEMPT_PATHS/EXEMPT_PREFIXES: health probes, the API's own documentation and the FHIR
CapabilityStatement (no data; a FHIR client reads it before it authenticates), the login steps and
static files. A test enumerates the routes and holds the app to that.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub import __version__, metrics
from hub.accounts import passwords
from hub.api.auth import TokenPrincipal, require_scope
from hub.api.routes import api_router
from hub.api.schemas import Health
from hub.consults.relay import Relay
from hub.db import DatabaseError, Location
from hub.fhir import errors as fhir_errors
from hub.fhir import routes as fhir_routes
from hub.web.routes import admin, cases, consults, fleet, login, patients, queue, rpm, signaling, triage
from hub.web.security import LoginRequired
from hub.web.templating import TEMPLATES
from hub.workspace import WebSettings, Workspace

EXEMPT_PATHS = frozenset({
    "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/fhir/metadata", "/login", "/login/totp",
})  # fmt: skip
EXEMPT_PREFIXES = ("/static/",)
# The WebSockets (/ws/kiosk, /ws/consults/{id}) are not exempt, and no middleware authenticates here: every
# HTTP route authenticates through its dependencies (require_user, require_scope), and a WebSocket cannot
# use those (no redirect, no 401 body to send). So each socket authenticates itself before reading anything:
# the kiosk's with its own bearer credential (a device has no session, and the API's tokens are for other
# systems, not devices), the provider's with the session cookie and this site's Origin. Refused sockets
# close with 4401/4403/4404 (hub/web/routes/signaling.py); a test enumerates the app's WebSocket routes and
# tries each without credentials. SecurityHeaders below passes WebSocket scopes through untouched.

_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# The docs page loads Swagger UI from a CDN and runs an inline script: it gets a looser policy.
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com"
)


class SecurityHeaders:
    """Adds CSP and friends to every response, `no-store` to everything that is not a static file, and HSTS
    when the hub serves HTTPS itself (behind a TLS proxy, the proxy sends it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"content-security-policy"]
                for name, value in _SECURITY_HEADERS:
                    docs = name == b"content-security-policy" and path.startswith("/docs")
                    headers.append((name, _DOCS_CSP if docs else value))
                if not path.startswith("/static/") and not any(h[0].lower() == b"cache-control" for h in headers):
                    headers.append((b"cache-control", b"no-store"))
                if scope.get("scheme") == "https":
                    # Served over TLS: browsers must never again try this hub over plain HTTP (a year).
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")


def create_app(
    db_path: str | Path | Location,
    *,
    broker_ready: Callable[[], bool] = lambda: True,
    store_problem: Callable[[], str | None] | None = None,
    settings: WebSettings | None = None,
    clock: Callable[[], float] = time.time,
    instance: str | None = None,
) -> FastAPI:
    """`broker_ready`: ingest is connected and subscribed. `store_problem`: why the hub cannot store what it
    receives ("cannot commit: database or disk is full since ..."), None while it can; not given (an app without
    ingest): no such check."""
    ws = Workspace(db_path, settings, clock)
    passwords.warm()  # the first login for an unknown email must cost what the others do
    relay = Relay(ws)  # on PostgreSQL it listens for the other instances at once (a thread, a connection)
    try:
        relay.end_orphans()  # consults a previous run left waiting or live died with its sockets (not others')
    except BaseException:
        relay.stop()
        raise

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # The sockets have closed with the server by now. Pending "the provider never connected" timers, and on
        # PostgreSQL the listening connection: its lock goes with it, so the other instances sweep what is left.
        relay.stop()

    app = FastAPI(
        title="Telehealth hub",
        version=__version__,
        description="Kiosk data forwarded over MQTT. The JSON API needs `Authorization: Bearer <token>` "
        "(`hub token create`); the provider workspace pages need a login.",
        redoc_url=None,  # one documentation page is enough, and one less exempt path
        lifespan=lifespan,
    )
    app.state.workspace = ws
    app.state.consult_relay = relay

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def readyz(response: Response) -> Health:
        """The database answers, the hub can store (ingest's commits succeed) and ingest is connected to the broker.

        Each check that fails says why, e.g. `"store": "cannot commit: database or disk is full since ..."`;
        it turns back to "ok" by itself once a commit succeeds again.
        """
        checks = {}
        try:
            ws.reader().ping()
            checks["database"] = "ok"
        except DatabaseError as exc:
            checks["database"] = f"error: {type(exc).__name__}: {exc}"
        if store_problem is not None:
            checks["store"] = store_problem() or "ok"
        checks["broker"] = "ok" if broker_ready() else "not connected"
        ok = all(v == "ok" for v in checks.values())
        if not ok:
            response.status_code = 503
        return Health(status="ok" if ok else "unavailable", checks=checks)

    registry, app.state.metrics = metrics.build_registry(ws, instance=instance)

    @app.get(
        "/api/v1/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}, 403: {}},
    )
    def prometheus_metrics(token: Annotated[TokenPrincipal, Depends(require_scope("metrics:read"))]) -> Response:
        """The hub's metrics in Prometheus' text format (hub/metrics.py): ingest, dead letters, kiosks, work waiting.

        No health data, but the whole fleet's shape: an operator token (no clinic) with `metrics:read`.
        """
        if token.clinic_id is not None:
            raise HTTPException(403, "metrics describe the whole hub: they need an operator token (no clinic)")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api_router())
    app.include_router(fhir_routes.router)
    for module in (login, patients, queue, triage, consults, cases, rpm, fleet, admin, signaling):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and _wants_html(request):
            return RedirectResponse(exc.next_path, status_code=303)
        return JSONResponse({"detail": "log in first"}, status_code=401)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if fhir_errors.is_fhir(request):  # an OperationOutcome, for FHIR clients, whatever the error
            return fhir_errors.for_http_error(request, exc.status_code, exc.detail, exc.headers)
        if _wants_html(request) and exc.status_code in (400, 401, 403, 404, 409, 422, 429):
            context: dict[str, Any] = {"status": exc.status_code, "detail": exc.detail, "user": None}
            return TEMPLATES.TemplateResponse(request, "error.html", context, status_code=exc.status_code)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if fhir_errors.is_fhir(request):
            return fhir_errors.for_validation_error(exc.errors())
        return await request_validation_exception_handler(request, exc)

    app.add_middleware(SecurityHeaders)
    return app
