"""Settings: contract env names, aliases, secrets, and one-line errors naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    monkeypatch.setenv("DATABASE_URL", "postgres://deallens:db-secret-000@db.internal:5432/deallens")
    settings = load_settings(_env_file=None)
    shown = repr(settings) + str(settings) + settings.model_dump_json() + repr(settings.database_url)
    for secret in ("av-secret-123", "sk-secret-456", "pw-secret-789", "db-secret-000"):
        assert secret not in shown
    # What is shown still says which database: only the password is covered.
    assert "postgresql+asyncpg://deallens:***@db.internal:5432/deallens" in shown
    # The engine gets the real URL.
    assert str(settings.database_url) == "postgresql+asyncpg://deallens:db-secret-000@db.internal:5432/deallens"
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


def test_the_database_password_stays_out_of_logs_and_cli_errors(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    url = "postgresql+asyncpg://deallens:db-secret-000@127.0.0.1:9/deallens"
    settings = load_settings(_env_file=None, database_url=url)
    with caplog.at_level(logging.INFO):
        logging.getLogger("deallens.test").info("settings: %r", settings)
    assert caplog.records and "db-secret-000" not in caplog.text
    # A CLI that cannot reach that database says so without the URL's password.
    result = subprocess.run(
        [sys.executable, "starter.py", "health"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": url, "TEMPORAL_ADDRESS": "127.0.0.1:9"},
    )
    assert result.returncode == 2 and "database: FAILED" in result.stdout  # down: exit 2
    assert "db-secret-000" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("value", "port", "mode"),
    [
        ("true", 587, "starttls"), ("True", 25, "starttls"), ("yes", 587, "starttls"), ("1", 587, "starttls"),
        ("true", 465, "tls"), ("false", 465, "none"), ("FALSE", 587, "none"), ("off", 25, "none"),
        ("STARTTLS", 587, "starttls"), ("tls", 465, "tls"), ("none", 25, "none"),
    ],
)
def test_smtp_tls_accepts_the_common_spellings(monkeypatch: pytest.MonkeyPatch, value: str, port: int, mode: str) -> None:
    monkeypatch.setenv("SMTP_TLS", value)
    monkeypatch.setenv("SMTP_PORT", str(port))
    assert load_settings(_env_file=None).smtp_tls == mode


def test_smtp_login_over_plaintext_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("SMTP_USERNAME", "bot")
    monkeypatch.setenv("SMTP_PASSWORD", "pw-secret-789")
    monkeypatch.setenv("SMTP_TLS", "none")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    assert message.startswith("SMTP_TLS: none, but SMTP_USERNAME is set for smtp.example.com") and "\n" not in message
    assert "SMTP_ALLOW_PLAINTEXT_AUTH=true" in message and "pw-secret-789" not in message
    # Encrypted, explicitly allowed, or a relay on this machine: accepted.
    for env in ({"SMTP_TLS": "starttls"}, {"SMTP_ALLOW_PLAINTEXT_AUTH": "true"}, {"SMTP_HOST": "127.0.0.1"}, {"SMTP_HOST": "::1"}):
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            assert load_settings(_env_file=None).smtp_username == "bot"
    # No login, no password on the wire: plaintext is fine (a relay that trusts the network).
    monkeypatch.delenv("SMTP_USERNAME")
    assert load_settings(_env_file=None).smtp_tls == "none"


def test_email_is_off_without_an_smtp_host(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(_env_file=None)
    assert not settings.email_enabled and settings.email_off_reason is not None
    assert settings.email_off_reason.startswith("email is OFF: SMTP_HOST is not set")
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    assert load_settings(_env_file=None).email_enabled
    assert load_settings(_env_file=None).email_off_reason is None


def test_the_settings_of_a_running_make_run_are_read_and_a_dead_ones_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    settings_file = tmp_path / ".data" / "devstack.env"
    settings_file.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    for var in ("DATABASE_URL", "TEMPORAL_ADDRESS", "SMTP_HOST"):
        monkeypatch.delenv(var, raising=False)

    def write(pid: int) -> None:
        settings_file.write_text(
            f"# written by `make run` (pid {pid}): ...\n"
            'DATABASE_URL="postgresql+asyncpg://postgres@/deallens?host=/x/.data/postgres&port=5432"\n'
            'TEMPORAL_ADDRESS="localhost:7233"\nSMTP_HOST="127.0.0.1"\n'
        )

    write(os.getpid())
    running = load_settings()
    assert str(running.database_url) == "postgresql+asyncpg://postgres@/deallens?host=/x/.data/postgres&port=5432"
    assert running.email_enabled
    # The environment wins over the file.
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    assert load_settings().smtp_host == "smtp.example.com"
    monkeypatch.delenv("SMTP_HOST")
    # A file left behind by a killed run (its pid gone) is not followed.
    write(int(dead.stdout))
    stale = load_settings()
    assert stale.database_url is None and not stale.email_enabled
