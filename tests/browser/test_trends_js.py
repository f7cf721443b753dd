"""trends.js in real Chromium, under the same strict CSP the hub serves.

A local http.server (a thread, a free loopback port) serves hub/web/static, the harness page and the
chart JSON that each test writes. The harness refreshes every second; every wait is on a page condition
(wait_for_function, expect), never a fixed sleep.
"""

from __future__ import annotations

import json
import math
import mimetypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect

STATIC = Path(__file__).resolve().parents[2] / "hub" / "web" / "static"
HARNESS = Path(__file__).resolve().parent / "harness"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
DATA_PATH = "/data/trends.json"
T0 = 1_700_000_000.0
STEP = 600.0

HR, SPO2, TEMP = "8867-4", "59408-5", "8310-5"

# Records CSP violations and counts fetch() calls. Init scripts run through the DevTools protocol,
# which CSP does not govern; the pages themselves stay free of inline script.
INIT_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || ""));
});
window.__fetchCount = 0;
const __realFetch = window.fetch;
window.fetch = function (...args) { window.__fetchCount++; return __realFetch.apply(this, args); };
"""

Json = dict[str, Any]


# ---- the JSON the server hands out -----------------------------------------------------------


def chart(code: str, title: str, unit: str, normal: list[float] | None, points: list[Json]) -> Json:
    return {"code": code, "title": title, "unit": unit, "normal": normal, "points": points}


def heart_rate_points(device: int = 30, camera: int = 12) -> list[Json]:
    points = [
        {"t": T0 + i * STEP + 0.5, "v": round(72 + 6 * math.sin(i / 3), 1), "source": "device"} for i in range(device)
    ]
    points += [{"t": T0 + 300 + j * 1500, "v": 92.0 + j % 3, "source": "camera"} for j in range(camera)]
    return points


def payload(charts: list[Json]) -> Json:
    return {"charts": charts, "since": T0 - STEP, "until": T0 + 30 * STEP}


def standard_payload() -> Json:
    return payload(
        [
            chart(HR, "Heart rate", "/min", [60, 100], heart_rate_points()),
            chart(
                SPO2,
                "Oxygen saturation",
                "%",
                [95, 100],
                [{"t": T0 + i * 1800, "v": 96.0 + i % 3, "source": "device"} for i in range(10)],
            ),
            chart(
                TEMP,
                "Body temperature",
                "Cel",
                None,
                [{"t": T0 + i * 3000, "v": 36.6 + i / 10, "source": "device"} for i in range(5)]
                + [{"t": T0 + 1000 + i * 4000, "v": 37.1, "source": "camera"} for i in range(3)],
            ),
        ]
    )


def counts(c: Json) -> tuple[int, int]:
    device = sum(1 for p in c["points"] if p["source"] == "device")
    return device, len(c["points"]) - device


# ---- the harness server ----------------------------------------------------------------------


@dataclass
class Feed:
    """What the server answers at DATA_PATH; tests change it while the page is open."""

    body: Json = field(default_factory=standard_payload)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Cleared by hold(): data requests then wait (in the server thread) until set() or release().
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def set(self, body: Json | None = None, status: int = 200) -> None:
        with self.lock:
            if body is not None:
                self.body = body
            self.status = status
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def get(self) -> tuple[int, bytes]:
        self.gate.wait(timeout=15)
        with self.lock:
            return self.status, json.dumps(self.body).encode()


class HarnessServer(ThreadingHTTPServer):
    daemon_threads = True
    feed: Feed


class Handler(BaseHTTPRequestHandler):
    server: HarnessServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _file(self, root: Path, rel: str) -> None:
        path = (root / rel).resolve()
        if not path.is_file() or not path.is_relative_to(root):
            self._send(404, b"not found", "text/plain")
            return
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(200, path.read_bytes(), ctype)

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if route == DATA_PATH:
            status, body = self.server.feed.get()
            if status == 200:
                self._send(200, body, "application/json")
            else:
                self._send(status, b'{"detail": "broken on purpose"}', "application/json")
        elif route.startswith("/static/"):
            self._file(STATIC, route.removeprefix("/static/"))
        elif route.startswith("/harness/"):
            self._file(HARNESS, route.removeprefix("/harness/"))
        elif route == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._send(404, b"not found", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[HarnessServer]:
    srv = HarnessServer(("127.0.0.1", 0), Handler)
    srv.feed = Feed()
    thread = threading.Thread(target=srv.serve_forever, name="trends-harness", daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def feed(server: HarnessServer) -> Feed:
    server.feed.set(standard_payload(), 200)
    return server.feed


@pytest.fixture
def harness_url(server: HarnessServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/harness/trends.html"


# ---- console / CSP watch ---------------------------------------------------------------------


@dataclass
class Console:
    page: Page
    errors: list[str] = field(default_factory=list)

    def assert_clean(self, allowed: tuple[str, ...] = ()) -> None:
        violations = cast(list[str], self.page.evaluate("window.__cspViolations"))
        assert violations == [], f"CSP violations: {violations}"
        unexpected = [e for e in self.errors if not any(a in e for a in allowed)]
        assert unexpected == [], f"console errors / page errors: {unexpected}"


@pytest.fixture
def console(page: Page) -> Console:
    watch = Console(page)
    page.add_init_script(INIT_SCRIPT)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" or "Content Security Policy" in msg.text:
            watch.errors.append(f"console.{msg.type}: {msg.text}")

    def on_pageerror(err: Error) -> None:
        watch.errors.append(f"pageerror: {err}")

    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    return watch


def open_harness(page: Page, url: str, charts: int = 3) -> None:
    """Open the harness and wait until every chart is drawn and sized to its box (layout settled)."""
    page.goto(url)
    page.wait_for_function(
        """n => {
            const plots = document.querySelectorAll('.trend-plot[data-points-drawn]');
            return plots.length === n && Array.from(plots).every(
                el => Math.abs(trendCharts[el.dataset.code].width - el.clientWidth) <= 1);
        }""",
        arg=charts,
    )


def plot(page: Page, code: str) -> str:
    return f'.trend-plot[data-code="{code}"]'


def attr(page: Page, code: str, name: str) -> int:
    value = page.get_attribute(plot(page, code), name)
    assert value is not None, f"{name} missing on chart {code}"
    return int(value)


def wait_attr(page: Page, code: str, name: str, value: int) -> None:
    page.wait_for_function(
        """([sel, name, value]) => {
            const el = document.querySelector(sel);
            return el !== null && el.getAttribute(name) === value;
        }""",
        arg=[plot(page, code), name, str(value)],
    )


def x_scale(page: Page, code: str) -> tuple[float, float]:
    lo, hi = page.evaluate("code => [trendCharts[code].scales.x.min, trendCharts[code].scales.x.max]", code)
    return float(lo), float(hi)


def drag_zoom(page: Page, code: str, start: float = 0.3, end: float = 0.6) -> None:
    box = page.locator(f"{plot(page, code)} .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, y, steps=8)
    page.mouse.up()


# ---- tests -----------------------------------------------------------------------------------


def test_every_point_is_drawn_and_labelled(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    open_harness(page, harness_url)
    body = feed.body
    assert sorted(page.evaluate("Object.keys(window.trendCharts)")) == sorted([HR, SPO2, TEMP])
    for c in body["charts"]:
        device, camera = counts(c)
        assert attr(page, c["code"], "data-device-points") == device, c["code"]
        assert attr(page, c["code"], "data-camera-points") == camera, c["code"]
        assert attr(page, c["code"], "data-points-drawn") == device + camera, c["code"]
        assert attr(page, c["code"], "data-points-visible") == device + camera, c["code"]

    # What uPlot holds is what the JSON said, value for value, split by source.
    hr = next(c for c in body["charts"] if c["code"] == HR)
    drawn = page.evaluate("code => trendCharts[code].data.map(col => Array.from(col))", HR)
    by_source = {"device": drawn[1], "camera": drawn[2]}
    got = sorted((t, v, s) for s in by_source for t, v in zip(drawn[0], by_source[s], strict=True) if v is not None)
    assert got == sorted((p["t"], p["v"], p["source"]) for p in hr["points"])

    card = page.locator(f'.trend-card[data-code="{HR}"]')
    expect(card.get_by_role("heading", level=3)).to_have_text("Heart rate (/min)")
    latest = max(hr["points"], key=lambda p: p["t"])["v"]
    expect(card.get_by_role("img")).to_have_attribute(
        "aria-label", f"Heart rate: 42 readings, 12 from the camera, latest {latest:g} /min"
    )
    legend = card.locator(".u-legend")
    expect(legend).to_contain_text("Bluetooth device")
    expect(legend).to_contain_text("Camera estimate")
    # The legend's camera key is a hollow diamond, the device key a filled circle: shape, not only colour.
    marks = page.evaluate(
        """code => {
            const card = document.querySelector(`.trend-card[data-code="${code}"]`);
            const cs = (sel) => getComputedStyle(card.querySelector(sel));
            const d = cs(".trend-key-device .u-marker"), c = cs(".trend-key-camera .u-marker");
            return {dRadius: d.borderTopLeftRadius, dBg: d.backgroundColor,
                    cTransform: c.transform, cBg: c.backgroundColor};
        }""",
        HR,
    )
    assert marks["dRadius"] == "50%"
    assert marks["dBg"] == "rgb(31, 95, 191)"
    assert marks["cTransform"] != "none"
    assert marks["cBg"] in ("rgba(0, 0, 0, 0)", "transparent")
    console.assert_clean()


# Pixels of the chart's own canvas. Positions and pixels are read in one evaluate, so a redraw between
# them cannot move the chart under the probe. valToPos(..., true) gives canvas pixels (device pixel ratio).
BLOCK_JS = """
([code, vFrom, vTo]) => {
  // A block of pixels at the plot's left edge (before the first reading), between two y values;
  // null stands for the plot's bottom (vFrom) or top (vTo) edge.
  const u = trendCharts[code];
  const b = u.bbox;
  const y0 = vTo == null ? b.top : u.valToPos(vTo, "y", true);
  const y1 = vFrom == null ? b.top + b.height : u.valToPos(vFrom, "y", true);
  const px = [];
  for (const f of [0.3, 0.45, 0.6, 0.75]) {
    for (let dx = 3; dx < 27; dx += 3) {
      const y = Math.round(y0 + (y1 - y0) * f);
      px.push(Array.from(u.ctx.getImageData(Math.round(b.left + dx), y, 1, 1).data));
    }
  }
  return {height: y1 - y0, px};
}
"""

POINTS_JS = """
([code, points, r]) => {
  // For each [t, v]: the pixel at its centre and the pixels of the square of radius r around it.
  const u = trendCharts[code];
  return points.map(([t, v]) => {
    const x = Math.round(u.valToPos(t, "x", true)), y = Math.round(u.valToPos(v, "y", true));
    const around = u.ctx.getImageData(x - r, y - r, 2 * r + 1, 2 * r + 1).data;
    const ring = [];
    for (let i = 0; i < around.length; i += 4) ring.push(Array.from(around.slice(i, i + 4)));
    return {centre: Array.from(u.ctx.getImageData(x, y, 1, 1).data), ring};
  });
}
"""


def greenish(px: list[int]) -> bool:
    r, g, b, a = px
    return a > 0 and g - r > 40 and g - b > 30


def test_normal_range_is_painted_as_a_band(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    open_harness(page, harness_url)
    # Inside the band: above 60/min and below the lowest reading (66/min). Outside: above 100/min.
    inside = page.evaluate(BLOCK_JS, [HR, 60, 64])
    outside = page.evaluate(BLOCK_JS, [HR, 100, None])
    assert inside["height"] > 6 and outside["height"] > 6, "no room to sample"
    assert sum(map(greenish, inside["px"])) / len(inside["px"]) >= 0.9, inside["px"]
    assert not any(map(greenish, outside["px"])), outside["px"]

    # A chart whose normal range is null has no band anywhere at that edge.
    plain = page.evaluate(BLOCK_JS, [TEMP, None, None])
    assert not any(map(greenish, plain["px"])), plain["px"]
    console.assert_clean()


def test_camera_and_device_points_differ_in_shape(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    """Device readings are filled circles, camera estimates hollow diamonds: the centre pixel tells them apart."""
    open_harness(page, harness_url)
    hr = next(c for c in feed.body["charts"] if c["code"] == HR)
    cam = next(p for p in hr["points"] if p["source"] == "camera" and p["t"] > T0 + 3000)
    dev = next(p for p in hr["points"] if p["source"] == "device" and p["t"] > T0 + 3000)
    cam_px, dev_px = page.evaluate(POINTS_JS, [HR, [[cam["t"], cam["v"]], [dev["t"], dev["v"]]], 7])

    def orange(px: list[int]) -> bool:
        r, _g, b, a = px
        return a > 200 and r > 120 and r - b > 90

    def blue(px: list[int]) -> bool:
        r, _g, b, a = px
        return a > 200 and b > 140 and b - r > 90

    centre = cam_px["centre"]
    assert not orange(centre) and not blue(centre), f"camera point centre should be hollow: {centre}"
    assert sum(map(orange, cam_px["ring"])) >= 8, "camera point outline not drawn"
    assert blue(dev_px["centre"]), f"device point centre should be filled: {dev_px['centre']}"
    console.assert_clean()


def test_drag_zooms_and_reset_restores(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    open_harness(page, harness_url)
    hr = next(c for c in feed.body["charts"] if c["code"] == HR)
    total = len(hr["points"])
    since, until = feed.body["since"], feed.body["until"]
    assert x_scale(page, HR) == (since, until)

    drag_zoom(page, HR)
    page.wait_for_function(
        "([sel, total]) => +document.querySelector(sel).dataset.pointsVisible < total", arg=[plot(page, HR), total]
    )
    lo, hi = x_scale(page, HR)
    assert since < lo < hi < until
    expected = sum(1 for p in hr["points"] if lo <= p["t"] <= hi)
    assert 0 < expected < total
    assert attr(page, HR, "data-points-visible") == expected
    assert attr(page, HR, "data-points-drawn") == total
    # Zooming one chart leaves the others alone.
    assert x_scale(page, SPO2) == (since, until)

    page.locator(f'.trend-card[data-code="{HR}"]').get_by_role("button", name="Reset zoom").click()
    wait_attr(page, HR, "data-points-visible", total)
    assert x_scale(page, HR) == (since, until)

    # Double-click resets too.
    drag_zoom(page, HR, 0.5, 0.8)
    page.wait_for_function(
        "([sel, total]) => +document.querySelector(sel).dataset.pointsVisible < total", arg=[plot(page, HR), total]
    )
    page.locator(f"{plot(page, HR)} .u-over").dblclick()
    wait_attr(page, HR, "data-points-visible", total)
    assert x_scale(page, HR) == (since, until)
    console.assert_clean()


def test_a_finger_drag_zooms_on_a_tablet(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    open_harness(page, harness_url)
    hr = next(c for c in feed.body["charts"] if c["code"] == HR)
    total = len(hr["points"])
    # What a touchscreen sends: pointer events of type "touch" (uPlot's own drag listens to the mouse only).
    page.evaluate(
        """(sel) => {
            const over = document.querySelector(sel + ' .u-over');
            const box = over.getBoundingClientRect();
            const at = (type, f) => over.dispatchEvent(new PointerEvent(type, {
                pointerType: 'touch', bubbles: true, clientX: box.left + box.width * f, clientY: box.top + 20}));
            at('pointerdown', 0.2); at('pointermove', 0.35); at('pointermove', 0.5); at('pointerup', 0.5);
        }""",
        plot(page, HR),
    )
    page.wait_for_function(
        "([sel, total]) => +document.querySelector(sel).dataset.pointsVisible < total", arg=[plot(page, HR), total]
    )
    lo, hi = x_scale(page, HR)
    assert feed.body["since"] < lo < hi < feed.body["until"]
    # A tap is not a zoom.
    page.locator(f'.trend-card[data-code="{HR}"]').get_by_role("button", name="Reset zoom").click()
    wait_attr(page, HR, "data-points-visible", total)
    page.evaluate(
        """(sel) => {
            const over = document.querySelector(sel + ' .u-over');
            const box = over.getBoundingClientRect();
            for (const type of ['pointerdown', 'pointerup']) over.dispatchEvent(new PointerEvent(type, {
                pointerType: 'touch', bubbles: true, clientX: box.left + 50, clientY: box.top + 20}));
        }""",
        plot(page, HR),
    )
    assert attr(page, HR, "data-points-visible") == total
    console.assert_clean()


def test_reset_zoom_is_reachable_and_usable_by_keyboard(
    page: Page, console: Console, feed: Feed, harness_url: str
) -> None:
    open_harness(page, harness_url)
    total = attr(page, HR, "data-points-drawn")
    drag_zoom(page, HR)
    page.wait_for_function(
        "([sel, total]) => +document.querySelector(sel).dataset.pointsVisible < total", arg=[plot(page, HR), total]
    )
    page.evaluate("document.activeElement && document.activeElement.blur()")
    # Charts come in page order, heart rate first: the first Tab stop on the harness is its button.
    page.keyboard.press("Tab")
    focused = page.evaluate(
        """() => { const el = document.activeElement;
                   return {tag: el.tagName, text: el.textContent, code: el.closest('.trend-card')?.dataset.code,
                           outline: getComputedStyle(el).outlineStyle, focusVisible: el.matches(':focus-visible')}; }"""
    )
    assert focused["tag"] == "BUTTON" and focused["text"] == "Reset zoom" and focused["code"] == HR, focused
    assert focused["focusVisible"] and focused["outline"] == "solid", focused
    expect(page.locator(":focus")).to_have_accessible_name("Reset zoom, Heart rate")
    page.keyboard.press("Enter")
    wait_attr(page, HR, "data-points-visible", total)
    # The next Tab moves on to the next chart's button.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.trend-card')?.dataset.code") == SPO2
    console.assert_clean()


def test_live_refresh_adds_points_and_keeps_zoom(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    open_harness(page, harness_url)
    page.evaluate("window.__sameDocument = true")
    hr_before = attr(page, HR, "data-points-drawn")
    drag_zoom(page, HR)
    page.wait_for_function(
        "([sel, total]) => +document.querySelector(sel).dataset.pointsVisible < total",
        arg=[plot(page, HR), hr_before],
    )
    zoomed = x_scale(page, HR)

    body = standard_payload()
    hr = next(c for c in body["charts"] if c["code"] == HR)
    hr["points"] += [{"t": T0 + 29 * STEP + 60 * k, "v": 70.0 + k, "source": "device"} for k in range(1, 4)]
    feed.set(body)

    wait_attr(page, HR, "data-points-drawn", hr_before + 3)
    assert attr(page, HR, "data-device-points") == 33
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert x_scale(page, HR) == zoomed, "a refresh must keep the user's zoom"
    expect(page.locator(plot(page, HR))).to_have_attribute(
        "aria-label", "Heart rate: 45 readings, 12 from the camera, latest 73 /min"
    )
    console.assert_clean()


def set_visibility(page: Page, state: str) -> None:
    """Headless Chromium never hides a page by itself: stand in for the browser's visibilityState."""
    page.evaluate(
        """state => {
            Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_polling_pauses_while_hidden(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    """With Playwright's fake clock paused, timers run only when the test says so; fetches are counted in the page."""
    page.clock.install()
    open_harness(page, harness_url)
    page.clock.pause_at(page.evaluate("() => Date.now()") / 1000 + 0.5)
    idle = "() => document.querySelector('.trend-grid').getAttribute('aria-busy') === 'false'"
    page.wait_for_function(idle)  # nothing in flight; the next refresh is a paused timer

    def fetches() -> int:
        return int(page.evaluate("window.__fetchCount"))

    # A refresh starts; the page is hidden while its answer is still on the way.
    body = standard_payload()
    next(c for c in body["charts"] if c["code"] == HR)["points"].append({"t": T0 + 100, "v": 70.0, "source": "device"})
    feed.set(body)
    feed.hold()
    before = fetches()
    page.clock.run_for(1_100)
    assert fetches() == before + 1, "the refresh timer did not fetch"
    set_visibility(page, "hidden")
    feed.release()
    wait_attr(page, HR, "data-points-drawn", 43)
    page.wait_for_function(idle)
    page.clock.run_for(30_000)
    assert fetches() == before + 1, "polled while the page was hidden (after an in-flight refresh)"

    # Back in view: one catch-up fetch at once, then the interval again.
    set_visibility(page, "visible")
    assert fetches() == before + 2, "no catch-up fetch when the page came back"
    page.wait_for_function(idle)
    page.clock.run_for(1_100)
    assert fetches() == before + 3, "polling did not resume"
    page.wait_for_function(idle)

    # Hidden with a refresh timer pending: the timer is cancelled.
    set_visibility(page, "hidden")
    page.clock.run_for(30_000)
    assert fetches() == before + 3, "polled while the page was hidden (pending timer)"
    console.assert_clean()


def test_fetch_error_shows_status_and_recovers(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    open_harness(page, harness_url)
    status = page.locator(".trend").get_by_role("status")
    feed.set(status=500)
    expect(status).to_have_text("Couldn't refresh — retrying")
    # The charts stay as they were.
    assert attr(page, HR, "data-points-drawn") == 42
    feed.set(status=200)
    expect(status).to_have_text("")
    console.assert_clean(allowed=("status of 500",))


def test_empty_charts_list_says_so(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    feed.set(payload([]))
    page.goto(harness_url)
    expect(page.locator(".trend")).to_contain_text("No readings in this time range.")
    expect(page.locator(".trend-empty")).to_be_visible()
    assert page.locator(".trend canvas").count() == 0
    assert page.evaluate("Object.keys(window.trendCharts).length") == 0

    # Readings arriving later replace the message on the next refresh.
    feed.set(standard_payload())
    page.wait_for_function("() => document.querySelectorAll('.trend-plot[data-points-drawn]').length === 3")
    expect(page.locator(".trend-empty")).to_be_hidden()
    console.assert_clean()


def test_width_follows_the_container(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    fits = """([code, was]) => { const el = document.querySelector(`.trend-plot[data-code="${code}"]`);
                                const w = trendCharts[code].width;
                                return w !== was && Math.abs(w - el.clientWidth) <= 1 ? w : false; }"""
    page.set_viewport_size({"width": 768, "height": 1024})
    open_harness(page, harness_url)
    tablet = int(page.wait_for_function(fits, arg=[HR, -1]).json_value())
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 768, "the page scrolls sideways on a tablet"
    assert tablet >= 600, "one chart per row on a 768px tablet"

    # A laptop fits two charts a row: each is narrower than the tablet's single column, and still fills its card.
    page.set_viewport_size({"width": 1280, "height": 900})
    laptop = int(page.wait_for_function(fits, arg=[HR, tablet]).json_value())
    assert 450 <= laptop < tablet
    tops = page.evaluate("() => Array.from(document.querySelectorAll('.trend-card'), c => c.offsetTop)")
    assert tops[0] == tops[1] != tops[2]

    page.set_viewport_size({"width": 768, "height": 1024})
    assert int(page.wait_for_function(fits, arg=[HR, laptop]).json_value()) == tablet
    console.assert_clean()


def test_csp_is_enforced_and_nothing_violates_it(page: Page, console: Console, feed: Feed, harness_url: str) -> None:
    response = page.goto(harness_url)
    assert response is not None
    assert response.headers["content-security-policy"] == CSP
    page.wait_for_function("() => document.querySelectorAll('.trend-plot[data-points-drawn]').length === 3")
    console.assert_clean()

    # The watch itself works: an inline style attribute is refused and reported.
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("() => window.__cspViolations.length > 0")
    assert any("style-src" in v for v in page.evaluate("window.__cspViolations"))
