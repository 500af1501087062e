"""`python -m deallens.web`: serve the unsubscribe page on WEB_BIND (production; `make run`
serves it in-process). Behind a TLS-terminating proxy at PUBLIC_BASE_URL: the page builds
only relative links, so it needs no knowledge of the public scheme or host."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from deallens.config import ConfigError, Settings, configure_logging, load_settings
from deallens.db.engine import create_engine
from deallens.web.unsubscribe import create_app


async def serve(settings: Settings) -> None:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL: not set; the unsubscribe page reads and writes the application database")
    host, _, port = settings.web_bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"WEB_BIND: expected host:port, got {settings.web_bind!r}")
    engine = create_engine(settings.database_url, pool_size=5)
    try:
        config = uvicorn.Config(
            create_app(engine), host=host.strip("[]"), port=int(port), log_level="warning", lifespan="off"
        )
        await uvicorn.Server(config).serve()
    finally:
        await engine.dispose()


def main() -> int:
    try:
        settings = load_settings()
        # LOG_FORMAT and the redaction of every configured secret, as in the worker.
        configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
        asyncio.run(serve(settings))
    except ConfigError as error:
        print(f"web: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
