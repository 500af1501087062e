"""Process faults with real processes: a worker SIGKILLed at a random point of each workload
(price sync, daily bars, news ingestion, alert evaluation, alert delivery, digest batches,
insight generation), then a new worker process: every workflow completes, each fired alert
is delivered once per channel (the one message in flight may arrive twice, same id), no
partial batch is visible at the kill, nothing is stored twice. See tests/faults.py.

FAULT_SEED replays a sequence (the seed is in every test id and line printed);
FAULT_TRIALS sets the count (default 21: three of each workload).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from tests.conftest import dev_server_address
from tests.faults import KINDS, Outcome, Stack, Trial, plan, run_trial, running_stack, seed_from_env, trials_from_env

SEED = seed_from_env()
TRIALS = plan(SEED, trials_from_env(3 * len(KINDS)))
OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="module")
async def stack(database_url: str, dev_env: WorkflowEnvironment) -> AsyncIterator[Stack]:
    async with running_stack(database_url, dev_server_address(dev_env.client)) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def summary(pytestconfig: pytest.Config) -> Iterator[None]:
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    mid = sum(o.mid_run for o in OUTCOMES)
    resent = sum(o.in_flight_resent for o in OUTCOMES)
    lines = [
        f"process faults: seed={SEED} trials={len(OUTCOMES)}/{len(TRIALS)} killed mid-run={mid} "
        f"held={len(OUTCOMES)} lost=0 duplicated=0 in-flight re-sends (same id)={resent}",
        *(o.line(SEED) for o in OUTCOMES),
    ]
    if reporter is not None:
        reporter.ensure_newline()
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)


@pytest.mark.parametrize("trial", TRIALS, ids=[f"seed{SEED}-{t.label}" for t in TRIALS])
async def test_a_worker_killed_mid_workload_then_restarted(
    trial: Trial, db: AsyncEngine, dev_env: WorkflowEnvironment, stack: Stack, tmp_path: Path
) -> None:
    outcome = await run_trial(db, dev_env.client, stack, trial, tmp_path / "worker.log")
    OUTCOMES.append(outcome)
    print(outcome.line(SEED))


def test_the_kills_landed_mid_run() -> None:
    """The trials above are only worth something if the kills hit running workflows."""
    assert len(OUTCOMES) == len(TRIALS), "run the whole module: the trials record their outcomes"
    mid = [o for o in OUTCOMES if o.mid_run]
    assert len(mid) >= len(OUTCOMES) // 2, [o.line(SEED) for o in OUTCOMES]
    # Every workload was caught mid-run at least once when each ran at least twice.
    if len(OUTCOMES) >= 2 * len(KINDS):
        assert {o.trial.kind for o in mid} == set(KINDS), sorted({o.trial.kind for o in mid})
