"""A local push receiver for the embedded stack: verifies each webhook's signature as a real
receiver must, and appends what arrived to a JSON-lines file (.data/push.jsonl)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from deallens.notify import push


def make_app(secret: str, log: Path) -> Starlette:
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if not push.verify(secret, request.headers, body, now=int(time.time())):
            return JSONResponse({"error": "bad or stale signature"}, status_code=401)
        entry = {
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "path": request.url.path,
            "idempotency_key": request.headers.get(push.IDEMPOTENCY_HEADER),
            "body": json.loads(body),
        }
        with log.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
