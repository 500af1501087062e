"""Process logging: text for a terminal, JSON lines (LOG_FORMAT=json) for a log pipeline.

In JSON every event is exactly one line (a traceback is a field, not more lines), and carries
the Temporal context wherever it exists: the SDK's activity.logger and workflow.logger put
a `temporal_activity` / `temporal_workflow` dict on the record, flattened here into
workflow_id, run_id, workflow_type, activity_type, activity_id, attempt, task_queue and
namespace, so that a log search by workflow id finds the same run the Web UI shows.

Every line, text or JSON, has the configured secrets (API keys, passwords) replaced by `***`
before it is written: a provider error that echoes a key cannot carry it into the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from deallens.notify.errors import redact

LogFormat = Literal["text", "json"]

_HANDLER_NAME = "deallens"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# temporalio's logger_details keys -> ours (one name per idea across workflows and activities).
_TEMPORAL_FIELDS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "activity_id": "activity_id",
    "attempt": "attempt",
    "task_queue": "task_queue",
    "namespace": "namespace",
}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def temporal_context(record: logging.LogRecord) -> dict[str, Any]:
    """The workflow/activity identifiers the SDK's loggers attached to this record, if any."""
    found: dict[str, Any] = {}
    for key in ("temporal_workflow", "temporal_activity"):
        details = record.__dict__.get(key)
        if isinstance(details, Mapping):
            for name, value in details.items():
                if name in _TEMPORAL_FIELDS and value is not None:
                    found[_TEMPORAL_FIELDS[name]] = value
    return found


def _forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as written and as repr() writes it (a traceback shows exceptions' reprs)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update((secret, repr(secret)[1:-1]))
    return tuple(forms)


ContextProvider = Callable[[], "Mapping[str, Any] | None"]


class TemporalContextFilter(logging.Filter):
    """Attach the running activity's identifiers (from `provider`, which the worker gives:
    activities/log_context.py) to records that lack the SDK's own."""

    def __init__(self, provider: ContextProvider) -> None:
        super().__init__()
        self._provider = provider

    def filter(self, record: logging.LogRecord) -> bool:
        if "temporal_activity" not in record.__dict__ and "temporal_workflow" not in record.__dict__:
            try:
                context = self._provider()
            except Exception:  # noqa: BLE001 - logging must never fail the caller
                context = None
            if context:
                record.temporal_activity = context
        return True


class RedactingTextFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._secrets = _forms(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per event: ts, level, logger, message, the Temporal context, the
    record's own `extra` fields (JSON-able ones; others as their repr), and exc (traceback)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = _forms(secrets)

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self._secrets),
        }
        event.update(temporal_context(record))
        for name, value in record.__dict__.items():
            if name in _STANDARD or name in event or name.startswith("_") or name in ("temporal_workflow", "temporal_activity"):
                continue
            event[name] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(event, ensure_ascii=False, default=repr)
        # After serialising: a secret escaped inside JSON (a quote, a backslash) is matched too,
        # and redacting cannot break the JSON (`***` needs no escaping).
        return redact(redact(line, self._secrets), (json.dumps(s)[1:-1] for s in self._secrets))


def configure(
    level: str, log_format: LogFormat = "text", *, secrets: Iterable[str] = (), context: ContextProvider | None = None
) -> None:
    """The root logger writes one formatter's lines to stderr (replacing an earlier call's)."""
    secrets = tuple(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if log_format == "json" else RedactingTextFormatter(secrets))
    if context is not None:
        handler.addFilter(TemporalContextFilter(context))
    # Python warnings (a library's DeprecationWarning) become log events too, not stray lines.
    logging.captureWarnings(True)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replaces only our own earlier handler: others (a test's log capture) stay.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO, query string included: that would print API keys.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
