"""docs/CONFIG.md is generated from the Settings class: out of date, or a setting without a
meaning, fails here (rewrite it with `.venv/bin/python -m deallens.config_doc`)."""

from __future__ import annotations

import subprocess
import sys

from deallens import config_doc
from deallens.config import Settings
from tests.conftest import ROOT


def test_the_configuration_reference_is_up_to_date() -> None:
    assert config_doc.DOC.read_text(encoding="utf-8") == config_doc.document(), (
        "docs/CONFIG.md is out of date: run `.venv/bin/python -m deallens.config_doc`"
    )


def test_every_setting_has_a_row_with_its_meaning() -> None:
    rows = [line for line in config_doc.table().splitlines()[2:]]
    assert len(rows) == len(Settings.model_fields)
    for row, (name, _) in zip(rows, Settings.model_fields.items(), strict=True):
        variable, kind, default, meaning = (cell.strip() for cell in row.strip("|").split(" | "))
        assert name.upper() in variable.upper() or "alias" in variable, row
        assert meaning, f"{name}: no description and no comment above it in deallens/config.py"
    by_variable = {row.split(" | ")[0].strip("| `").split("`")[0]: row for row in rows}
    assert "`text` \\| `json`" in by_variable["LOG_FORMAT"] and "`text`" in by_variable["LOG_FORMAT"]
    assert "(alias `CELERY_CONCURRENCY`)" in by_variable["WORKER_CONCURRENCY"] and "(>= 1, <= 1000)" in by_variable["WORKER_CONCURRENCY"]
    assert "| secret | unset |" in by_variable["OPENAI_API_KEY"]


def test_check_mode_says_when_the_file_is_stale(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "CONFIG.md"
    stale.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(config_doc, "DOC", stale)
    assert config_doc.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "old\n"
    # The command as the README gives it, from the checkout (the real file is current).
    done = subprocess.run(
        [sys.executable, "-m", "deallens.config_doc", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_gives_the_command_that_regenerates_it() -> None:
    from tests.test_readme import readme_block

    (command,) = readme_block("config-reference")
    program = command.split("#", 1)[0].split()
    assert program == [".venv/bin/python", "-m", "deallens.config_doc"]
    done = subprocess.run(
        [sys.executable, *program[1:], "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Operating DealLens" in readme and "```mermaid" in readme
    # Every old Celery command the operators used has its row (in the table's first column).
    section = readme.split("### From Celery to DealLens", 1)[1].split("\n### ", 1)[0]
    habits = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| ") and " | " in line]
    for habit in ("celery call", "celery beat", "celery inspect active", "celery inspect scheduled",
                  "celery inspect stats", "celery inspect reserved", "celery inspect ping", "Flower",
                  "dead letter queue", "CELERY_CONCURRENCY", "celery purge", "celery control revoke"):
        assert any(habit in cell for cell in habits), habit
    assert "`WORKER_CONCURRENCY`" in section
