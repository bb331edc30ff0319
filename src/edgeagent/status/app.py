"""The HTTP side of the daemon: status page, /status.json, health, and the operator API."""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route

from edgeagent.events import printable
from edgeagent.settings import is_loopback
from edgeagent.status.guard import PAGE_HEADERS, ViewGuard, cross_site
from edgeagent.status.page import FAVICON, View, render, render_live

log = logging.getLogger(__name__)

MAX_ACTION_BODY = 16 * 1024
MAX_OPERATOR = 100
MAX_REASON = 500


_LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


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

    async def alarm_action(
        self, alarm_id: str, action: str, operator: str, reason: str, options: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def alarms_view(self) -> dict[str, Any]: ...

    async def outbox_view(self, what: str, lane: str | None, limit: int) -> dict[str, Any]: ...

    async def outbox_repair(
        self, action: str, ids: list[str] | None, operator: str, reason: str
    ) -> dict[str, Any]: ...

    async def metrics(self) -> bytes: ...

    async def retry_uplink(self, operator: str, reason: str) -> None: ...

    def camera_snapshot(self, camera_id: str) -> Path | None: ...

    async def camera_presets(self, camera_id: str) -> list[dict[str, Any]]: ...

    async def camera_ptz(
        self, camera_id: str, action: str, body: dict[str, Any], operator: str, reason: str
    ) -> dict[str, Any]: ...


class _Api:
    """The request handlers, sharing the daemon and the token."""

    def __init__(self, source: StatusSource, token: bytes | None) -> None:
        self.source = source
        self.token = token

    def view(self, request: Request) -> View:
        return View.from_params(
            request.query_params, can_shelve=hasattr(self.source, "alarm_action")
        )

    async def page(self, request: Request) -> Response:
        html = render(await self.source.status(), self.view(request))
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def favicon(self, request: Request) -> Response:
        return Response(FAVICON, media_type="image/svg+xml")

    async def live(self, request: Request) -> Response:
        html = render_live(await self.source.status(), self.view(request))
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def status_json(self, request: Request) -> Response:
        return JSONResponse(await self.source.status())

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(self, request: Request) -> Response:
        if self.source.ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready\n", status_code=503)

    async def metrics(self, request: Request) -> Response:
        return Response(await self.source.metrics(), media_type=CONTENT_TYPE_LATEST)

    async def actions(self, request: Request) -> Response:
        return JSONResponse({"actions": await self.source.actions()})

    def authorise(self, request: Request) -> None:
        # Another site's page must not act through an operator's browser (CSRF).
        refusal = cross_site(request)
        if refusal is not None:
            raise ActionError(403, refusal)
        if self.token is None:
            raise ActionError(403, "operator actions are disabled: no status.token configured")
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode(), self.token):
            raise ActionError(401, "missing or wrong bearer token")
        # A browser cannot send this content type cross-site without a preflight we never
        # answer, so a forged form post from another page is refused here.
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ActionError(415, "actions take application/json")

    @staticmethod
    async def read_body(request: Request) -> dict[str, Any]:
        declared = request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > MAX_ACTION_BODY:
            raise ActionError(413, "action body too large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_ACTION_BODY:
                raise ActionError(413, "action body too large")
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise ActionError(400, "action body is not JSON") from exc
        if not isinstance(data, dict):
            raise ActionError(400, "action body must be a JSON object")
        return data

    @staticmethod
    def operator_of(data: dict[str, Any]) -> tuple[str, str]:
        operator = data.get("operator")
        reason = data.get("reason", "")
        if not isinstance(operator, str) or not operator.strip():
            raise ActionError(400, "'operator' (who acts) is required")
        if len(operator) > MAX_OPERATOR or not operator.isprintable():
            raise ActionError(
                400, f"'operator' must be printable text of {MAX_OPERATOR} characters at most"
            )
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise ActionError(400, f"'reason' must be text of {MAX_REASON} characters at most")
        return operator.strip(), printable(reason.strip())

    async def acknowledge(self, request: Request) -> Response:
        try:
            self.authorise(request)
            operator, reason = self.operator_of(await self.read_body(request))
            result = await self.source.acknowledge(
                request.path_params["alarm_id"], operator, reason
            )
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    async def alarms_view(self, request: Request) -> Response:
        return JSONResponse(await self.source.alarms_view())

    async def alarm_action(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ALARM_ACTIONS:
            return JSONResponse(
                {"error": f"alarm actions: acknowledge, {', '.join(ALARM_ACTIONS)}"},
                status_code=404,
            )
        try:
            self.authorise(request)
            data = await self.read_body(request)
            operator, reason = self.operator_of(data)
            options = alarm_options(action, data)
            result = await self.source.alarm_action(
                request.path_params["alarm_id"], action, operator, reason, options
            )
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    async def outbox_view(self, request: Request) -> Response:
        what = request.path_params["what"]
        if what not in ("stats", "peek", "dead-letters"):
            return JSONResponse({"error": f"no outbox view {what!r}"}, status_code=404)
        try:
            limit = min(max(int(request.query_params.get("limit", "20")), 1), 1000)
            result = await self.source.outbox_view(what, request.query_params.get("lane"), limit)
        except ValueError:
            return JSONResponse({"error": "limit must be a number"}, status_code=400)
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    async def outbox_repair(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("requeue", "purge"):
            return JSONResponse({"error": "outbox actions: requeue, purge"}, status_code=404)
        try:
            self.authorise(request)
            data = await self.read_body(request)
            operator, reason = self.operator_of(data)
            ids = data.get("ids")
            if ids is not None and (
                not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
            ):
                raise ActionError(400, "'ids' must be a list of event ids, or absent for all")
            result = await self.source.outbox_repair(action, ids, operator, reason)
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    async def retry_uplink(self, request: Request) -> Response:
        try:
            self.authorise(request)
            operator, reason = self.operator_of(await self.read_body(request))
            await self.source.retry_uplink(operator, reason)
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"retrying": True})

    # -- cameras

    async def camera_snapshot(self, request: Request) -> Response:
        try:
            path = self.source.camera_snapshot(request.path_params["camera_id"])
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if path is None:
            return JSONResponse({"error": "no snapshot yet"}, status_code=404)
        # Snapshots are replaced, never rewritten: a browser must not keep an old one.
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def camera_presets(self, request: Request) -> Response:
        try:
            presets = await self.source.camera_presets(request.path_params["camera_id"])
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"presets": presets})

    async def camera_ptz(self, request: Request) -> Response:
        try:
            self.authorise(request)
            data = await self.read_body(request)
            operator, reason = self.operator_of(data)
            result = await self.source.camera_ptz(
                request.path_params["camera_id"],
                request.path_params["action"],
                data,
                operator,
                reason,
            )
        except ActionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)


