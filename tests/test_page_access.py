"""Who reaches the page and its actions: cross-site refusal, the view token, HTTPS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeagent.daemon import Daemon, StartupError
from edgeagent.settings import Settings

TOKEN = "action-token-for-access-tests"
VIEW = "view-token-for-access-tests"


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **status: Any) -> AsyncIterator[Daemon]:
    (tmp_path / "token").write_text(TOKEN + "\n")
    settings = Settings.model_validate(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
            "platform": {"base_url": "http://127.0.0.1:9"},
            "status": {"port": 0, "token": {"file": str(tmp_path / "token")}, **status},
            "alarms": [
                {"id": "tank-h", "sensor": "tank", "type": "high", "limit": 80, "priority": "high"}
            ],
        }
    )
    agent = Daemon(settings)
    task = asyncio.create_task(agent.run())
    deadline = time.monotonic() + 30
    while not agent.ready():
        if task.done():
            await task
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    try:
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


def base(agent: Daemon, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{agent.page_port()}"


CROSS_SITE_CASES = {
    "other-origin": ({"Origin": "http://evil.example"}, 403),
    "null-origin": ({"Origin": "null"}, 403),
    "cross-site": ({"Sec-Fetch-Site": "cross-site"}, 403),
    # Another service on this gateway is "same-site" yet another origin.
    "same-site": ({"Sec-Fetch-Site": "same-site"}, 403),
    "same-origin": ({"Sec-Fetch-Site": "same-origin"}, 200),
    "curl": ({}, 200),
}


async def test_actions_from_another_site_are_refused_even_with_the_token(
    tmp_path: Path,
) -> None:
    answers = {}
    async with running(tmp_path) as agent, httpx.AsyncClient() as client:
        own_origin = {"Origin": base(agent)}
        for case, (headers, _) in {**CROSS_SITE_CASES, "own-origin": (own_origin, 200)}.items():
            answers[case] = await client.post(
                base(agent) + "/api/alarms/tank-h/acknowledge",
                json={"operator": "ana"},
                headers={"Authorization": f"Bearer {TOKEN}", **headers},
            )
    for case, (_, expected) in CROSS_SITE_CASES.items():
        assert answers[case].status_code == expected, (case, answers[case].text)
        if expected == 403:
            assert "refused" in answers[case].json()["error"]
    assert answers["own-origin"].status_code == 200


async def test_page_carries_a_policy_that_allows_only_its_own_script(tmp_path: Path) -> None:
    async with running(tmp_path) as agent, httpx.AsyncClient() as client:
        page = await client.get(base(agent) + "/")
        live = await client.get(base(agent) + "/live")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert live.headers["Content-Security-Policy"] == policy
    assert "<html" not in live.text and "Active alarms" in live.text


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()


async def test_a_view_token_guards_everything_but_the_probes(tmp_path: Path) -> None:
    (tmp_path / "view").write_text(VIEW + "\n")
    async with (
        running(tmp_path, view_token={"file": str(tmp_path / "view")}) as agent,
        httpx.AsyncClient() as client,
    ):
        url = base(agent)
        anonymous = {p: await client.get(url + p) for p in ("/", "/status.json", "/metrics")}
        wrong = await client.get(url + "/", headers={"Authorization": basic("nope")})
        garbled = await client.get(url + "/", headers={"Authorization": "Basic %%%"})
        browser = await client.get(url + "/", headers={"Authorization": basic(VIEW)})
        bearer = await client.get(
            url + "/status.json", headers={"Authorization": f"Bearer {VIEW}"}
        )
        operator = await client.get(url + "/live", headers={"Authorization": f"Bearer {TOKEN}"})
        probes = [await client.get(url + p) for p in ("/healthz", "/readyz")]
        action = await client.post(
            url + "/api/alarms/tank-h/acknowledge",
            json={"operator": "ana"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    for answer in anonymous.values():
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
        assert VIEW not in answer.text
    assert wrong.status_code == 401 and garbled.status_code == 401
    assert browser.status_code == 200 and bearer.status_code == 200
    assert operator.status_code == 200
    assert [p.status_code for p in probes] == [200, 200]
    assert action.status_code == 200


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: run the tests through `make test`")
    cert, key = tmp_path / "page.crt", tmp_path / "page.key"
    request = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    request += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [openssl, *request.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_the_page_serves_https_with_a_configured_certificate(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    trust = ssl.create_default_context(cafile=str(cert))
    async with running(tmp_path, tls_cert=str(cert), tls_key=str(key)) as agent:
        async with httpx.AsyncClient(verify=trust) as client:
            secure = await client.get(base(agent, "https") + "/healthz")
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(base(agent, "http") + "/healthz")
    assert secure.status_code == 200


async def test_an_unusable_certificate_is_a_clear_startup_error(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    with pytest.raises(StartupError, match="TLS certificate or key unusable"):
        async with running(tmp_path, tls_cert=str(cert), tls_key=str(tmp_path / "missing.key")):
            pass


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="both 'tls_cert' and 'tls_key'"):
        Settings.model_validate({"status": {"tls_cert": "/etc/edgeagent/page.crt"}})
