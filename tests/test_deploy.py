"""The production deployment: docker-compose.temporal.yml and the Dockerfile.

Docker does not run where this project is developed, so the compose file is checked against
the Compose Specification's JSON schema (vendored: deploy/schema/) and for what production
needs (Temporal set up by admin-tools, not auto-setup; several workers with limits, health
checks and METRICS_BIND; every variable handed to a DealLens process a real setting), and
the commands the image runs besides the worker are started here for real.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from deallens.config import Settings, load_settings
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"
SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
ENV_EXAMPLE = ROOT / "deploy" / "production.env.example"
DOCKERFILE = ROOT / "Dockerfile"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def deallens_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this repository's image (worker, migrations, web, codec server)."""
    return {name: s for name, s in spec["services"].items() if str(s.get("image", "")).startswith("deallens:")}


def env_names() -> dict[str, str]:
    """Every environment variable name Settings reads -> its field."""
    names = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [field])
        for choice in choices:
            names[str(choice).upper()] = field
    return names


# ------------------------------------------------------------------ the compose file


def test_the_vendored_schema_is_the_recorded_one() -> None:
    recorded = re.search(r"sha256 ([0-9a-f]{64})", (SCHEMA.parent / "SOURCES.md").read_text())
    assert recorded, "deploy/schema/SOURCES.md records the schema's sha256"
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == recorded.group(1)
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_the_compose_file_follows_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("where", "mistake"),
    [
        ("worker", {"replica": 3}),  # a misspelt key
        ("worker", {"deploy": {"replicas": [3]}}),
        ("temporal", {"depends_on": {"temporal-schema": {"condition": "service_finished"}}}),
    ],
)
def test_the_schema_catches_a_broken_compose_file(where: str, mistake: dict[str, Any]) -> None:
    spec = compose()
    spec["services"][where].update(mistake)
    assert list(validator().iter_errors(spec)), f"the schema accepted {mistake}"


def test_temporal_runs_on_postgresql_with_schemas_from_admin_tools() -> None:
    services = compose()["services"]
    images = {name: str(s.get("image", "")) for name, s in services.items()}
    assert not [name for name, image in images.items() if "auto-setup" in image]
    assert images["temporal"].startswith("temporalio/server:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"

    job = services["temporal-schema"]
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal-schema"].split(":")[1] == images["temporal"].split(":")[1], "upgrade them together"
    mount = next(v for v in job["volumes"] if v.endswith(":/deploy:ro"))
    script = (ROOT / mount.split(":")[0]).joinpath(Path(job["command"][0]).name).read_text()
    for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert f'--db "$db" {step}' in script
    assert "for db in temporal temporal_visibility" in script
    assert "/temporal/versioned" in script and "/visibility/versioned" in script

    namespace = services["temporal-namespace"]
    assert namespace["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert "namespace create" in (ROOT / "deploy" / "temporal" / "create-namespace.sh").read_text()
    # Two PostgreSQL servers: Temporal's and the application's.
    assert images["temporal-postgresql"].startswith("postgres:") and images["app-postgresql"].startswith("postgres:")


def test_the_ui_reads_payloads_through_the_codec_server() -> None:
    services = compose()["services"]
    ui = services["temporal-ui"]
    assert str(ui["image"]).startswith("temporalio/ui:")
    assert "localhost:8091" in ui["environment"]["TEMPORAL_CODEC_ENDPOINT"]
    # The browser sends the codec server's session cookie (the UI cannot send a fixed header).
    assert ui["environment"]["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    codec = services["codec-server"]
    assert codec["command"] == ["python", "-m", "codec_server"]
    assert codec["environment"]["TEMPORAL_CODEC_BIND"].endswith(":8091")
    assert "127.0.0.1:8091:8091" in codec["ports"]
    # The codec server's CORS origin is where the UI is published.
    ui_port = next(p for p in ui["ports"] if p.endswith(":8080")).split(":")[1]
    assert codec["environment"]["TEMPORAL_CODEC_CORS_ORIGINS"] == f"http://localhost:{ui_port}"


def test_several_workers_with_limits_health_checks_and_metrics() -> None:
    spec = compose()
    worker = spec["services"]["worker"]
    assert spec["services"]["migrate"]["build"] == "." and worker["image"] == spec["services"]["migrate"]["image"]
    assert worker["deploy"]["replicas"] >= 2
    limits = worker["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[kmg]", limits["memory"])
    assert worker["environment"]["METRICS_BIND"] == "0.0.0.0:9464"
    assert "healthcheck" not in worker, "the worker's health check is the Dockerfile's"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("web", "codec-server"):
        assert spec["services"][name]["healthcheck"]["test"][0] == "CMD"
        assert spec["services"][name]["deploy"]["resources"]["limits"]["memory"]
    assert spec["services"]["web"]["command"] == ["python", "-m", "deallens.web"]


def test_prometheus_and_grafana_are_optional_and_provisioned() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/deallens.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (sd,) = scrape["scrape_configs"][0]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == 9464


def test_every_bind_mounted_file_is_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


# ------------------------------------------------------------------ variables


def interpolated(text: str) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2) or "", m.group(3) or "") for m in INTERPOLATION.finditer(text)}


