"""Settings: contract env names, aliases, secrets, and one-line errors naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deallens.config import ConfigError, load_settings
from tests.conftest import ROOT


def test_contract_names_and_celery_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_LOGLEVEL", "debug")
    monkeypatch.setenv("CELERY_CONCURRENCY", "7")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "prod")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db:5432/deallens")
    settings = load_settings(_env_file=None)
    assert settings.log_level == "DEBUG"
    assert settings.worker_concurrency == 7
    assert settings.temporal_namespace == "prod"
    # URLs as psql and hosting providers hand them out are accepted and made asyncpg URLs.
    assert settings.database_url == "postgresql+asyncpg://u@db:5432/deallens"


def test_digest_hours_from_the_environment_reach_the_digest_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.notifications import NotifyConfig

    monkeypatch.setenv("DIGEST_HOUR", "6")
    monkeypatch.setenv("WEEKLY_SUMMARY_HOUR", "20")
    config = NotifyConfig.from_settings(load_settings(_env_file=None))
    assert (config.digest_hour, config.weekly_summary_hour) == (6, 20)
    monkeypatch.delenv("DIGEST_HOUR")
    monkeypatch.delenv("WEEKLY_SUMMARY_HOUR")
    config = NotifyConfig.from_settings(load_settings(_env_file=None))
    assert (config.digest_hour, config.weekly_summary_hour) == (7, 18)


def test_primary_names_win_over_celery_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    monkeypatch.setenv("CELERY_LOGLEVEL", "DEBUG")
    assert load_settings(_env_file=None).log_level == "ERROR"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("WORKER_CONCURRENCY", "zero", "WORKER_CONCURRENCY: "),
        ("CELERY_CONCURRENCY", "0", "WORKER_CONCURRENCY: Input should be greater than or equal to 1"),
        ("SMTP_PORT", "99999", "SMTP_PORT: "),
        ("SMTP_TLS", "maybe", "SMTP_TLS: "),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: expected a PostgreSQL URL"),
        ("ALPHAVANTAGE_BASE_URL", "ftp://x", "ALPHAVANTAGE_BASE_URL: expected an http:// or https:// URL"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: "),
        ("DIGEST_HOUR", "24", "DIGEST_HOUR: Input should be less than or equal to 23"),
        ("WEEKLY_SUMMARY_HOUR", "evening", "WEEKLY_SUMMARY_HOUR: "),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_a_bad_database_url_is_named_without_echoing_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://admin:S3cretPw@db:3306/x")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    assert str(raised.value).startswith("DATABASE_URL: expected a PostgreSQL URL")
    assert "S3cretPw" not in str(raised.value)


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "av-secret-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-456")
    monkeypatch.setenv("SMTP_PASSWORD", "pw-secret-789")
    settings = load_settings(_env_file=None)
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("av-secret-123", "sk-secret-456", "pw-secret-789"):
        assert secret not in shown
    assert settings.alphavantage_api_key is not None
    assert settings.alphavantage_api_key.get_secret_value() == "av-secret-123"
    assert not settings.alphavantage_simulated and settings.newsapi_simulated


def test_keyless_provider_must_point_at_a_stand_in() -> None:
    settings = load_settings(_env_file=None)
    with pytest.raises(ConfigError, match="ALPHAVANTAGE_API_KEY is not set and ALPHAVANTAGE_BASE_URL points at the real provider"):
        settings.check_providers()
    load_settings(
        _env_file=None,
        alphavantage_base_url="http://127.0.0.1:1",
        newsapi_base_url="http://127.0.0.1:2",
        openai_base_url="http://127.0.0.1:3/v1",
    ).check_providers()


def test_worker_start_up_error_is_one_line_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "WORKER_CONCURRENCY": "-3", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "worker: WORKER_CONCURRENCY: Input should be greater than or equal to 1 (got '-3')"
