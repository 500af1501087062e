"""What every workflow command shares: `--task-queue`, `--wait`, `--show-command`, a Temporal
client, and the `temporal ...` command line equivalent to what it does.

`--show-command` prints that command and does nothing else, so it can be pasted (or run by a
script) without starting the workflow twice under one ID.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from deallens.config import ConfigError, Settings


def common_options(parser: argparse.ArgumentParser, *, wait: bool = True) -> None:
    parser.add_argument("--task-queue", default="deallens", help="where the workers listen (default deallens)")
    if wait:
        parser.add_argument("--wait", action="store_true", help="wait for the workflow and print its result")
    parser.add_argument("--show-command", action="store_true",
                        help="print the equivalent `temporal` command and do nothing else")


def iso_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return int(value)


def build(model: type[BaseModel], **fields: Any) -> BaseModel:
    """The workflow's input, validated here so a bad argument is one line, not a failed run."""
    try:
        return model(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "input"
        raise ConfigError(f"invalid input: {field}: {first['msg'].removeprefix('Value error, ')}") from None


def input_json(argument: BaseModel) -> str:
    return json.dumps(argument.model_dump(mode="json", exclude_defaults=True), separators=(",", ":"))


def temporal_command(settings: Settings, *words: str) -> str:
    """`temporal <words...> --address ... --namespace ...`, shell-quoted."""
    return shlex.join(["temporal", *words, "--address", settings.temporal_address, "--namespace", settings.temporal_namespace])


async def client(settings: Settings) -> Any:
    from temporal_client import connect

    try:
        return await asyncio.wait_for(connect(settings), timeout=15)
    except (RuntimeError, OSError, TimeoutError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"TEMPORAL_ADDRESS: cannot reach Temporal at {settings.temporal_address}: {reason}") from None


def print_result(result: Any) -> None:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    print(json.dumps(result, indent=2, default=str))


@dataclass(frozen=True)
class Start:
    """One workflow start: what `celery call` was."""

    workflow: str
    argument: BaseModel
    # Named after the work (notify-<id>) or carrying the time: a finished run may run again
    # under it (ALLOW_DUPLICATE), a running one is never started twice.
    workflow_id: str

    def command(self, settings: Settings, task_queue: str, *, wait: bool) -> str:
        return temporal_command(
            settings, "workflow", "execute" if wait else "start", "--type", self.workflow, "--task-queue", task_queue,
            "--workflow-id", self.workflow_id, "--input", input_json(self.argument),
        )

    async def run(self, settings: Settings, task_queue: str, *, wait: bool, show_command: bool) -> int:
        from temporalio.client import WorkflowFailureError
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        if show_command:
            print(self.command(settings, task_queue, wait=wait))
            return 0
        temporal = await client(settings)
        try:
            handle = await temporal.start_workflow(
                self.workflow, self.argument, id=self.workflow_id, task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        except WorkflowAlreadyStartedError:
            print(f"starter: {self.workflow_id} is already running: left as it is", file=sys.stderr)
            return 1
        print(f"started {self.workflow} {self.workflow_id} (run {handle.result_run_id}) on {task_queue}", flush=True)
        if not wait:
            return 0
        try:
            print_result(await handle.result())
        except WorkflowFailureError as error:
            cause = error.cause
            print(f"starter: {self.workflow_id} failed: {getattr(cause, 'message', None) or cause or error}", file=sys.stderr)
            return 1
        return 0


def stamp(now: dt.datetime | None = None) -> str:
    """A UTC timestamp for workflow IDs started by hand: `cli-sync-company-prices-20261201T130501Z`."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
