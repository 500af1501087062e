"""bench/load.py --quick: the whole system (worker processes, dev server, stand-ins, sinks) under
a small load delivers every firing exactly once per channel. Its timings are figures the bench
prints, not asserted here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_load_run_loses_and_duplicates_no_delivery(server_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--quick", "--database-url", server_url],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True, text=True, timeout=600, check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{out}\n{result.stderr[-3000:]}"
    deliveries = re.search(r"deliveries: ([\d,]+) firings x 2 channels: lost (\d+), duplicated (\d+), unexpected (\d+); "
                           r"digests duplicated (\d+)", out)
    assert deliveries, out
    firings = int(deliveries[1].replace(",", ""))
    assert firings > 0, "the quick run must fire alerts, or it proves nothing"
    assert deliveries.groups()[1:] == ("0", "0", "0", "0"), out
    # Every firing reached both sinks and had its notification workflow found.
    for sink in ("notification workflow started", "email at the SMTP sink", "push at the webhook sink"):
        line = next(line for line in out.splitlines() if sink in line)
        assert line.rstrip().endswith(f"({firings:,})"), line
    digests = re.search(r"digests\s+([\d,]+)\s+\((?:[\d.]+ s, )?sent ([\d,]+), failed 0, skipped 0 of ([\d,]+) eligible\)", out)
    assert digests and digests[1] == digests[2] == digests[3], out
    assert "check: 0 lost, 0 duplicated: OK" in out
