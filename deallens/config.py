"""Settings from the environment (and `.env`), validated once at start-up.

Secrets are `SecretStr`: their repr is `'**********'`, so they cannot leak through logs,
exceptions or Temporal payloads by accident. Nothing here is ever passed to a workflow;
activities read settings in the worker process.

A bad value stops start-up with one line naming the variable (`ConfigError`), never a
traceback: see `load_settings`.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ALPHAVANTAGE_DEFAULT_URL = "https://www.alphavantage.co"
NEWSAPI_DEFAULT_URL = "https://newsapi.org"
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(Exception):
    """A setting is missing or invalid. The message is one line naming the variable."""


class Settings(BaseSettings):
    """The contract's environment variables (see docs/DESIGN.md, "Environment")."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://user:password@host:port/db; unset = embedded PostgreSQL under .data/",
    )

    # The Temporal connection itself is built by temporalio.envconfig in temporal_client.py
    # (which also honours TEMPORAL_API_KEY, TEMPORAL_TLS* and config-file profiles); these two
    # are declared here so that `.env` and `starter.py health` see the same values.
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    # Temporal Cloud / a TLS cluster; passed on to temporalio.envconfig (TEMPORAL_TLS* too).
    temporal_api_key: SecretStr | None = None
    # host:port for the worker's Prometheus metrics endpoint (SDK metrics); unset = off.
    temporal_metrics_bind: str | None = None

    alphavantage_api_key: SecretStr | None = None
    alphavantage_base_url: str = ALPHAVANTAGE_DEFAULT_URL
    alphavantage_premium: bool = False
    alphavantage_calls_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 5
    alphavantage_calls_per_day: Annotated[int, Field(ge=1, le=10_000_000)] = 25
    alphavantage_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0

    news_api_key: SecretStr | None = None
    newsapi_base_url: str = NEWSAPI_DEFAULT_URL

    openai_api_key: SecretStr | None = None
    openai_base_url: str = OPENAI_DEFAULT_URL
    openai_model: str = "gpt-4o-mini"

    smtp_host: str = "localhost"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    mail_from: str = "DealLens <alerts@deallens.local>"
    # Per SMTP command; a whole send (connect, TLS, login, MAIL, RCPT, DATA) stays well inside
    # NOTIFY_CLAIM_SECONDS, the claim a sender holds on a delivery while it sends.
    smtp_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0
    notify_claim_seconds: Annotated[int, Field(ge=5, le=3600)] = 180
    # Webhooks to loopback, private or link-local addresses are refused unless allowed (a user
    # could otherwise make the worker POST to internal services). `make run` allows them.
    push_allow_private_hosts: bool = False
    # Digests go at each user's local hour (users.timezone): the daily digest at DIGEST_HOUR
    # unless users.digest_hour overrides it, the weekly summary on Sunday at WEEKLY_SUMMARY_HOUR.
    digest_hour: Annotated[int, Field(ge=0, le=23)] = 7
    weekly_summary_hour: Annotated[int, Field(ge=0, le=23)] = 18

    log_level: LogLevel = Field(
        default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "CELERY_LOGLEVEL")
    )
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
    sms_provider_url: str | None = None
    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    sms_from: str | None = None

    # Where recipients reach the unsubscribe page (deallens/web/unsubscribe.py): the
    # List-Unsubscribe links point here. `make run` serves it on 127.0.0.1:8090.
    public_base_url: str = "http://127.0.0.1:8090"
    # Optional mailbox for mailto: unsubscribes (List-Unsubscribe's second form).
    unsubscribe_mailto: str | None = None

    # Retention (CleanupMarketData); 0 keeps everything. The latest quote of each company is
    # always kept, however old: alerts and the digest read it.
    retention_price_quotes_days: Annotated[int, Field(ge=0)] = 30
    retention_ohlc_days: Annotated[int, Field(ge=0)] = 0
    retention_news_days: Annotated[int, Field(ge=0)] = 365
    retention_alert_history_days: Annotated[int, Field(ge=0)] = 365
    retention_usage_days: Annotated[int, Field(ge=0)] = 400

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("smtp_tls", mode="before")
    @classmethod
    def _lower_tls(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith(("postgres://", "postgresql://")):
            # Accept the URL forms that psql and most hosts hand out.
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("expected a PostgreSQL URL such as postgresql+asyncpg://user@host:5432/deallens")
        return value

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
    """Settings from the environment, or `ConfigError` with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build their own with `load_settings`)."""
    return load_settings()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO, query string included: that would print API keys.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
