"""Replay the committed workflow histories with today's workflow code.

A change that makes a workflow non-deterministic (reordered activities, a removed timer, a
new call without `workflow.patched`) fails here. Refresh the histories only after a
replay-safe change: `DEALLENS_RECORD_HISTORIES=1 make test`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import HISTORIES
from temporal_client import DATA_CONVERTER, interceptors
from worker import WORKFLOWS

RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_are_committed() -> None:
    # Without histories the replay test below would pass vacuously.
    assert len(RECORDED) >= 3, f"expected recorded histories in {HISTORIES}"


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
async def test_history_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER, interceptors=interceptors())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
