"""The status page in a real browser (Debian's Chromium, driven by Playwright) against a
running daemon: a device shows, a value changes live, an alarm is acknowledged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.publish as paho_publish
import pytest

from tests.conftest import REPO, Mosquitto, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("EDGEAGENT_ARTIFACTS", REPO / "tests" / "artifacts"))
SCREENSHOT = ARTIFACTS / "status-page.png"
PHONE_SCREENSHOT = ARTIFACTS / "status-page-phone.png"
TOKEN = "browser-test-token-0123456789"
WAIT_MS = 20_000


def alarm_config(sensor: str) -> list[dict[str, Any]]:
    """The one alarm the test raises: a high limit of 80 on `sensor`.

    Kept in this one place so a change of the alarm configuration format is one edit.
    """
    return [{"id": "tank-high", "sensor": sensor, "type": "high", "limit": 80, "priority": "high"}]


def daemon_config(tmp_path: Path, broker_port: int, prefix: str, page_port: int) -> Path:
    token = tmp_path / "page-token"
    token.write_text(TOKEN + "\n")
    path = tmp_path / "edgeagent.yaml"
    path.write_text(
        json.dumps(
            {
                "gateway": {"id": "site-browser", "data_dir": str(tmp_path / "data")},
                "platform": {"base_url": f"http://127.0.0.1:{free_port()}"},
                "status": {"port": page_port, "token": {"file": str(token)}},
                "mqtt": {
                    "port": broker_port,
                    "client_id": f"browser-{prefix}",
                    "sensors": [{"topic": f"{prefix}/+/level", "sensor": "{1}", "unit": "%"}],
                },
                "alarms": alarm_config("tank"),
            }
        )
    )
    return path


def publish(port: int, topic: str, payload: bytes) -> None:
    # Blocking paho: Playwright's sync API holds this thread's event loop.
    paho_publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=port)


@pytest.fixture
def page_url(tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str) -> Iterator[str]:
    """A daemon process as systemd runs it, with its page on a free loopback port."""
    port = free_port()
    config = daemon_config(tmp_path, mosquitto.port, topic_prefix, port)
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "run", "-c", str(config)], stderr=log
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                if httpx.get(url + "readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "daemon not ready"
            time.sleep(0.1)
        yield url
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()


def test_page_in_chromium_shows_live_values_and_acknowledges_an_alarm(
    page_url: str, tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run the tests through `make test`")
    from playwright.sync_api import expect, sync_playwright

    publish(mosquitto.port, f"{topic_prefix}/tank/level", b"42")
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 1000},
        )
        try:
            page = browser.new_page()
            # A console error would be a script the page's own policy blocked, or a bug.
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_url)

            devices = page.locator("table.devices")
            expect(devices.locator("tr", has_text="mqtt")).to_contain_text(
                "online", timeout=WAIT_MS
            )
            sensor = page.locator("table.sensors tr", has_text="tank")
            expect(sensor.locator(".value")).to_have_text("42", timeout=WAIT_MS)

            # Live: the value changes without a reload.
            page.evaluate("window.loadedOnce = true")
            publish(mosquitto.port, f"{topic_prefix}/tank/level", b"57")
            expect(sensor.locator(".value")).to_have_text("57", timeout=WAIT_MS)
            publish(mosquitto.port, f"{topic_prefix}/tank/level", b"91")
            alarm = page.locator("table.alarms tr", has_text="tank-high")
            expect(alarm.locator(".state")).to_have_text("unacknowledged", timeout=WAIT_MS)
            assert page.evaluate("window.loadedOnce") is True, "the page was reloaded"

            page.fill("#op-name", "ana")
            page.fill("#op-token", TOKEN)
            alarm.get_by_role("button", name="Acknowledge").click()
            expect(alarm.locator(".state")).to_have_text("acknowledged", timeout=WAIT_MS)
            expect(page.locator("#message")).to_contain_text("acknowledge done", timeout=WAIT_MS)
            expect(alarm.get_by_role("button", name="Acknowledge")).to_have_count(
                0, timeout=WAIT_MS
            )
            expect(sensor.locator("svg.spark")).to_have_count(1, timeout=WAIT_MS)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # Search narrows the lists, and the live refresh keeps the search.
            page.fill("input[name=q]", "no-such-thing")
            page.press("input[name=q]", "Enter")
            expect(page.locator("#live")).to_contain_text("No readings match.", timeout=WAIT_MS)
            expect(page.locator("#updated")).to_contain_text("live", timeout=WAIT_MS)
            expect(page.locator("#live")).to_contain_text("No readings match.", timeout=WAIT_MS)

            # Readable on a phone: nothing wider than the screen but the scrolling tables.
            page.goto(page_url)
            page.set_viewport_size({"width": 390, "height": 844})
            expect(sensor.locator(".value")).to_have_text("91", timeout=WAIT_MS)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"page is {width} px wide on a 390 px screen"
            page.screenshot(path=str(PHONE_SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert SCREENSHOT.stat().st_size > 10_000
    journal = httpx.get(page_url + "api/actions").json()["actions"]
    assert journal[0]["operator"] == "ana"
