"""Run the real workers (worker.build_workers) inside a test, on the test's task queue."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from temporalio.client import Client, WorkflowHandle

from deallens.config import Settings
from tests.conftest import HISTORIES
from worker import build_workers, open_resources


@contextlib.asynccontextmanager
async def running_workers(
    client: Client,
    settings: Settings,
    task_queue: str,
    *,
    replace_activities: Sequence[Callable[..., Any]] = (),
) -> AsyncIterator[None]:
    async with open_resources(settings) as resources, contextlib.AsyncExitStack() as stack:
        for worker in build_workers(
            client, settings, resources, task_queue=task_queue, replace_activities=replace_activities
        ):
            await stack.enter_async_context(worker)
        yield


def recording(name: str) -> bool:
    """Whether `name` is to be written: DEALLENS_RECORD_HISTORIES holds names or globs
    (comma-separated) of the scenarios to re-record, or `new` for histories not committed yet.

    Committed histories are the replay guard of released workflow code: re-record one only
    while its workflow type is new and unreleased (`make history NAME=...`); a change that
    breaks an existing history goes behind workflow.patched instead.
    """
    wanted = os.environ.get("DEALLENS_RECORD_HISTORIES", "")
    if not wanted:
        return False
    if wanted in ("new", "1"):  # "1" (the old "record everything") no longer overwrites
        return not (HISTORIES / f"{name}.json").exists()
    return any(fnmatch.fnmatchcase(name, pattern.strip()) for pattern in wanted.split(",") if pattern.strip())


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> str:
    """The workflow's history as JSON; written to tests/histories/<name>.json when asked for
    (see `recording`). Name it after the workflow type in snake_case (`alert_monitor_price`
    for AlertMonitor): tests/test_replay.py checks every registered type has one.
    """
    history = await handle.fetch_history()
    as_json = history.to_json()
    if recording(name):
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(as_json), indent=1) + "\n")
    return as_json
