"""The README's run command as a user meets it: `python devstack.py` (what `make run` runs)
on embedded defaults — no keys, no DATABASE_URL, no Temporal — in its own data folder."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

from tests.conftest import ROOT, TEMPORAL_CLI


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str], seconds: float) -> None:
    async def _read() -> None:
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError("devstack ended early:\n" + "".join(seen))
            seen.append(line.decode(errors="replace"))
            if marker in seen[-1]:
                return

    await asyncio.wait_for(_read(), timeout=seconds)


async def _backfilled(url: str, seconds: float) -> tuple[list[int], int]:
    """Bars per company and companies with fundamentals, once both stop growing or are full."""
    from sqlalchemy import text

    from deallens.db.engine import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            async with engine.connect() as conn:
                bars = list((await conn.execute(text(
                    "SELECT count(o.*) FROM companies c LEFT JOIN ohlc_data o ON o.company_id = c.id GROUP BY c.id"
                ))).scalars())
                fundamentals = (await conn.execute(text(
                    "SELECT count(*) FROM companies WHERE fundamentals_updated_at IS NOT NULL"
                ))).scalar_one()
            if (bars and min(bars) >= 250 and fundamentals == len(bars)) or asyncio.get_running_loop().time() > deadline:
                return bars, fundamentals
            await asyncio.sleep(2)
    finally:
        await engine.dispose()


async def test_a_real_key_spends_nothing_on_the_demo_backfill() -> None:
    import devstack
    from deallens.config import load_settings

    settings = load_settings(_env_file=None, alphavantage_api_key="real-key", news_api_key="real-key")
    # No step runs, so nothing connects anywhere (the empty env has no Temporal address to use).
    assert await devstack._demo_backfill({}, settings) == []
    assert [name for name, _ in devstack.DEMO_BACKFILL] == ["alphavantage"]


async def test_run_command_brings_up_the_stack_and_stops_it(tmp_path: Path) -> None:
    temporal_port, ui_port = _free_port(), _free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "DEVSTACK_DATA_DIR": str(tmp_path / "data"),
        "DEVSTACK_TEMPORAL_PORT": str(temporal_port),
        "DEVSTACK_UI_PORT": str(ui_port),
        "PYTHONUNBUFFERED": "1",
    }
    stack = await asyncio.create_subprocess_exec(
        sys.executable, "devstack.py", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert stack.stdout is not None
    seen: list[str] = []
    try:
        await _read_until(stack.stdout, "DealLens is up.", seen, seconds=180)
        await _read_until(stack.stdout, "stop            : Ctrl-C", seen, seconds=10)
        banner = "".join(seen)
        assert f"Temporal Web UI : http://localhost:{ui_port}" in banner
        assert "SIMULATED       : AlphaVantage" in banner
        assert "seeded 22 companies, 3 users, 9 alerts" in banner
        assert "created sync-company-prices" in banner
        await _read_until(stack.stdout, "market data is SIMULATED", seen, seconds=60)

        # A second copy on the same data folder refuses with one clear line.
        second = await asyncio.create_subprocess_exec(
            sys.executable, "devstack.py", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(second.communicate(), timeout=60)
        assert second.returncode == 1
        assert err.decode().startswith(f"devstack: another `make run` is already running here (pid {stack.pid})")

        # The vertical slice through the CLI against the stack's own worker.
        cli = await asyncio.create_subprocess_exec(
            str(TEMPORAL_CLI), "workflow", "execute", "--address", f"127.0.0.1:{temporal_port}",
            "--type", "SyncCompanyPrices", "--task-queue", "deallens",
            "--input", '{"symbols": ["AAPL"], "force": true}', "--output", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), timeout=120)
        assert cli.returncode == 0, err.decode()
        result = json.loads(out)["result"]
        assert [(s["symbol"], s["outcome"]) for s in result["symbols"]] == [("AAPL", "updated")]

        # The first run on simulated data backfills daily bars and fundamentals, so digests,
        # sparklines and backtests have something real from the first minute.
        assert "demo backfill started: daily bars and fundamentals of 22 companies" in "".join(seen)
        written = (tmp_path / "data" / "devstack.env").read_text()
        url = re.search(r'^DATABASE_URL="(.*)"$', written, re.M).group(1)  # type: ignore[union-attr]
        bars, fundamentals = await _backfilled(url, seconds=240)
        assert min(bars) >= 250 and len(bars) == 22, bars  # a year of sessions and more, each company
        assert fundamentals == 22
    finally:
        if stack.returncode is None:
            stack.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(stack.communicate(), timeout=90)
    assert stack.returncode == 0, "".join(seen) + rest.decode(errors="replace")
    assert "[devstack] stopped." in rest.decode()
    # Everything it started is gone: the ports are free again.
    for port in (temporal_port, ui_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    assert os.path.exists(tmp_path / "data" / "temporal.db")
