"""A scriptable webhook server on loopback, for driving the uplink through every answer."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import free_port


@dataclass
class Seen:
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.body["events"]]


Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


@dataclass
class ScriptedWebhook:
    """Answers each request with `decide(seen)`; records every request it got."""

    decide: Callable[[Seen], Answer] = lambda seen: (200, {"rejected": []}, {})
    requests: list[Seen] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted_ids(self) -> list[str]:
        """Event ids in every 2xx batch, minus those it listed as rejected, in order."""
        ids: list[str] = []
        for seen, answer in zip(self.requests, self.answers, strict=True):
            if 200 <= answer[0] < 300:
                rejected = {r["id"] for r in (answer[1] or {}).get("rejected", [])}
                ids += [i for i in seen.ids if i not in rejected]
        return ids

    def __post_init__(self) -> None:
        self.answers: list[Answer] = []

        async def webhook(request: Request) -> Response:
            raw = await request.body()
            data = gzip.decompress(raw) if request.headers.get("content-encoding") else raw
            seen = Seen(dict(request.headers), raw, json.loads(data))
            self.requests.append(seen)
            answer = self.decide(seen)
            self.answers.append(answer)
            status, body, headers = answer
            if body is None:
                return Response(status_code=status, headers=headers)
            return JSONResponse(body, status_code=status, headers=headers)

        app = Starlette(
            routes=[Route("/integrations/{vendor}/webhook", webhook, methods=["POST"])]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve())

    def __enter__(self) -> ScriptedWebhook:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("webhook server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
