"""The kiosk screen's web app: FastAPI on 127.0.0.1, pages rendered on the server, a little JavaScript.

Every page works with touch, mouse or keyboard alone. Requests that change something must come
from this app's own pages (Origin check; the visit cookie is SameSite=Strict).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from device.screen.routes import case, checkin, visit, vitals
from device.screen.screen import Screen

# Pages and their scripts come only from here; photos are shown as blob-free same-origin images.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def create_app(screen: Screen) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await screen.start()
        try:
            yield
        finally:
            await screen.stop()

    app = FastAPI(title="Kiosk screen", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.screen = screen
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for module in (checkin, visit, vitals, case):
        app.include_router(module.router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = _refused(request) or await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        if not response.headers.get("content-type", "").startswith("multipart/x-mixed-replace"):
            # Not on the call's picture: Chromium refuses a multipart (MJPEG) <img> under nosniff.
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` on form posts.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # No camera, microphone or location for the page itself: the kiosk process owns the devices.
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response

    def _refused(request: Request) -> Response | None:
        """Only the kiosk's own browser: a loopback host name (a page whose own name was pointed at 127.0.0.1,
        DNS rebinding, sends its own), and for changes an Origin of this very host."""
        if request.url.hostname not in LOOPBACK_NAMES:
            return PlainTextResponse("this screen answers on 127.0.0.1 only", status_code=403)
        own = f"{request.url.scheme}://{request.url.netloc}"
        if request.method not in ("GET", "HEAD") and request.headers.get("origin") != own:
            return PlainTextResponse("requests must come from the kiosk's own pages", status_code=403)
        return None

    @app.exception_handler(StarletteHTTPException)
    async def redirects(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 303 and exc.headers:
            return Response(status_code=303, headers=exc.headers)
        return await http_exception_handler(request, HTTPException(exc.status_code, exc.detail, exc.headers))

    return app
