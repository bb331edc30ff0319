"""Who may see the page and send actions: cross-site refusal and the optional view token."""

from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeagent.status.page import CONTENT_SECURITY_POLICY

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Probes for systemd, a load balancer or Prometheus' liveness: never behind the view token.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def cross_site(connection: HTTPConnection) -> str | None:
    """Why a request comes from another site's page, or None when it does not.

    Browsers name the page that made a request (Sec-Fetch-Site, Origin); a tool such
    as curl names none and is judged by its token alone.
    """
    fetch_site = connection.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"request from a {fetch_site} page refused"
    origin = connection.headers.get("Origin")
    if origin is None:
        return None
    host = connection.headers.get("Host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        return f"request from origin {origin[:100]!r} refused"
    return None


def _credential(connection: HTTPConnection) -> bytes | None:
    """The bearer token, or the password of HTTP Basic (what a browser prompts for)."""
    scheme, _, value = connection.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.encode()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


class ViewGuard:
    """Asks for the view token (or the action token) before showing anything but the
    health probes; a browser gets a Basic prompt, where the password is the token."""

    def __init__(self, app: ASGIApp, view_token: bytes, action_token: bytes | None) -> None:
        self.app = app
        self.tokens = [t for t in (view_token, action_token) if t]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = _credential(HTTPConnection(scope))
        if given is not None and any(hmac.compare_digest(given, t) for t in self.tokens):
            await self.app(scope, receive, send)
            return
        # Actions carry the action token; only reading needs the view token.
        if scope["method"] == "POST" and scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        refusal = PlainTextResponse(
            "the status page asks for its view token\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="edgeagent", charset="UTF-8"'},
        )
        await refusal(scope, receive, send)
