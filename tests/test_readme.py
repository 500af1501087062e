"""The README's core path is a test: its command lines, parsed out of README.md (so they cannot
drift), run as written from a "second terminal" (no exports, the checkout as working
directory) against `make run`'s stack in a fresh copy of the checkout with nothing beside it,
on the README's own ports. The alert email and Ada's signed push must arrive, and the digest.

Only this test and tests/test_devstack.py bind the stack's fixed ports (7233, 8233, 1025, 8090).
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

README = ROOT / "README.md"


def readme_block(name: str) -> list[str]:
    """The command lines of the sh block after `<!-- readme-test: NAME -->`, continuation
    lines joined; comment-only lines dropped (comments after a command stay: bash drops them)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-test: {re.escape(name)} -->\s*```sh\n(.*?)```", text, re.S)
    assert match, f"README.md has no sh block marked readme-test: {name}"
    commands, current = [], ""
    for line in match.group(1).splitlines():
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current.strip())
        current = ""
    return commands


def test_the_readme_blocks_parse() -> None:
    slice_, core = readme_block("slice"), readme_block("core-path")
    assert len(slice_) == 1 and "SyncCompanyPrices" in slice_[0] and '"NOPE"' in slice_[0]
    assert [c.split()[0] for c in core] == [".venv/bin/python", ".venv/bin/python", ".venv/bin/temporal", "ls", ".venv/bin/temporal"]
    operating = readme_block("operating")
    # Every operating command runs with the venv's interpreter, never a bare `python`.
    assert operating and all(c.startswith(".venv/bin/python ") for c in operating)
    assert not re.search(r"^(python|python3) ", README.read_text(), re.M)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _fresh_checkout(tmp_path: Path) -> Path:
    """The working tree's tracked files (committed or not) in a folder with nothing beside it,
    with this checkout's virtualenv linked in as `.venv` (what `make install` would build)."""
    alone = tmp_path / "alone"
    checkout = alone / "deallens-workers"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = checkout / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (checkout / ".venv").symlink_to(Path(sys.executable).parent.parent)
    assert sorted(p.name for p in alone.iterdir()) == ["deallens-workers"]
    return checkout


