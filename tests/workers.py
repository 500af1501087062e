"""Run the real workers (worker.build_workers) inside a test, on the test's task queue."""

from __future__ import annotations

import contextlib
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


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> str:
    """The workflow's history as JSON; written to tests/histories/ when recording is asked for.

    `DEALLENS_RECORD_HISTORIES=1 make test` refreshes the committed histories after a
    deliberate, replay-safe change (or a workflow.patched() migration).
    """
    history = await handle.fetch_history()
    as_json = history.to_json()
    if os.environ.get("DEALLENS_RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(as_json), indent=1) + "\n")
    return as_json
