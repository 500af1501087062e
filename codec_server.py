"""The codec server: the Temporal Web UI's and CLI's "remote codec" endpoint.

POST /decode and /encode take and answer `{"payloads": [...]}` (protobuf JSON, base64 data)
and run them through the workers' codec (codec.py), so that operators read decrypted
payloads while Temporal's history holds only ciphertext. Callers prove they hold
TEMPORAL_CODEC_SERVER_TOKEN with `Authorization: Bearer <token>` (the CLI's --codec-auth) or
with the session cookie /login gives (the Web UI's browser: it cannot send a fixed header);
CORS admits only the UI's origins (TEMPORAL_CODEC_CORS_ORIGINS). It speaks Temporal's
Payload protobuf, hence the top level; the token and session checks are in
deallens/security/codec_auth.py.

    python codec_server.py        # listens on TEMPORAL_CODEC_BIND
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.exceptions import ApplicationError

from codec import DealLensCodec
from deallens.config import ConfigError, Settings
from deallens.security.codec_auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    bearer_token_matches,
    new_session,
    session_valid,
)
from deallens.security.payload_cipher import CodecError

# A /decode request carries one history page's payloads; more than this is not the Web UI.
CODEC_SERVER_MAX_BODY = 64 * 1024 * 1024


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>DealLens codec server</title></head>
<body style="font-family:sans-serif;max-width:420px;margin:40px auto"><h1 style="font-size:20px">DealLens codec server</h1>
<p>{message}</p><form method="post" action="login"><input type="password" name="token" autocomplete="off"
placeholder="TEMPORAL_CODEC_SERVER_TOKEN" style="width:100%"><button type="submit">Sign in</button></form></body></html>"""


def create_codec_app(settings: Settings) -> Starlette:
    """The remote codec endpoint. Refuses to exist without keys and a token: an open decoder
    would hand every history's contents to whoever reaches the port. Callers prove the token
    with a bearer header (CLI) or a session cookie from /login (the Web UI's browser)."""
    cipher = settings.payload_cipher()
    if cipher is None:
        raise ConfigError("TEMPORAL_CODEC_KEYS: not set; the codec server needs the keys the workers use")
    if settings.temporal_codec_server_token is None:
        raise ConfigError("TEMPORAL_CODEC_SERVER_TOKEN: not set; the codec server refuses to run unauthenticated")
    token = settings.temporal_codec_server_token.get_secret_value()
    codec = DealLensCodec(cipher)

    def endpoint(encode: bool) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if not (
                bearer_token_matches(request.headers.get("authorization"), token)
                or session_valid(request.cookies.get(SESSION_COOKIE), token)
            ):
                return PlainTextResponse(
                    "unauthorized: send Authorization: Bearer <TEMPORAL_CODEC_SERVER_TOKEN>, or sign in at /login",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            declared = request.headers.get("content-length", "0")
            if declared.isdigit() and int(declared) > CODEC_SERVER_MAX_BODY:
                return PlainTextResponse(f"request body over {CODEC_SERVER_MAX_BODY:,} bytes", status_code=413)
            body = await request.body()
            if len(body) > CODEC_SERVER_MAX_BODY:
                return PlainTextResponse(f"request body over {CODEC_SERVER_MAX_BODY:,} bytes", status_code=413)
            payloads = Payloads()
            try:
                json_format.Parse(body, payloads)
            except json_format.ParseError as error:
                first = str(error).splitlines()[0] if str(error) else "invalid JSON"
                return PlainTextResponse(f'expected {{"payloads": [...]}} (protobuf JSON): {first}', status_code=400)
            try:
                result = await (codec.encode(payloads.payloads) if encode else codec.decode(payloads.payloads))
            except (CodecError, ApplicationError) as error:
                return PlainTextResponse(str(error), status_code=400)
            # Built by hand so that an empty batch still answers {"payloads": []}.
            return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in result]})

        return handle

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def login_form(_: Request) -> HTMLResponse:
        return HTMLResponse(_LOGIN_PAGE.format(message="Sign in so that the Temporal Web UI can show decoded payloads."))

    async def login(request: Request) -> HTMLResponse:
        # A form post (application/x-www-form-urlencoded), parsed here: no multipart needed.
        form = parse_qs((await request.body())[:4096].decode(errors="replace"))
        if not bearer_token_matches(f"Bearer {form.get('token', [''])[0]}", token):
            return HTMLResponse(_LOGIN_PAGE.format(message="That is not the codec server's token."), status_code=401)
        page = HTMLResponse(_LOGIN_PAGE.format(message="Signed in: the Web UI can now decode payloads (12 hours)."))
        page.set_cookie(
            SESSION_COOKIE,
            new_session(token),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return page

    return Starlette(
        routes=[
            Route("/encode", endpoint(True), methods=["POST"]),
            Route("/decode", endpoint(False), methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=settings.codec_cors_origins,
                allow_methods=["POST"],
                allow_headers=["Authorization", "Content-Type", "X-Namespace"],
                # The UI's "include cross-origin credentials" option sends cookies / its token.
                allow_credentials=True,
                max_age=600,
            )
        ],
    )


def main() -> int:
    from deallens.config import configure_logging, load_settings

    try:
        settings = load_settings()
        app = create_codec_app(settings)
    except ConfigError as error:
        print(f"codec server: {error}", file=sys.stderr)
        return 2
    import uvicorn

    # LOG_FORMAT and the redaction of every configured secret, as in the worker.
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    host, _, port = settings.temporal_codec_bind.rpartition(":")
    uvicorn.run(app, host=host.strip("[]") or "0.0.0.0", port=int(port), log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
