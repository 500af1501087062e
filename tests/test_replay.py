"""Replay the committed workflow histories with today's workflow code.

A change that makes a workflow non-deterministic (reordered activities, a removed timer, a
new call without `workflow.patched`) fails here: guard it with workflow.patched, do not
re-record. Re-recording (`make history NAME=...`) is for new, unreleased workflow types.
Every workflow type registered on the worker must have a history here, found by the type
in the history's WorkflowExecutionStarted event (and named after it in snake_case).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio import workflow
from temporalio.worker import Replayer

from tests.conftest import HISTORIES
from temporal_client import DATA_CONVERTER, interceptors
from worker import WORKFLOWS

RECORDED = sorted(HISTORIES.glob("*.json"))


def started_type(path: Path) -> str:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def test_every_workflow_type_on_the_worker_has_a_history() -> None:
    registered = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    recorded = {started_type(path) for path in RECORDED}
    missing = sorted(registered - recorded)
    assert not missing, (
        f"no history in tests/histories starts a {', '.join(missing)}: record one in a test with "
        "tests/workers.py record_history(handle, '<snake_case_type>_<scenario>'), then `make history NAME=...`"
    )


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_a_history_is_named_after_its_workflow_type(path: Path) -> None:
    assert path.stem.startswith(snake_case(started_type(path))), f"{path.name} holds a {started_type(path)}"


def test_histories_are_committed() -> None:
    # Without histories the replay test below would pass vacuously.
    assert len(RECORDED) >= 3, f"expected recorded histories in {HISTORIES}"


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
async def test_history_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER, interceptors=interceptors())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
