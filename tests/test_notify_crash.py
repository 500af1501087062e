"""A worker process killed with SIGKILL in the middle of a digest batch, then restarted:
every user gets the digest exactly once (the ledger is written after each send, and the
retried batch reads only what is still pending).

The kill happens while the SMTP server holds message N unanswered, the worst moment short
of the unavoidable one (after the server said 250 and before the ledger commit, which the
stable Message-ID covers: receivers drop a repeated Message-ID).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import DigestInput, DigestResult
from tests.conftest import ROOT, dev_server_address
from tests.notify_data import digest_ledger, make_users, seed_market, watch
from tests.smtp_sink import smtp_sink

USERS = 40
KILL_AT = 8


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_sigkill_mid_batch_then_restart_sends_each_digest_exactly_once(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    users = await make_users(db, USERS)
    ids = await seed_market(db, ["AAPL", "MSFT"], until=dt.date(2026, 11, 27))
    await watch(db, users, list(ids.values()))
    workers: list[subprocess.Popen[bytes]] = []

    def kill_mid_batch(number: int) -> str | None:
        if number == KILL_AT:
            os.kill(workers[0].pid, signal.SIGKILL)
            return "421 4.3.2 shutting down"
        return None

    with smtp_sink(on_data=kill_mid_batch) as sink:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(sink.port),
            "SMTP_TLS": "none",
            # No provider is called here; keyless providers must point at a stand-in.
            "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9",
            "NEWSAPI_BASE_URL": "http://127.0.0.1:9",
            "OPENAI_BASE_URL": "http://127.0.0.1:9",
            "LOG_LEVEL": "WARNING",
        }
        log = tmp_path / "worker.log"
        workers.append(start_worker(env, log))
        try:
            handle = await dev_env.client.start_workflow(
                "SendDailyDigest",
                DigestInput(date=dt.date(2026, 11, 28), batch_size=USERS, parallel_batches=1),
                id="digest-crash-test",
                task_queue="deallens",
                result_type=DigestResult,
            )
            assert await asyncio.to_thread(workers[0].wait, 60) == -signal.SIGKILL, log.read_text()
            assert len(sink.messages) == KILL_AT - 1
            workers.append(start_worker(env, log))
            result = await asyncio.wait_for(handle.result(), timeout=120)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    await asyncio.to_thread(worker.wait, 20)

        sent = collections.Counter(sink.message_ids())
    expected = {f"<digest-daily-2026-11-28-{u}@deallens.local>" for u in users}
    assert set(sent) == expected
    assert [mid for mid, n in sent.items() if n != 1] == []
    assert result.counts.sent + result.counts.already_done == USERS
    assert result.counts.already_done == KILL_AT - 1
    assert {row.status for row in await digest_ledger(db)} == {"sent"}
