"""Settings from the environment (and `.env`), validated once at start-up.

Secrets are `SecretStr`: their repr is `'**********'`, so they cannot leak through logs,
exceptions or Temporal payloads by accident. Nothing here is ever passed to a workflow;
activities read settings in the worker process.

A bad value stops start-up with one line naming the variable (`ConfigError`), never a
traceback: see `load_settings`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from deallens.security.payload_cipher import PayloadCipher, parse_keys

ALPHAVANTAGE_DEFAULT_URL = "https://www.alphavantage.co"
NEWSAPI_DEFAULT_URL = "https://newsapi.org"
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(Exception):
    """A setting is missing or invalid. The message is one line naming the variable."""


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***` (user, host and database stay: they help)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class DatabaseUrl(str):
    """A str (SQLAlchemy and asyncpg take it as it is) whose repr hides the password.

    Not a SecretStr: every engine needs the plain URL, and a password-less URL (the embedded
    database, a socket with peer auth) is worth showing. Its repr, the settings' repr and
    their JSON dump show `user:***@host`; only `str()` and the engine see the password.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))

    @property
    def redacted(self) -> str:
        return redact_url(str(self))


# `make run` writes the settings of its embedded parts here (no secrets: see devstack.py), so
# that commands run in the checkout while it is up reach the same stack without exports.
DEVSTACK_ENV_FILE = Path(".data") / "devstack.env"

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def devstack_env_file(directory: Path | None = None) -> Path | None:
    """`.data/devstack.env` while the `make run` that wrote it is still running, else None.

    The first line names the writer's pid: a file left behind by a killed run (its stand-ins'
    ports long gone) is ignored rather than followed.
    """
    path = (directory or Path.cwd()) / DEVSTACK_ENV_FILE
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except OSError:
        return None
    match = re.search(r"pid (\d+)", first)
    if match is None:
        return None
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    return path


