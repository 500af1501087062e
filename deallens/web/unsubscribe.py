"""Unsubscribe links: GET shows a confirmation, POST unsubscribes (RFC 8058 one-click too).

A GET never changes anything: mail scanners and link previews open every link in a message,
and an unsubscribe that happened on GET would unsubscribe people who never clicked. Mail
clients that support one-click (Gmail, Apple Mail) POST `List-Unsubscribe=One-Click`
to the same URL, which is the path that acts.
"""

from __future__ import annotations

import html

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from deallens.db import notifications

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>DealLens: {title}</title></head>
<body style="margin:0;background:#f4f5f7;font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;font-size:16px;color:#1f2933">
<div style="max-width:480px;margin:40px auto;padding:24px;background:#fff;border-radius:8px">
<h1 style="font-size:20px;margin:0 0 12px">{title}</h1>{body}</div></body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def _params(request: Request) -> tuple[str, str] | None:
    token = request.query_params.get("token", "")
    list_name = request.query_params.get("list", "all")
    if not token or len(token) > 64 or list_name not in notifications.UNSUBSCRIBE_LISTS:
        return None
    return token, list_name


def _invalid() -> HTMLResponse:
    return _page("This link is not valid", "<p>This unsubscribe link is incomplete or has expired. "
                 "Use the link in the most recent email you received.</p>", status=404)


def create_app(engine: AsyncEngine) -> Starlette:
    async def confirm(request: Request) -> HTMLResponse:
        params = _params(request)
        email = await notifications.token_owner(engine, params[0]) if params else None
        if params is None or email is None:
            return _invalid()
        what = notifications.UNSUBSCRIBE_LISTS[params[1]][1]
        # Relative: behind a TLS-terminating proxy the absolute URL would be http:// (and would
        # echo whatever Host header came in).
        action = html.escape("?" + str(request.url.query), quote=True)
        return _page(
            "Unsubscribe?",
            f"<p>Stop sending {html.escape(what)} to <b>{html.escape(email)}</b>?</p>"
            f'<form method="post" action="{action}"><button type="submit" '
            'style="font-size:16px;padding:10px 18px;border:0;border-radius:6px;background:#1f6feb;color:#fff">'
            "Unsubscribe</button></form>",
        )

    async def apply(request: Request) -> HTMLResponse:
        params = _params(request)
        email = await notifications.unsubscribe(engine, *params) if params else None
        if params is None or email is None:
            return _invalid()
        what = notifications.UNSUBSCRIBE_LISTS[params[1]][1]
        return _page(
            "You are unsubscribed",
            f"<p>We will no longer send {html.escape(what)} to <b>{html.escape(email)}</b>.</p>",
        )

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/unsubscribe", confirm, methods=["GET"]),
            Route("/unsubscribe", apply, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