def example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_env_example_lists_every_variable_the_compose_file_reads() -> None:
    used = set(interpolated(COMPOSE_FILE.read_text()))
    listed = set(example_values())
    assert used - listed == set(), f"not in deploy/production.env.example: {sorted(used - listed)}"
    assert listed - used == set(), f"listed but unused: {sorted(listed - used)}"


FILLED = {
    "TEMPORAL_DB_PASSWORD": "temporal-db-pw",
    "APP_DB_PASSWORD": "app-db-pw",
    "TEMPORAL_CODEC_KEYS": "k1:" + base64.b64encode(b"k" * 32).decode(),
    "TEMPORAL_CODEC_SERVER_TOKEN": "t" * 32,
    "ALPHAVANTAGE_API_KEY": "av-key",
    "NEWS_API_KEY": "news-key",
    "OPENAI_API_KEY": "openai-key",
    "SMTP_HOST": "smtp.example.com",
    "SMTP_USERNAME": "mailer",
    "SMTP_PASSWORD": "smtp-pw",
    "GRAFANA_ADMIN_PASSWORD": "grafana-pw",
}


def resolve(value: Any) -> str:
    """`${VAR:-default}` and `${VAR:?msg}` as Compose would, from FILLED or the example."""
    example = example_values()

    def one(match: re.Match[str]) -> str:
        name, kind, default = match.group(1), match.group(2), match.group(3)
        if FILLED.get(name):
            return FILLED[name]
        if example.get(name):
            return example[name]
        assert kind == "-", f"${{{name}}} is required but has no test value"
        return default

    return INTERPOLATION.sub(one, str(value))


@pytest.mark.parametrize("service", ["worker", "migrate", "web", "codec-server"])
def test_every_variable_a_deallens_service_gets_is_a_setting_and_valid(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compose()
    assert service in deallens_services(spec)
    environment = spec["services"][service]["environment"]
    known = env_names()
    unknown = sorted(name for name in environment if name not in known)
    assert not unknown, f"{service} is given {unknown}, which no Settings field reads"

    for name in list(os.environ):
        if name in known:
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, resolve(value))
    settings = load_settings(_env_file=None)  # ConfigError (one line) on any bad value
    assert settings.payload_cipher() is not None
    if service == "worker":
        settings.check_providers()
        assert settings.metrics_bind == "0.0.0.0:9464"
        assert settings.temporal_address == "temporal:7233"
        assert settings.database_url is not None and "@app-postgresql:5432/deallens" in settings.database_url
        assert settings.email_enabled and settings.smtp_tls == "starttls"


