"""A rendered email as a MIME message, ready for SMTP.

Structure: multipart/alternative(text/plain, multipart/related(text/html, image/png...)) when
the HTML shows inline images (each `cid:` reference has a part with that Content-ID), and
multipart/alternative(text/plain, text/html) otherwise.

Headers: every value set here goes through `header_safe` (CR, LF and other control characters
collapsed to a space) so that untrusted text (an alert name, a company name) cannot start a new
header; addresses and the Message-ID are validated instead, since "fixing" them would change
where the mail goes. One-click unsubscribe per RFC 8058 (List-Unsubscribe + List-Unsubscribe-Post).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
from collections.abc import Mapping
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP
from email.utils import format_datetime, formataddr, getaddresses

from deallens.notify.content import RenderedEmail

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: all end or break a line somewhere.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional overrides/isolates: invisible, and used to disguise text (a spoofed sender, a file name).
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII except ":"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"  # RFC 5322 dot-atom-text (loosely: dots anywhere)
_MESSAGE_ID = re.compile(rf"^<{_ATEXT}@{_ATEXT}>$")
# What a Content-ID may hold here: it is written into a header and a filename unquoted.
_CID = re.compile(rf"^{_ATEXT}@[A-Za-z0-9.-]+$")
_URL = re.compile(r"^https?://[!#-;=?-~]+$", re.IGNORECASE)  # printable ASCII but space, ", <, >
_MAILTO = re.compile(r"^mailto:[!#-;=?-~]+@[!#-;=?-~]+$", re.IGNORECASE)
_MAX_LINE = 78

# Headers this module owns (or that define the MIME structure): `headers=` may not set them.
_RESERVED = frozenset(
    name.lower()
    for name in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Sender", "Reply-To", "Return-Path",
        "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
    )
)  # fmt: skip


def header_safe(value: str, limit: int = 200) -> str:
    """`value` as one header-safe line: control characters (CR, LF, tab, NUL, ...) and runs of
    whitespace collapsed to one space, bidi overrides dropped, trimmed, at most `limit`
    characters (cut with "…")."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    text = _CONTROL.sub(" ", value)
    if not text.isascii():
        text = _BIDI.sub("", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


# The MIME structure's headers repeat from message to message (same boundaries, same image
# parts per company), and the generator re-parses Content-Type several times per part while
# serializing: parsed once here, they cost nothing after the first message of a batch.
_STRUCTURAL = frozenset(("content-type", "content-transfer-encoding", "content-disposition", "content-id"))


@functools.lru_cache(maxsize=8192)
def _parsed(registry: HeaderRegistry, name: str, value: str) -> BaseHeader:
    return HeaderRegistry.__call__(registry, name, value)


class _CachedHeaders(HeaderRegistry):
    """The default header registry, with a cache of parsed MIME structure headers (the header
    objects are immutable strings, so sharing them between messages is safe)."""

    def __call__(self, name: str, value: str) -> BaseHeader:
        if name.lower() in _STRUCTURAL:
            return _parsed(self, name, value)
        return super().__call__(name, value)


# SMTP: CRLF line endings, so `as_bytes()` is what goes on the wire.
# refold_source="none": a raw value set below (List-Unsubscribe) is written exactly as given;
# the policy's refolding would turn a long URL into RFC 2047 encoded words, which no mail
# client reads as a link. Header objects (Subject, To, ...) still fold and encode as usual.
POLICY = SMTP.clone(header_factory=_CachedHeaders(), refold_source="none")

# Fixed boundaries: "=_" cannot occur in a quoted-printable or base64 body (a QP "=" is followed
# by two hex digits or a line end; base64 has "=" only as final padding), so these never
# collide with a body, need no search, and keep the output reproducible.
_ALT_BOUNDARY = "=_DealLens_alternative_8c1f"
_REL_BOUNDARY = "=_DealLens_related_8c1f"


def _header(part: MIMEPart, name: str, value: str) -> None:
    """Set a header whose value is already one safe line. Short ASCII values are stored as they
    are (the policy writes them unchanged, skipping the header parser: most of the cost of
    building a message); others go through the policy (RFC 2047 encoding, folding)."""
    if value.isascii() and len(name) + 2 + len(value) <= _MAX_LINE:
        part.set_raw(name, value)
    else:
        part[name] = value


def _multipart(part: MIMEPart, subtype: str, boundary: str, type_: str | None = None) -> None:
    extra = f'; type="{type_}"' if type_ else ""
    part.set_raw("Content-Type", f'multipart/{subtype}; boundary="{boundary}"{extra}')
    part.set_payload([])


def _text_part(text: str, subtype: str) -> MIMEPart:
    """A UTF-8 text part, quoted-printable: 7-bit for any SMTP server, readable in the source."""
    part = MIMEPart(policy=POLICY)
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    part.set_raw("Content-Transfer-Encoding", "quoted-printable")
    # binascii's encoder (C): lines of at most 76 characters, "\n" kept as the line break.
    part.set_payload(binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii"))
    return part


def _png_part(cid: str, png: bytes) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    filename = cid.split("@", 1)[0]
    part.set_raw("Content-Type", f'image/png; name="{filename}.png"')
    part.set_raw("Content-Transfer-Encoding", "base64")
    part.set_raw("Content-Disposition", f'inline; filename="{filename}.png"')
    part.set_raw("Content-ID", f"<{cid}>")
    part.set_payload(base64.encodebytes(png).decode("ascii"))
    return part


_ADDRESS_SPECIALS = re.compile(r'[<>@,;:"\\()\[\]]+')


def display_name(value: str) -> str:
    """A user's name as a safe display name for `To`: one line, and no address punctuation.

    formataddr quotes specials, but a long or non-ASCII name is RFC 2047-encoded, and the
    email package's refolding then writes the decoded words without their quotes: a name
    like "Ana Bcc: thief@evil.example" would become a group with a second recipient (whom
    the envelope, read from the headers, would mail). Without < > @ , ; : " \\ ( ) [ ] no
    reading of the name can hold an address.
    """
    return " ".join(_ADDRESS_SPECIALS.sub(" ", header_safe(value, 100)).split())


def _address(value: str, what: str) -> str:
    """One address, as given: a comma (or a group) would add recipients to a user's email."""
    if _CONTROL.search(value) or not value.strip():
        raise ValueError(f"{what}: an address without control characters is required, got {value!r}")
    value = value.strip()
    parsed = getaddresses([value])
    if len(parsed) != 1 or not parsed[0][1] or "@" not in parsed[0][1] or any(c in value for c in ",;:"):
        # ":" would start a group in `To` unless inside a display name, which `to_name` is for.
        if not (what == "sender" and len(parsed) == 1 and parsed[0][1]):
            raise ValueError(f"{what}: exactly one email address is required, got {value!r}")
    return value


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    to: str,
    to_name: str | None,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str | None = None,
    date: dt.datetime | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The MIME message for `rendered`: serialize with `message.as_bytes()` (or hand it to
    aiosmtplib.send). Raises ValueError on a malformed address, Message-ID or unsubscribe URL,
    or an extra header that is not a valid name or is one set here."""
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"message_id must look like <unique@domain>, got {message_id!r}")
    if not _URL.match(unsubscribe_url):
        raise ValueError(f"unsubscribe_url must be an http(s) URL, got {unsubscribe_url!r}")
    if unsubscribe_mailto is not None and not _MAILTO.match(unsubscribe_mailto):
        raise ValueError(f"unsubscribe_mailto must be a mailto: URL, got {unsubscribe_mailto!r}")
    sender = _address(sender, "sender")
    to = _address(to, "to")
    name = display_name(to_name) if to_name else ""

    msg = EmailMessage(policy=POLICY)
    _header(msg, "From", sender)
    _header(msg, "To", formataddr((name, to)) if name else to)
    _header(msg, "Subject", header_safe(rendered.subject, 200))
    _header(msg, "Date", format_datetime(date or dt.datetime.now(dt.UTC)))
    _header(msg, "Message-ID", message_id)
    unsubscribe = f"<{unsubscribe_url}>"
    if unsubscribe_mailto:
        unsubscribe += f", <{unsubscribe_mailto}>"
    # Validated printable ASCII: one line (up to RFC 5322's 998), never encoded.
    msg.set_raw("List-Unsubscribe", unsubscribe)
    _header(msg, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    _header(msg, "Auto-Submitted", "auto-generated")
    for key, value in (headers or {}).items():
        if not _HEADER_NAME.match(key) or key.lower() in _RESERVED:
            raise ValueError(f"headers: {key!r} is not an extra header this message may carry")
        _header(msg, key, header_safe(value, 900))
    msg.set_raw("MIME-Version", "1.0")

    _multipart(msg, "alternative", _ALT_BOUNDARY)
    msg.attach(_text_part(rendered.text, "plain"))
    if not rendered.images:
        msg.attach(_text_part(rendered.html, "html"))
        return msg

    related = MIMEPart(policy=POLICY)
    _multipart(related, "related", _REL_BOUNDARY, type_="text/html")
    related.attach(_text_part(rendered.html, "html"))
    for cid, png in rendered.images.items():
        if not _CID.match(cid):
            raise ValueError(f"images: malformed Content-ID {cid!r}")
        related.attach(_png_part(cid, png))
    msg.attach(related)
    return msg
