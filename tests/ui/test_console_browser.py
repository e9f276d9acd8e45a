"""The web console end to end in a real headless browser: Debian's chromium driven by Playwright.

The gateway, the charge points and Playwright share the test's event loop. Playwright's own browser
download is never used (it needs the network): the system chromium must be installed, and when it
is missing the tests fail (CI installs it) instead of being skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from security.tokens import InMemoryTokenStore, new_token

from ..integration.clients import running_station

try:
    from playwright.async_api import (
        Browser,
        ConsoleMessage,
        Page,
        Response,
        async_playwright,
        expect,
    )
    from playwright.async_api import Error as PlaywrightError
except ImportError as exc:  # pragma: no cover - the test extras install it
    raise ImportError("the browser tests need playwright: pip install -e '.[test]'") from exc

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 5_000  # every Playwright wait and assertion is bounded by this
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """The system chromium, headless; a clear failure when it cannot start."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the console tests need Debian's chromium "
            "(apt-get install -y chromium); `playwright install` is not used",
            pytrace=False,
        )
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        try:
            started = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=20_000
            )
        except PlaywrightError as exc:
            pytest.fail(f"chromium ({CHROMIUM}) did not start: {exc.message}", pytrace=False)
        try:
            yield started
        finally:
            await started.close()


async def open_console(browser: Browser, port: int, problems: list[str]) -> Page:
    """A fresh page on /console; page errors and console errors (CSP too) go to `problems`."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        # 404s are checked by URL below (the browser asks for /favicon.ico: there is none).
        if message.type == "error" and "status of 404" not in message.text:
            problems.append(f"console: {message.text}")

    def on_response(response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            problems.append(f"HTTP {response.status}: {response.url}")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", on_console)
    page.on("response", on_response)
    await page.goto(f"http://127.0.0.1:{port}/console")
    return page


async def sign_in(page: Page, token: str) -> None:
    field = page.get_by_label("API token")
    await expect(field).to_be_focused()
    await field.fill(token)
    await field.press("Enter")


async def test_console_lists_a_charge_point_and_sends_a_command(
    start_gateway: Callable[..., Any], browser: Browser
) -> None:
    tokens = InMemoryTokenStore()
    secret, record = new_token("admin", name="console-test")
    tokens.put(record)
    server = await start_gateway(tokens=tokens)
    problems: list[str] = []
    page = await open_console(browser, server.port, problems)

    await sign_in(page, secret)
    await expect(page.locator("#status")).to_contain_text("Connected as admin")
    await expect(page.get_by_role("heading", name="Charge points")).to_be_visible()
    await expect(page.get_by_role("heading", name="Security events")).to_be_visible()
    assert secret not in page.url
    assert await page.evaluate("sessionStorage.length") == 1

    async with (
        running_station(server.url("CP-CONSOLE-1"), "ocpp1.6", "CP-CONSOLE-1") as station,
        running_station(server.url("CP-CONSOLE-2"), "ocpp2.0.1", "CP-CONSOLE-2"),
    ):
        row = page.locator("#cp-rows tr", has=page.get_by_role("button", name="CP-CONSOLE-1"))
        await expect(row).to_be_visible()
        cells = row.locator("td")
        await expect(cells.nth(1)).to_have_text("ocpp1.6")
        await expect(cells.nth(2)).to_have_text("0")  # the profile, from the re-read list
        await expect(page.locator("#cp-count")).to_have_text("2 connected")

        # The filter hides rows in place.
        await page.get_by_label("Filter by identity").fill("console-2")
        await expect(row).to_be_hidden()
        await expect(page.locator("#cp-count")).to_have_text("1 of 2 shown")
        await page.get_by_label("Filter by identity").fill("")
        await expect(row).to_be_visible()

        await row.get_by_role("button", name="CP-CONSOLE-1").click()
        await expect(page.get_by_role("heading", name="CP-CONSOLE-1")).to_be_visible()
        await expect(page.get_by_label("Charge point", exact=True)).to_have_value("CP-CONSOLE-1")

        # A payload that is not JSON is refused in the page, before anything is sent.
        await page.get_by_label("Action").fill("ChangeConfiguration")
        await page.get_by_label("Payload").fill('{"key": "HeartbeatInterval",')
        await page.get_by_role("button", name="Send command").click()
        await expect(page.locator("#payload-error")).to_contain_text("not valid JSON")
        assert not hasattr(station, "changed")

        payload = {"key": "HeartbeatInterval", "value": "60"}
        await page.get_by_label("Payload").fill(json.dumps(payload))
        await page.get_by_label("Payload").press("Control+Enter")
        await expect(page.locator("#result-summary")).to_have_text(
            "CP-CONSOLE-1 answered ChangeConfiguration: CALLRESULT"
        )
        await expect(page.locator("#result-body")).to_contain_text('"status": "Accepted"')
        assert station.changed == ("HeartbeatInterval", "60")

        # The message log, newest first: the charge point's answer, then the gateway's CALL.
        entries = page.locator("#log li")
        await expect(entries).to_have_count(2)
        await expect(entries.nth(0)).to_contain_text("from charge point")
        await expect(entries.nth(0)).to_contain_text("Accepted")
        await expect(entries.nth(1)).to_contain_text("CALL ChangeConfiguration")
        await expect(cells.nth(4)).not_to_have_text("—")

        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

    # The charge points left: their rows go away.
    await expect(page.locator("#cp-count")).to_have_text("0 connected")
    await expect(page.get_by_role("heading", name="CP-CONSOLE-1 (disconnected)")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    assert problems == []


async def test_console_refuses_a_bad_token(
    start_gateway: Callable[..., Any], browser: Browser
) -> None:
    tokens = InMemoryTokenStore()
    _, record = new_token("operator", name="unused")
    tokens.put(record)
    server = await start_gateway(tokens=tokens)
    problems: list[str] = []
    page = await open_console(browser, server.port, problems)

    await sign_in(page, "ogw_not-a-real-token")
    await expect(page.locator("#sign-in-error")).to_contain_text("refused this token")
    await expect(page.locator("#status")).to_have_text("Sign-in failed")
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.locator("#cp-table")).to_be_hidden()
    await expect(page.get_by_label("API token")).to_be_focused()
    assert await page.evaluate("sessionStorage.length") == 0
    assert "ogw_" not in page.url
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console-refused.png"))
    # The browser logs a failed WebSocket handshake/close as an error: only page errors count.
    assert [problem for problem in problems if problem.startswith("page error")] == []