ALARM_ACTIONS = ("shelve", "unshelve", "remove", "restore", "reset")


def alarm_options(action: str, data: dict[str, Any]) -> dict[str, Any]:
    """The shelve's length or one-shot flag, checked; other actions take none."""
    if action != "shelve":
        return {}
    duration = data.get("duration_s")
    one_shot = data.get("one_shot", False)
    if not isinstance(one_shot, bool):
        raise ActionError(400, "'one_shot' must be true or false")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0
    ):
        raise ActionError(400, "'duration_s' must be a positive number of seconds")
    if one_shot and duration is not None:
        raise ActionError(400, "give 'duration_s' or 'one_shot', not both")
    return {"duration_s": None if duration is None else float(duration), "one_shot": one_shot}


def build_app(
    source: StatusSource,
    token: bytes | None,
    listen: str = "127.0.0.1",
    view_token: bytes | None = None,
) -> Starlette:
    api = _Api(source, token)
    middleware = []
    if is_loopback(listen):
        # Bound to loopback: only requests addressed to loopback are served, so a web page
        # cannot read the status through DNS rebinding.
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=_LOOPBACK_NAMES))
    if view_token is not None:
        middleware.append(Middleware(ViewGuard, view_token=view_token, action_token=token))
    return Starlette(
        middleware=middleware,
        routes=[
            Route("/", api.page),
            Route("/live", api.live),
            Route("/favicon.svg", api.favicon),
            Route("/status.json", api.status_json),
            Route("/healthz", api.healthz),
            Route("/readyz", api.readyz),
            Route("/metrics", api.metrics),
            Route("/api/alarms/{alarm_id}/acknowledge", api.acknowledge, methods=["POST"]),
            Route("/api/alarms", api.alarms_view, methods=["GET"]),
            Route("/api/alarms/{alarm_id}/{action:str}", api.alarm_action, methods=["POST"]),
            Route("/api/actions", api.actions),
            Route("/api/outbox/{what:str}", api.outbox_view, methods=["GET"]),
            Route("/api/outbox/{action:str}", api.outbox_repair, methods=["POST"]),
            Route("/api/uplink/retry", api.retry_uplink, methods=["POST"]),
            Route("/cameras/{camera_id}/snapshot.jpg", api.camera_snapshot),
            Route("/api/cameras/{camera_id}/presets", api.camera_presets, methods=["GET"]),
            Route("/api/cameras/{camera_id}/ptz/{action}", api.camera_ptz, methods=["POST"]),
        ],
    )