def _terminal_env(home: Path) -> dict[str, str]:
    """A second terminal: no DATABASE_URL, no TEMPORAL_ADDRESS, nothing exported. The PATH is a
    root shell's (Debian's default): the embedded PostgreSQL creates its system user with
    useradd on a machine that has none yet."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def _sh(command: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str], seconds: float) -> None:
    async def read() -> None:
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError("make run ended early:\n" + "".join(seen))
            seen.append(line.decode(errors="replace"))
            if marker in seen[-1]:
                return

    await asyncio.wait_for(read(), timeout=seconds)


def _mails(checkout: Path) -> list[email.message.Message]:
    new = checkout / ".data" / "maildir" / "new"
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(new.iterdir())] if new.exists() else []


def _outcomes(cli_output: str) -> dict[str, str]:
    """symbol -> outcome, from the `Result` line `temporal workflow execute` prints."""
    match = re.search(r"^\s*Result\s+(\{.*\})\s*$", cli_output, re.M)
    assert match, cli_output
    return {s["symbol"]: s["outcome"] for s in json.loads(match.group(1))["symbols"]}


def _mentions(message: email.message.Message, text: str) -> bool:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return text in part.get_payload(decode=True).decode(errors="replace")  # type: ignore[union-attr]
    return False


async def _eventually(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.5)
    return bool(check())


async def test_the_readme_core_path_works_as_written_on_a_fresh_checkout(tmp_path: Path) -> None:
    busy = [port for port in (7233, 8233) if not _port_free(port)]
    assert not busy, f"the README's ports {busy} are taken: stop what runs there (another `make run`?)"
    checkout = _fresh_checkout(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    stack_env = {**_terminal_env(home), "PYTHONUNBUFFERED": "1"}
    # `make run` is `.venv/bin/python devstack.py` (its other half, `make install`, is the venv),
    # started through the venv's real path: embedded PostgreSQL runs pg_ctl as an unprivileged
    # user, who cannot walk pytest's private tmp folder to reach it through the .venv link.
    stack = await asyncio.create_subprocess_exec(
        sys.executable, "devstack.py", cwd=checkout, env=stack_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    assert stack.stdout is not None
    seen: list[str] = []
    terminal = _terminal_env(home)
    try:
        await _read_until(stack.stdout, "stop            : Ctrl-C", seen, seconds=240)
        await _read_until(stack.stdout, "demo backfill started: daily bars and fundamentals of 22 companies", seen, seconds=60)
        settings_file = checkout / ".data" / "devstack.env"
        assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
        written = settings_file.read_text()
        assert "DATABASE_URL=" in written and "TEMPORAL_ADDRESS=" in written and "SMTP_HOST=" in written
        assert not re.search(r"(KEY|SECRET|PASSWORD|TOKEN)=", written)

        (slice_,) = readme_block("slice")
        result = _sh(slice_, checkout, terminal)
        assert result.returncode == 0, result.stderr
        # In market hours the schedule's own sync may have stored this minute's quote first.
        outcomes = _outcomes(result.stdout)
        assert outcomes["NOPE"] == "unknown" and outcomes["AAPL"] in ("updated", "unchanged"), result.stdout
        assert set(outcomes) == {"AAPL", "NOPE"}, result.stdout

        health, add, sync, look, digest = readme_block("core-path")
        checked = _sh(health, checkout, terminal)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "provider alphavantage: simulated" in checked.stdout and "MISCONFIGURED" not in checked.stdout
        assert "with the settings of `make run` in .data/devstack.env" in checked.stdout
        assert "database: ok" in checked.stdout and "temporal: ok" in checked.stdout
        assert re.search(r"^email: SMTP 127\.0\.0\.1:\d+ \(none\)$", checked.stdout, re.M)

        before = len(_mails(checkout))
        added = _sh(add, checkout, terminal)
        assert added.returncode == 0 and added.stderr == "", added.stderr
        alert_id = int(added.stdout)
        synced = _sh(sync, checkout, terminal)
        assert synced.returncode == 0, synced.stderr
        assert _outcomes(synced.stdout)["AAPL"] in ("updated", "unchanged"), synced.stdout

        def alert_arrived() -> bool:
            shown = _sh(look, checkout, terminal)
            return shown.returncode == 0 and len(_mails(checkout)) > before and '"idempotency_key": "alert-' in shown.stdout

        assert await _eventually(alert_arrived, 60), "no alert email and push:\n" + "".join(seen[-40:])
        # The new alert's firing (the demo's own alerts may fire on the slice's quote too).
        ours = [m for m in _mails(checkout) if re.match(r"<alert-\d+-email@", m["Message-ID"] or "") and _mentions(m, "100")]
        assert len(ours) == 1, [m["Subject"] for m in _mails(checkout)]
        assert "ada@deallens.local" in ours[0]["To"] and "AAPL" in ours[0]["Subject"]
        push_key = ours[0]["Message-ID"].strip("<>").split("@")[0].removesuffix("-email") + "-push"
        pushes = [json.loads(line) for line in (checkout / ".data" / "push.jsonl").read_text().splitlines()]
        assert [p["path"] for p in pushes if p["idempotency_key"] == push_key] == ["/push/ada"]
        assert alert_id > 9  # after the demo's nine

        sent = _sh(digest, checkout, terminal)
        assert sent.returncode == 0, sent.stderr
        assert await _eventually(
            lambda: any((m["Message-ID"] or "").startswith("<digest-daily-") for m in _mails(checkout)), 60
        )
        digests = [m for m in _mails(checkout) if (m["Message-ID"] or "").startswith("<digest-daily-")]
        # Today's digest, for every demo user with something to report: Ada's alert just fired.
        recipients = {m["To"].split("<")[-1].rstrip(">") for m in digests}
        assert "ada@deallens.local" in recipients
        assert recipients <= {"ada@deallens.local", "max@deallens.local", "pat@deallens.local"}
    finally:
        if stack.returncode is None:
            os.killpg(stack.pid, signal.SIGINT)
        rest, _ = await asyncio.wait_for(stack.communicate(), timeout=120)
    log = "".join(seen) + rest.decode(errors="replace")
    assert stack.returncode == 0, log[-4000:]
    assert "[devstack] stopped." in log
    assert not (checkout / ".data" / "devstack.env").exists()
    # The slice's unknown symbol is one line in the worker's log; nothing printed a traceback.
    assert "Traceback" not in log, log[-4000:]
    assert len([line for line in log.splitlines() if "UnknownSymbol (non-retryable)" in line]) == 1
