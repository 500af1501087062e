"""The running activity's identifiers for every log line it causes, not only activity.logger's.

Activities and the deallens/ code they call log through plain module loggers (deallens/ may
not import Temporal); deallens/logs.py asks this provider for the context of a record that
does not carry the SDK's own `temporal_activity` dict, so that a JSON line from a provider
client still names its workflow id, run id, activity type and attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio import activity


def activity_log_context() -> Mapping[str, Any] | None:
    """The SDK's logger details of the activity running in this context, or None outside one."""
    if not activity.in_activity():
        return None
    info = activity.info()
    return {
        "activity_id": info.activity_id,
        "activity_type": info.activity_type,
        "attempt": info.attempt,
        "namespace": info.workflow_namespace,
        "task_queue": info.task_queue,
        "workflow_id": info.workflow_id,
        "workflow_run_id": info.workflow_run_id,
        "workflow_type": info.workflow_type,
    }
