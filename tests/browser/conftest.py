"""Real-browser fixtures: Debian's Chromium driven by Playwright's sync API.

Playwright's bundled driver runs from the wheel, but no browser build is ever downloaded: the tests
launch the system Chromium at CHROMIUM, which `make browser` installs. A missing Chromium fails the
tests (it never skips them), so a machine without it cannot pass `make test` by accident.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    # The machine's network is closed: without these Chromium keeps trying (and logging) its own services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
DEFAULT_TIMEOUT_MS = 10_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

# expect() assertions wait as long as page actions do (its own default is 5 s).
expect.set_options(timeout=DEFAULT_TIMEOUT_MS)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can tell in teardown whether the test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(node: pytest.Item) -> bool:
    reports = node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


# Package scope, not session: Playwright's sync API keeps its event loop marked as running in the main thread
# while it is open, so any later test outside this package calling asyncio.run() would fail ("cannot be called
# from a running event loop"). Under pytest-xdist a worker can run such a test after a browser test.
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests use Debian's Chromium, never a downloaded one. "
            "Run `make browser` (it installs the `chromium` package with apt-get).",
            pytrace=False,
        )
    browser = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh browser context (no shared cookies or storage); screenshot on failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        node = request.node
        if isinstance(node, pytest.Item) and _failed(node) and not page.is_closed():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name)
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            except Exception as exc:  # the screenshot is a help, never a second failure
                print(f"could not save a screenshot for {node.name}: {exc}")
        context.close()


@pytest.fixture
def screen(browser: Browser) -> Iterator[Page]:
    """The kiosk's browser: a touchscreen-sized page in its own context."""
    context: BrowserContext = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
