"""Fixtures for the web client tests: Debian's Chromium driven by Playwright, a real
`tidings up`, and a folder of screenshots for a person to look at.

Chromium must be at /usr/bin/chromium (e2e/env/chromium.sh installs it); when it is not,
the tests fail loudly. Playwright never downloads a browser here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

from ._pages import ChatPage
from ._server import WebServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


# Module scope, not session: Playwright's sync API keeps its event loop running in this
# thread while it lives, so any asyncio test collected after the web tests would fail
# ("cannot be called from a running event loop").
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash e2e/env/chromium.sh` (apt-get install chromium)",
            pytrace=False,
        )
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def server_env() -> dict[str, str]:
    """Settings for this test's server beyond SERVER_ENV: a test asks for others with
    ``@pytest.mark.parametrize("server_env", [{"TIDINGS_...": "..."}])``."""
    return {}


@pytest.fixture
def server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[WebServer]:
    """A `tidings up` of this test's own, on a free port with its own data directory."""
    proc = WebServer(tmp_path / "data", tmp_path / "server.log", env=server_env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Callable[[ChatPage, str], Path]:
    """shots(page, "step") saves test-artifacts/screenshots/<test>/<nn>-<who>-<step>.png."""
    folder = SCREENSHOTS / _folder_name(request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    taken = [0]

    def take(page: ChatPage, step: str) -> Path:
        taken[0] += 1
        path = folder / f"{taken[0]:02d}-{page.who}-{step}.png"
        page.page.screenshot(path=str(path))
        return path

    return take


@pytest.fixture
def people(
    browser: Browser, server: WebServer, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], ChatPage]]:
    """people("alice") opens a fresh browser context (its own storage) on the server."""
    contexts: list[tuple[BrowserContext, ChatPage]] = []

    def open_person(who: str) -> ChatPage:
        context = browser.new_context(viewport={"width": 1100, "height": 720})
        page = ChatPage(who, context.new_page(), server.url)
        contexts.append((context, page))
        return page

    yield open_person
    report = getattr(request.node, "rep_call", None)
    for context, page in contexts:
        if report is not None and report.failed:
            report.sections.append((f"{page.who}'s WebSocket frames", "\n".join(page.trail)))
            if not page.page.is_closed():
                folder = SCREENSHOTS / _folder_name(request.node.name)
                folder.mkdir(parents=True, exist_ok=True)
                page.page.screenshot(path=str(folder / f"FAILED-{page.who}.png"))
        context.close()


def _folder_name(test_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call's report on the item (screenshots on failure) and show the server log."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    if report.failed:
        server = getattr(item, "funcargs", {}).get("server")
        if isinstance(server, WebServer):
            report.sections.append((f"tidings up log ({server.log_path})", server.log_tail(60)))
    return report