class Settings(BaseSettings):
    """The contract's environment variables (see docs/DESIGN.md, "Environment")."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    database_url: DatabaseUrl | None = Field(
        default=None,
        description="postgresql+asyncpg://user:password@host:port/db; unset = embedded PostgreSQL under .data/",
    )

    # The Temporal connection itself is built by temporalio.envconfig in temporal_client.py
    # (which also honours TEMPORAL_API_KEY, TEMPORAL_TLS* and config-file profiles); these two
    # are declared here so that `.env` and `starter.py health` see the same values.
    temporal_address: str = "localhost:7233"
    # The Temporal namespace every client and worker uses.
    temporal_namespace: str = "default"
    # Temporal Cloud / a TLS cluster; passed on to temporalio.envconfig (TEMPORAL_TLS* too).
    temporal_api_key: SecretStr | None = None
    # host:port of the worker's /metrics endpoint (Prometheus: the project's metrics and the
    # SDK's, deallens/observability/metrics.py); unset = off. The CLIs never bind it.
    # TEMPORAL_METRICS_BIND is the old name (it served the SDK's metrics alone).
    metrics_bind: str | None = Field(default=None, validation_alias=AliasChoices("METRICS_BIND", "TEMPORAL_METRICS_BIND"))
    # How often the worker re-reads its database gauges (freshness lag, parked deliveries, quota).
    metrics_refresh_seconds: Annotated[float, Field(ge=1, le=3600)] = 15.0
    # mTLS to Temporal Cloud or a self-hosted cluster: PEM file paths, handed to
    # temporalio.envconfig as TEMPORAL_TLS_CLIENT_CERT_PATH/KEY_PATH (TEMPORAL_TLS_CERT/KEY also
    # read); the CA only for a private CA. An API key (TEMPORAL_API_KEY) needs none of these.
    temporal_tls_client_cert_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CERT")
    )
    # The client certificate's private key (PEM), with TEMPORAL_TLS_CLIENT_CERT_PATH.
    temporal_tls_client_key_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_KEY")
    )
    # The CA that signed the cluster's server certificate, for a private CA only.
    temporal_tls_server_ca_cert_path: Path | None = None

    # Payload encryption (codec.py, deallens/security/payload_cipher.py): `id:base64,...`,
    # active key first, every key accepted for decryption; unset = payloads in clear.
    # Client, worker and codec server must all hold the same keys.
    temporal_codec_keys: SecretStr | None = None
    # The codec server (`python codec_server.py`) that lets the Web UI and CLI show decrypted
    # payloads: its bearer token, the UI origins allowed by CORS, and where it listens.
    temporal_codec_server_token: SecretStr | None = None
    # Comma-separated Web UI origins the codec server answers (CORS).
    temporal_codec_cors_origins: str = "http://localhost:8233,http://127.0.0.1:8233"
    # host:port the codec server listens on.
    temporal_codec_bind: str = "127.0.0.1:8091"

    # AlphaVantage key; unset = simulated: the worker refuses the real URL and wants
    # ALPHAVANTAGE_BASE_URL pointed at a stand-in (`make run` starts one).
    alphavantage_api_key: SecretStr | None = None
    # The AlphaVantage API (or a stand-in: `python -m deallens.sim`).
    alphavantage_base_url: str = ALPHAVANTAGE_DEFAULT_URL
    # A premium key: REALTIME_BULK_QUOTES, up to 100 symbols a call.
    alphavantage_premium: bool = False
    # Task-queue-wide rate limit of deallens-alphavantage (set the same on every worker: the server
    # applies the latest value).
    alphavantage_calls_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 5
    # The daily quota (free tier: 25), enforced from the api_usage ledger.
    alphavantage_calls_per_day: Annotated[int, Field(ge=1, le=10_000_000)] = 25
    # Per AlphaVantage request.
    alphavantage_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0
    # Provider answers are read as streams within a size cap and an overall deadline
    # (deallens/providers/bounded.py): a larger body is refused (non-retryable), a slower one retried.
    alphavantage_max_body_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 16 * 1024 * 1024
    # The whole AlphaVantage exchange, headers to last byte (a slow body is retried).
    alphavantage_deadline_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0

    # NewsAPI key; unset = simulated (as for AlphaVantage).
    news_api_key: SecretStr | None = None
    # The NewsAPI API (or a stand-in).
    newsapi_base_url: str = NEWSAPI_DEFAULT_URL

    # OpenAI key; unset = simulated (as for AlphaVantage).
    openai_api_key: SecretStr | None = None
    # Any OpenAI-compatible base URL (or a stand-in).
    openai_base_url: str = OPENAI_DEFAULT_URL
    # The chat model every LLM call uses.
    openai_model: str = "gpt-4o-mini"

    # The LLM gateway (deallens/llm/gateway.py). The budget is reserved in SQL before each
    # call and settled to the real cost after (deallens/db/llm_budget.py); over it, callers
    # fall back (sentiment to the lexicon). The per-minute limit holds across workers: the
    # deallens-llm task queue's rate limit plus a shared call slot per request.
    llm_enabled: bool = True
    # The day's (UTC) LLM spend, reserved before each call; over it, callers fall back.
    llm_daily_budget_usd: Annotated[Decimal, Field(ge=0, le=1_000_000)] = Decimal("2.00")
    # deallens-llm queue rate limit and the gateway's shared call spacing.
    llm_requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 60
    # Per OpenAI request.
    llm_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    # The whole OpenAI exchange (headers to last byte); a completion larger than the cap is refused.
    llm_deadline_seconds: Annotated[float, Field(gt=0, le=1200)] = 120.0
    # The largest OpenAI answer read (streamed; a larger one is refused, non-retryable).
    openai_max_body_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 10 * 1024 * 1024
    # A CSV like deallens/llm/openai_prices_per_1m_tokens_usd.csv, replacing the packaged prices.
    openai_prices_file: Path | None = None
    # Deal tracking (deals.track): articles per LLM deal-extraction call (and per transaction).
    deals_batch_size: Annotated[int, Field(ge=1, le=100)] = 20
    # Articles per sentiment call (issue 10: at least 10).
    sentiment_batch_size: Annotated[int, Field(ge=10, le=100)] = 20

    # The SMTP relay; not set (outside `make run`) means email is OFF: alert emails and digests are
    # skipped, said at start-up and by `starter.py health`.
    smtp_host: str = "localhost"
    # The relay's port.
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 1025
    # Login for the relay, if it wants one (see SMTP_ALLOW_PLAINTEXT_AUTH).
    smtp_username: str | None = None
    # The relay's password.
    smtp_password: SecretStr | None = None
    # none, starttls or tls; or true (tls on port 465, starttls elsewhere) / false (none).
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    # SMTP_USERNAME over an unencrypted connection sends the password in clear text: refused
    # unless this says so (loopback relays are always allowed).
    smtp_allow_plaintext_auth: bool = False
    # The From of every email; its domain makes the Message-IDs.
    mail_from: str = "DealLens <alerts@deallens.local>"
    # Per SMTP command; a whole send (connect, TLS, login, MAIL, RCPT, DATA) stays well inside
    # NOTIFY_CLAIM_SECONDS, the claim a sender holds on a delivery while it sends.
    smtp_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0
    # How long a sender's claim on a delivery holds (must outlast one send).
    notify_claim_seconds: Annotated[int, Field(ge=5, le=3600)] = 180
    # Webhooks to loopback, private or link-local addresses are refused unless allowed (a user
    # could otherwise make the worker POST to internal services). `make run` allows them.
    push_allow_private_hosts: bool = False
    # Digests go at each user's local hour (users.timezone): the daily digest at DIGEST_HOUR
    # unless users.digest_hour overrides it, the weekly summary on Sunday at WEEKLY_SUMMARY_HOUR.
    digest_hour: Annotated[int, Field(ge=0, le=23)] = 7
    # Local hour of the weekly summary, on Sundays.
    weekly_summary_hour: Annotated[int, Field(ge=0, le=23)] = 18

    # DEBUG, INFO, WARNING, ERROR or CRITICAL (case-insensitive).
    log_level: LogLevel = Field(
        default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "CELERY_LOGLEVEL")
    )
    # text for a terminal; json: one JSON object per line, with workflow_id, run_id,
    # activity_type and attempt wherever they exist (deallens/logs.py).
    log_format: Literal["text", "json"] = "text"
    # Concurrent activities per worker process (the database pool follows, up to 20).
    worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=20, validation_alias=AliasChoices("WORKER_CONCURRENCY", "CELERY_CONCURRENCY")
    )

    # At most this many symbols per SyncCompanyPrices run without symbols (tracked companies
    # by priority); the daily quota, paced over the session, usually allows fewer.
    price_sync_max_symbols: Annotated[int, Field(ge=1, le=10_000)] = 5
    # Companies whose fundamentals one SyncFundamentals run refreshes (stalest first).
    fundamentals_max_symbols: Annotated[int, Field(ge=1, le=10_000)] = 5

    # Alerts never fire (nor re-arm) on a quote older than this.
    alert_max_quote_age_seconds: Annotated[int, Field(ge=10, le=7 * 86_400)] = 900
    # SMS is ready (a provider interface and the ledger's channel) but off by default. The
    # provider speaks the Twilio-compatible Messages API (deallens/notify/sms.py).
    sms_enabled: bool = False
    # The Twilio-compatible Messages API; required with SMS_ENABLED.
    sms_provider_url: str | None = None
    # The SMS account; required with SMS_ENABLED.
    sms_account_sid: str | None = None
    # The SMS account's token; required with SMS_ENABLED.
    sms_auth_token: SecretStr | None = None
    # The sending number; required with SMS_ENABLED.
    sms_from: str | None = None

    # Where recipients reach the unsubscribe page (deallens/web/unsubscribe.py): the
    # List-Unsubscribe links point here. `make run` serves it on 127.0.0.1:8090.
    public_base_url: str = "http://127.0.0.1:8090"
    # host:port that `python -m deallens.web` (the unsubscribe page in production) listens on.
    web_bind: str = "127.0.0.1:8090"
    # Optional mailbox for mailto: unsubscribes (List-Unsubscribe's second form).
    unsubscribe_mailto: str | None = None

    # Retention (CleanupMarketData); 0 keeps everything. The latest quote of each company is
    # always kept, however old: alerts and the digest read it.
    retention_price_quotes_days: Annotated[int, Field(ge=0)] = 30
    # Daily bars' retention in days; 0 keeps every bar.
    retention_ohlc_days: Annotated[int, Field(ge=0)] = 0
    # News articles' retention in days.
    retention_news_days: Annotated[int, Field(ge=0)] = 365
    # Alert firings' (and their deliveries') retention in days.
    retention_alert_history_days: Annotated[int, Field(ge=0)] = 365
    # The api_usage ledger's (and bar_sync_receipts') retention in days.
    retention_usage_days: Annotated[int, Field(ge=0)] = 400

    # News ingestion (issue 10). The daily quota is enforced from the api_usage ledger, one
    # reservation per request (the free Developer plan: 100 requests a day); the task queue's
    # rate limit spaces requests across workers.
    newsapi_calls_per_day: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    # deallens-newsapi queue rate limit.
    newsapi_calls_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 30
    # Per NewsAPI request.
    newsapi_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0
    # The largest NewsAPI page read (streamed; a larger one is refused, non-retryable).
    newsapi_max_body_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 5 * 1024 * 1024
    # The whole NewsAPI exchange, headers to last byte (a slow body is retried).
    newsapi_deadline_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    # The plan's result cap per query (100 on the Developer plan): paging stops there.
    newsapi_max_results: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Give each feed (market, company, deal) a third of the daily quota, spread over the UTC
    # day (by each hour, its share plus an hour's worth), so that the night's company runs
    # cannot spend what the day's market news needs.
    newsapi_pace_daily_quota: bool = True
    # Requests one IngestMarketNews run may spend (each request is one page of one query).
    news_market_max_requests: Annotated[int, Field(ge=1, le=100)] = 2
    # Requests one IngestDealNews run may spend.
    news_deal_max_requests: Annotated[int, Field(ge=1, le=100)] = 1
    # Companies one IngestCompanyNews run without company_ids fetches.
    news_company_max_companies: Annotated[int, Field(ge=1, le=1000)] = 3
    # The first fetch of a company (or a feed) looks back this far (the Developer plan serves 30 days).
    news_first_fetch_days: Annotated[int, Field(ge=1, le=30)] = 3

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def secret_values(self) -> list[str]:
        """Every configured secret in clear text, for the log redaction (never to be shown)."""
        values = [
            getattr(self, name).get_secret_value()
            for name, info in type(self).model_fields.items()
            if "SecretStr" in str(info.annotation) and getattr(self, name) is not None
        ]
        if self.temporal_codec_keys is not None:
            # Each key on its own as well: a line may quote one entry, not the whole list.
            for entry in self.temporal_codec_keys.get_secret_value().split(","):
                values.append(entry.partition(":")[2].strip())
        if self.database_url is not None:
            password = urlsplit(str(self.database_url)).password
            if password:
                values.append(password)
        return [v for v in values if v]

    @field_validator("smtp_tls", mode="before")
    @classmethod
    def _tls_mode(cls, value: object, info: ValidationInfo) -> object:
        """none/starttls/tls, or the common booleans: true means encrypted, which is implicit
        TLS on port 465 (SMTPS) and STARTTLS on any other port (587, 25); false means none."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str):
            return value
        value = value.strip().lower()
        if value in ("true", "yes", "on", "1"):
            return "tls" if info.data.get("smtp_port") == 465 else "starttls"
        if value in ("false", "no", "off", "0", ""):
            return "none"
        if value not in ("none", "starttls", "tls"):
            raise ValueError(f"expected none, starttls, tls, or true/false, got {value!r}")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _asyncpg_url(cls, value: object) -> DatabaseUrl | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError("expected a PostgreSQL URL such as postgresql+asyncpg://user@host:5432/deallens")
        if value.startswith(("postgres://", "postgresql://")):
            # Accept the URL forms that psql and most hosts hand out.
            return DatabaseUrl("postgresql+asyncpg://" + value.split("://", 1)[1])
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("expected a PostgreSQL URL such as postgresql+asyncpg://user@host:5432/deallens")
        return DatabaseUrl(value)

    @field_validator("database_url", mode="after")
    @classmethod
    def _keep_redacting(cls, value: str | None) -> DatabaseUrl | None:
        # pydantic's str validation hands back a plain str: make it the redacting kind again.
        return None if value is None else DatabaseUrl(value)

    @field_serializer("database_url")
    def _dump_redacted(self, value: DatabaseUrl | None) -> str | None:
        return None if value is None else redact_url(str(value))

    @model_validator(mode="after")
    def _no_plaintext_password(self) -> Settings:
        if (
            self.smtp_username
            and self.smtp_tls == "none"
            and not self.smtp_allow_plaintext_auth
            and not is_loopback_host(self.smtp_host)
        ):
            # Raised as ConfigError (not ValueError) so that it passes pydantic unchanged.
            raise ConfigError(
                f"SMTP_TLS: none, but SMTP_USERNAME is set for {self.smtp_host}: the password would cross the "
                "network in clear text; set SMTP_TLS=starttls (or tls on port 465), or SMTP_ALLOW_PLAINTEXT_AUTH=true"
            )
        return self

    @field_validator("temporal_codec_keys")
    @classmethod
    def _codec_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parse_keys(value.get_secret_value())  # ValueError names the key id, never the key
        return value

    @field_validator("temporal_codec_server_token")
    @classmethod
    def _codec_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("too short: use at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("temporal_codec_cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
                raise ValueError(f"{origin!r} is not an origin such as https://temporal-ui.example.com (no path)")
        return value

    @property
    def codec_cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.temporal_codec_cors_origins.split(",") if o.strip()]

    def payload_cipher(self) -> PayloadCipher | None:
        """The cipher of TEMPORAL_CODEC_KEYS, or None when payloads go in clear."""
        if self.temporal_codec_keys is None:
            return None
        return PayloadCipher.from_spec(self.temporal_codec_keys.get_secret_value())

    @field_validator("sms_provider_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[!#-;=?-~]+", value):
            raise ValueError("expected an http:// or https:// URL without spaces or quotes")
        return value.rstrip("/")

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]+@[A-Za-z0-9.-]+", value):
            raise ValueError("expected a bare address such as unsubscribe@example.com")
        return value

    @field_validator("metrics_bind")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})", value)
        if match is None or int(match.group(2)) > 65535:
            raise ValueError("expected host:port, e.g. 0.0.0.0:9464 or 127.0.0.1:9464 ([::1]:9464 for IPv6)")
        return value

    @field_validator("alphavantage_base_url", "newsapi_base_url", "openai_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def alphavantage_simulated(self) -> bool:
        """No key: the data comes from the local stand-in (deallens/sim) and is stored as such."""
        return self.alphavantage_api_key is None

    @property
    def newsapi_simulated(self) -> bool:
        return self.news_api_key is None

    @property
    def openai_simulated(self) -> bool:
        return self.openai_api_key is None

    def check_providers(self) -> None:
        """Refuse to send a keyless request to a real provider: point it at a stand-in instead."""
        pairs = (
            ("ALPHAVANTAGE", self.alphavantage_api_key, self.alphavantage_base_url, ALPHAVANTAGE_DEFAULT_URL),
            ("NEWS_API", self.news_api_key, self.newsapi_base_url, NEWSAPI_DEFAULT_URL),
            ("OPENAI", self.openai_api_key, self.openai_base_url, OPENAI_DEFAULT_URL),
        )
        for name, key, url, real in pairs:
            if key is None and url == real:
                url_var = "NEWSAPI_BASE_URL" if name == "NEWS_API" else f"{name}_BASE_URL"
                raise ConfigError(
                    f"{name}_API_KEY is not set and {url_var} points at the real provider ({real}): "
                    f"set the key, or point {url_var} at a stand-in (`python -m deallens.sim`, or run `make run`)"
                )


    def check_notifications(self) -> None:
        """SMS switched on needs its provider: say which variable is missing, at start-up."""
        if not self.sms_enabled:
            return
        for name in ("sms_provider_url", "sms_account_sid", "sms_auth_token", "sms_from"):
            if getattr(self, name) is None:
                raise ConfigError(f"{name.upper()}: not set, and SMS_ENABLED is true (set it, or SMS_ENABLED=false)")

    @property
    def email_enabled(self) -> bool:
        """Email goes out only to an SMTP server someone configured (SMTP_HOST, or `make run`'s
        sink, which sets it): a worker without one never guesses localhost:1025."""
        return "smtp_host" in self.model_fields_set and bool(self.smtp_host.strip())

    @property
    def email_off_reason(self) -> str | None:
        """Why email is off, for the start-up banner, `starter.py health` and skipped deliveries."""
        if self.email_enabled:
            return None
        return "email is OFF: SMTP_HOST is not set (set SMTP_HOST/SMTP_PORT, or use `make run` and its sink)"

    @property
    def mail_domain(self) -> str:
        """The domain of MAIL_FROM: the right-hand side of every Message-ID we make."""
        from email.utils import parseaddr

        address = parseaddr(self.mail_from)[1]
        return address.rpartition("@")[2] or "deallens.local"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = first.get("loc") or ("?",)
    where = str(loc[0])
    field, field_info = where, Settings.model_fields.get(where)
    for name, info in Settings.model_fields.items():
        aliases = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else ()
        if where.upper() in (str(alias).upper() for alias in aliases):
            field, field_info = name, info
    env_name = field.upper()
    if field_info is not None and isinstance(field_info.validation_alias, AliasChoices):
        env_name = str(field_info.validation_alias.choices[0])
    value = first.get("input")
    secret = field_info is not None and field_info.annotation is not None and "SecretStr" in str(field_info.annotation)
    # A database URL may carry a password: never echo it.
    shown = "" if field_info is None or secret or field == "database_url" else f" (got {value!r})"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{env_name}: {message}{shown}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or `ConfigError` with one line naming the variable.

    Precedence: the process environment, then `.env`, then the settings of a `make run` that
    is up in this directory (`.data/devstack.env`). `_env_file` replaces both files.
    """
    if "_env_file" not in overrides:
        running = devstack_env_file()
        overrides["_env_file"] = (running, ".env") if running is not None else ".env"
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build their own with `load_settings`)."""
    return load_settings()


def configure_logging(
    level: str, log_format: str = "text", *, secrets: Iterable[str] = (), context: Callable[[], Any] | None = None
) -> None:
    """Text or JSON lines (deallens/logs.py), with `secrets` (see Settings.secret_values) redacted
    and, given a `context` provider, the running activity's identifiers on every record."""
    from deallens import logs

    logs.configure(level, "json" if log_format == "json" else "text", secrets=secrets, context=context)
