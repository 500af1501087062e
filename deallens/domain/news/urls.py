"""Canonical article URLs: the first level of news dedup (unique news_articles.canonical_url).

Outlets and aggregators hand out one article under many URLs: tracking parameters
(utm_*, fbclid, ...), http/https, host case, `www.`/`m.`/`amp.` hosts, `/amp` paths and
`?outputType=amp`, trailing slashes, fragments, reordered query strings. w3lib (Scrapy's URL
library) does the RFC-level canonicalisation (percent-encoding, sorted query, no fragment);
the news-specific rules — which parameters track and which host and path variants are the
same page — are ours, listed here.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

# Parameters that say who sent the reader, never which page: dropped.
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "mc_cid", "mc_eid", "ocid", "cmpid",
        "icid", "igshid", "yclid", "twclid", "ttclid", "li_fat_id", "_hsenc", "_hsmi", "hsctatracking",
        "mkt_tok", "oly_anon_id", "oly_enc_id", "rb_clickid", "s_cid", "vero_id", "wickedid", "ncid",
        "ref", "ref_src", "referrer", "smid", "sr_share", "taid", "soc_src", "soc_trk",
        "guccounter", "guce_referrer", "guce_referrer_sig", "__twitter_impression", "amp", "outputtype",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "at_", "__hs", "hsa_")
# Host prefixes that serve the same article as the bare domain.
_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.", "www-")
# Path forms of AMP pages: /amp, /amp/, /amp.html, ending .amp, ".amp.html"; and /index.html.
_AMP_PATH = re.compile(r"(?:/amp(?:\.html?)?|\.amp(?=\.html?$)|\.amp)$", re.IGNORECASE)
_INDEX_PAGE = re.compile(r"/index\.(?:html?|php|aspx?)$", re.IGNORECASE)
_AMP_SEGMENT = re.compile(r"^/amp(?=/)", re.IGNORECASE)
MAX_URL_LENGTH = 2048


class UnusableUrl(ValueError):
    """Not an absolute http(s) URL of a page: the article cannot be stored."""


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(TRACKING_PREFIXES)


def _host(netloc: str) -> str:
    host = netloc.rsplit("@", 1)[-1].lower()
    if host.endswith(":80") or host.endswith(":443"):
        host = host.rsplit(":", 1)[0]
    host = host.rstrip(".")
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix) and host.count(".") >= 2:
            return host[len(prefix) :]
    return host


def _path(path: str) -> str:
    path = _AMP_SEGMENT.sub("", path)
    path = _INDEX_PAGE.sub("", path)
    path = _AMP_PATH.sub("", path)
    path = re.sub(r"/{2,}", "/", path).rstrip("/")
    return path or "/"


def canonical_url(url: str) -> str:
    """The one URL every variant of this article's address maps to.

    The scheme is always https (outlets serve both; none serves different pages), the host
    loses case, a port that is the default, credentials and www./m./amp. prefixes; the path
    loses AMP forms, index pages and trailing slashes; the query loses tracking parameters
    and is sorted; the fragment goes. Raises UnusableUrl for anything that is not an
    absolute http(s) URL.
    """
    text = url.strip()
    if not text or len(text) > MAX_URL_LENGTH:
        raise UnusableUrl("url is empty" if not text else f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise UnusableUrl("url contains whitespace or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as error:
        raise UnusableUrl(f"url cannot be parsed: {error}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UnusableUrl("url is not an absolute http(s) URL")
    host = _host(parts.netloc)
    if not host or "." not in host:
        raise UnusableUrl("url has no usable host")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    rebuilt = urlunsplit(("https", host, _path(parts.path), urlencode(query), ""))
    return canonicalize_url(rebuilt, keep_fragments=False)