# ------------------------------------------------------------------ the Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line and not line.startswith("#")
    ]


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    steps = dockerfile_instructions()
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users, "the runtime stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any(op == "RUN" and f"useradd" in arg and user in arg for op, arg in final_stage)
    (check,) = [arg for op, arg in final_stage if op == "HEALTHCHECK"]
    assert "CMD" in check and "/metrics" in check and "METRICS_BIND" in check
    assert ("ENV" in {op for op, _ in final_stage}) and any("METRICS_BIND=" in arg for op, arg in final_stage if op == "ENV")
    assert final_stage[-1] == ("CMD", '["python", "-m", "worker"]')


def test_everything_the_image_copies_is_in_the_repository() -> None:
    for op, arg in dockerfile_instructions():
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    modules = set(re.search(r"py-modules = \[(.*?)\]", (ROOT / "pyproject.toml").read_text()).group(1).replace('"', "").split(", "))
    copied = {Path(s).stem for op, arg in dockerfile_instructions() if op == "COPY" for s in arg.split()[:-1] if s.endswith(".py")}
    assert modules <= copied, f"py-modules not copied into the image: {sorted(modules - copied)}"


# ------------------------------------------------------------------ the image's other commands


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    clean = {k: v for k, v in os.environ.items() if k not in env_names()}
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else "exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "no answer on /healthz within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout:
            process.stdout.close()


def test_the_unsubscribe_page_command_serves(database_url: str) -> None:
    port = free_port()
    with serving(["-m", "deallens.web"], {"DATABASE_URL": database_url, "WEB_BIND": f"127.0.0.1:{port}"}, port) as url:
        page = httpx.get(f"{url}/unsubscribe", params={"token": secrets.token_hex(16)}, timeout=5)
        assert page.status_code == 404 and "This link is not valid" in page.text


def test_the_unsubscribe_page_command_names_a_missing_database() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in env_names()}
    done = subprocess.run(
        [sys.executable, "-m", "deallens.web"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "web: DATABASE_URL: not set; the unsubscribe page reads and writes the application database"
    )


def test_the_codec_server_command_serves_behind_its_token() -> None:
    port = free_port()
    token = secrets.token_hex(20)
    env = {
        "TEMPORAL_CODEC_KEYS": FILLED["TEMPORAL_CODEC_KEYS"],
        "TEMPORAL_CODEC_SERVER_TOKEN": token,
        "TEMPORAL_CODEC_BIND": f"127.0.0.1:{port}",
    }
    with serving(["codec_server.py"], env, port) as url:
        assert httpx.post(f"{url}/decode", json={"payloads": []}, timeout=5).status_code == 401
        answer = httpx.post(
            f"{url}/decode", json={"payloads": []}, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert answer.status_code == 200 and answer.json() == {"payloads": []}


def test_new_key_prints_a_usable_entry() -> None:
    done = subprocess.run([sys.executable, "codec.py", "new-key", "k7"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    entry = done.stdout.strip()
    assert entry.startswith("k7:")
    assert load_settings(_env_file=None, temporal_codec_keys=entry).payload_cipher().active_key_id == "k7"


# ------------------------------------------------------------------ Temporal Cloud


def test_mtls_paths_from_settings_reach_the_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from temporal_client import connect_config

    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ncert\n")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nkey\n")
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(cert))  # the short aliases, as a .env would have them
    monkeypatch.setenv("TEMPORAL_TLS_KEY", str(key))
    settings = load_settings(_env_file=None, temporal_address="ns.acct.tmprl.cloud:7233", temporal_namespace="ns.acct")
    config = connect_config(settings)
    assert config["target_host"] == "ns.acct.tmprl.cloud:7233" and config["namespace"] == "ns.acct"
    assert config["tls"].client_cert == cert.read_bytes()
    assert config["tls"].client_private_key == key.read_bytes()
    assert "api_key" not in config or config["api_key"] is None

    monkeypatch.delenv("TEMPORAL_TLS_CERT")
    monkeypatch.delenv("TEMPORAL_TLS_KEY")
    plain = connect_config(load_settings(_env_file=None))
    assert not plain.get("tls")
