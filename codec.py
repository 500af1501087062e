"""The payload codec of every client, worker and replayer, and the codec server for the Web UI.

Two jobs on the way out, one on the way in:

* encrypt (when TEMPORAL_CODEC_KEYS is set): each Payload is serialized whole (metadata and
  data) and sealed with AES-GCM (deallens/security/payload_cipher.py), so that the history
  on Temporal's database holds `binary/encrypted` blobs and a key id, never the values;
* refuse oversize payloads early: Temporal rejects a payload field over 2 MiB (the server's
  blob size limit). The SDK would find out only when the server (or
  core) refuses it, with a retryable `PayloadsTooLarge` that retries the same oversize
  result again; here it fails once, non-retryable, with one line naming the activity or
  workflow and the size, measured after encryption (what the server would see);
* decrypt on the way in, passing unencrypted payloads through unchanged: histories recorded
  before the codec was switched on (tests/histories/) still decode and replay.

The codec server (`python codec.py serve`) speaks the Web UI's and CLI's "remote codec"
protocol: POST /decode and /encode with `{"payloads": [...]}` (protobuf JSON, base64 data),
behind `Authorization: Bearer <TEMPORAL_CODEC_SERVER_TOKEN>`, with CORS for the UI origins.
It lives here rather than in deallens/web because it speaks Temporal's Payload protobuf;
the crypto and the token check are in deallens/security.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from urllib.parse import parse_qs

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

from deallens.config import ConfigError, Settings
from deallens.security.codec_auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    bearer_token_matches,
    new_session,
    session_valid,
)
from deallens.security.payload_cipher import ENCRYPTED_ENCODING, KEY_ID_METADATA, CodecError, PayloadCipher

# Temporal's default (dynamic config limit.blobSize.error): the figure the SDK core checks, so
# the guard refuses exactly what the server would refuse, only earlier. (From 512 KiB, the
# warning size, the SDK core already logs a warning of its own.)
PAYLOAD_ERROR_BYTES = 2 * 1024 * 1024
PAYLOAD_TOO_LARGE = "PayloadTooLarge"
# A /decode request carries one history page's payloads; more than this is not the Web UI.
CODEC_SERVER_MAX_BODY = 64 * 1024 * 1024


def _where(context: SerializationContext | None) -> str:
    """What a payload belongs to, for the one-line error (as much as the SDK tells us)."""
    if isinstance(context, ActivitySerializationContext):
        what = f"activity {context.activity_type or '?'}"
        workflow_type = getattr(context, "workflow_type", None)
        if workflow_type or context.workflow_id:
            what += f" of workflow {workflow_type or '?'} ({context.workflow_id or '?'})"
        return what
    if isinstance(context, WorkflowSerializationContext):
        return f"workflow {context.workflow_id}"
    return "a call (no workflow or activity named by the SDK)"


class DealLensCodec(PayloadCodec, WithSerializationContext):
    """Encrypts (when given a cipher), bounds sizes, and decrypts what it encrypted."""

    def __init__(self, cipher: PayloadCipher | None, context: SerializationContext | None = None) -> None:
        self.cipher = cipher
        self.context = context

    def with_context(self, context: SerializationContext) -> DealLensCodec:
        return DealLensCodec(self.cipher, context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = [self._encrypt(p) for p in payloads] if self.cipher else list(payloads)
        self._check_size(encoded)
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        assert self.cipher is not None
        key_id, blob = self.cipher.encrypt(payload.SerializeToString())
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=blob,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload  # written before the codec was on (or by a codec-less client)
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        if self.cipher is None:
            raise CodecError(
                f"payload is encrypted (key id {key_id!r}) but TEMPORAL_CODEC_KEYS is not set in this process"
            )
        inner = Payload()
        inner.ParseFromString(self.cipher.decrypt(key_id, payload.data))
        return inner

    def _check_size(self, payloads: Sequence[Payload]) -> None:
        # The server limits each payload-bearing field (all arguments of one call together).
        size = sum(p.ByteSize() for p in payloads)
        if size > PAYLOAD_ERROR_BYTES:
            raise ApplicationError(
                f"payload of {_where(self.context)} is {size:,} bytes, over Temporal's {PAYLOAD_ERROR_BYTES:,}-byte "
                "(2 MiB) limit: refused before sending; pass database ids or pages instead",
                type=PAYLOAD_TOO_LARGE,
                non_retryable=True,
            )


def data_converter(settings: Settings | None) -> DataConverter:
    """The pydantic converter with DealLens's codec: encrypting when TEMPORAL_CODEC_KEYS is set.

    With the codec on, failure messages and stack traces move into an encoded (so encrypted)
    attribute as well: they can quote values (a symbol list, a bad input) as much as payloads.
    """
    cipher = settings.payload_cipher() if settings is not None else None
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=DealLensCodec(cipher),
        failure_converter_class=(
            DefaultFailureConverterWithEncodedAttributes if cipher else pydantic_data_converter.failure_converter_class
        ),
    )


# ------------------------------------------------------------------ codec server


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

    def endpoint(encode: bool):  # type: ignore[no-untyped-def]
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


def main(argv: list[str]) -> int:
    """`python codec.py serve` runs the codec server; `python codec.py new-key [ID]` prints a
    TEMPORAL_CODEC_KEYS entry."""
    from deallens.config import configure_logging, load_settings
    from deallens.security.payload_cipher import new_key

    command = argv[0] if argv else "serve"
    if command == "new-key":
        print(f"{argv[1] if len(argv) > 1 else 'k1'}:{new_key()}")
        return 0
    if command != "serve":
        print(f"unknown command {command!r}: expected serve or new-key", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        app = create_codec_app(settings)
    except ConfigError as error:
        print(f"codec server: {error}", file=sys.stderr)
        return 2
    import uvicorn

    configure_logging(settings.log_level)
    host, _, port = settings.temporal_codec_bind.rpartition(":")
    uvicorn.run(app, host=host.strip("[]") or "0.0.0.0", port=int(port), log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
