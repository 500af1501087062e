"""Who may use the codec server: a bearer token, or a session cookie signed with it.

The CLI sends `Authorization: Bearer <TEMPORAL_CODEC_SERVER_TOKEN>` (`--codec-auth`). The
Web UI cannot send a fixed header: it can only pass its own login's access token, or the
browser's cookies for the codec server ("include cross-origin credentials",
TEMPORAL_CODEC_INCLUDE_CREDENTIALS). So an operator signs in once at the codec server's
/login with the token, and gets an HttpOnly, SameSite=Strict cookie that says so until it
expires. The cookie holds an expiry and an HMAC of it under the token, never the token:
changing the token ends every session.

Every comparison is constant-time (hmac.compare_digest), so response timing tells nothing
about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SESSION_COOKIE = "deallens_codec_session"
SESSION_SECONDS = 12 * 3600


def bearer_token_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time (no early exit on a prefix)."""
    if not header or not token:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def _signature(token: str, expires: int) -> str:
    return hmac.new(token.encode(), f"codec-session:{expires}".encode(), hashlib.sha256).hexdigest()


def new_session(token: str, now: float | None = None) -> str:
    expires = int(now if now is not None else time.time()) + SESSION_SECONDS
    return f"{expires}.{_signature(token, expires)}"


def session_valid(cookie: str | None, token: str, now: float | None = None) -> bool:
    if not cookie or not token:
        return False
    expires, _, signature = cookie.partition(".")
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature.encode(), _signature(token, int(expires)).encode())
