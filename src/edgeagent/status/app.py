"""The HTTP side of the daemon: status page, /status.json, health, and the operator API."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from edgeagent.status.page import render

log = logging.getLogger(__name__)

MAX_ACTION_BODY = 16 * 1024


class ActionError(Exception):
    """An operator action that cannot be done; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StatusSource(Protocol):
    """What the page needs from the daemon."""

    async def status(self) -> dict[str, Any]: ...

    def ready(self) -> bool: ...

    async def acknowledge(self, alarm_id: str, operator: str, reason: str) -> dict[str, Any]: ...

    async def actions(self) -> list[dict[str, str]]: ...


def build_app(source: StatusSource, token: bytes | None) -> Starlette:
    async def page(request: Request) -> Response:
        return HTMLResponse(render(await source.status()))

    async def status_json(request: Request) -> Response:
        return JSONResponse(await source.status())

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if source.ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready\n", status_code=503)

    def authorise(request: Request) -> None:
        if token is None:
            raise ActionError(403, "operator actions are disabled: no status.token configured")
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode(), token):
            raise ActionError(401, "missing or wrong bearer token")
        # A browser cannot send this content type cross-site without a preflight we never
        # answer, so a forged form post from another page is refused here.
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ActionError(415, "actions take application/json")

    async def read_action(request: Request) -> tuple[str, str]:
        body = await request.body()
        if len(body) > MAX_ACTION_BODY:
            raise ActionError(413, "action body too large")
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise ActionError(400, "action body is not JSON") from exc
        if not isinstance(data, dict):
            raise ActionError(400, "action body must be a JSON object")
        operator = data.get("operator")
        reason = data.get("reason", "")
        if not isinstance(operator, str) or not operator.strip():
            raise ActionError(400, "'operator' (who acts) is required")
        if not isinstance(reason, str):
            raise ActionError(400, "'reason' must be text")
        return operator.strip()[:100], reason.strip()[:500]

    async def acknowledge(request: Request) -> Response:
        try:
            authorise(request)
            operator, reason = await read_action(request)
            result = await source.acknowledge(request.path_params["alarm_id"], operator, reason)
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    async def actions(request: Request) -> Response:
        return JSONResponse({"actions": await source.actions()})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/status.json", status_json),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/api/alarms/{alarm_id}/acknowledge", acknowledge, methods=["POST"]),
            Route("/api/actions", actions),
        ]
    )
