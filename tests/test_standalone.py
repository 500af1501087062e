"""A clone stands on its own: nothing under the project reads a path outside the repository,
and a `git clone` of HEAD with nothing beside it collects and runs its tests.

The static scan looks at every tracked source and build file for the ways a path escapes the
root: `..` segments, `Path(__file__).parents[N]` (or a `.parent` chain) above the root,
absolute paths of this machine's checkouts (`/work/...`) and the old `shared/` folder that
lived beside the checkout. Recorded data (histories, provider samples) is not scanned: a
history's stack trace names the recording machine's paths, which nothing reads.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCANNED_SUFFIXES = {".py", ".toml", ".ini", ".cfg", ".yml", ".yaml", ".sh", ".mako", ".md", ".html", ".txt"}
SCANNED_NAMES = {"Makefile", "run", ".gitignore"}
# Recorded data, and this file (its examples are the very paths the scan must catch).
NOT_SCANNED_UNDER = ("tests/histories/", "tests/provider-samples/", "tests/test_standalone.py")

# A `..` path segment: `../x`, `x/..`, `"..`. Not `...` (ellipsis) nor `T../` inside a word.
DOTDOT = re.compile(r"(?<![\w.])\.\.(?=[/\\\"'])|(?<=[/\\])\.\.(?![\w.])")
MACHINE_PATHS = re.compile(r"/work/|(?<![\w.-])shared/")
# Climbing from this file's own location (`Path(__file__)...parents[N]`): the only climb a
# static scan can measure; `some_path.parents[N]` depends on where `some_path` is.
PARENTS = re.compile(r"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent)+)")

# Each exception names the exact text and why it is no read of an outside path; an entry
# that no longer matches anything fails the test, so the list cannot rot.
ALLOWED = {
    ("tests/test_notify_render.py", '"../../etc/passwd"'): "hostile input: a time zone name that must be refused",
    (".ci/run", 'cd "$(dirname "$0")/.."'): "the script sits one level down: its parent is the root",
    ("docs/DESIGN.md", '`pause` (`{"reason": ".."}`)'): "a placeholder value in a signal's example input",
}


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def scanned(name: str) -> bool:
    if name.startswith(NOT_SCANNED_UNDER):
        return False
    path = Path(name)
    return path.suffix in SCANNED_SUFFIXES or path.name in SCANNED_NAMES


def escapes(name: str, line: str) -> list[str]:
    """What on this line reaches outside the repository, for a file at `name` (repo-relative)."""
    found = []
    depth = len(Path(name).parts) - 1  # parents[depth] of a file is the repository root
    if DOTDOT.search(line):
        found.append("a '..' path segment")
    if MACHINE_PATHS.search(line):
        found.append("a path of this machine outside the checkout (/work/..., shared/)")
    for match in PARENTS.finditer(line):
        if int(match.group(1)) > depth:
            found.append(f"parents[{match.group(1)}] climbs above the root (at most parents[{depth}] here)")
    for match in PARENT_CHAIN.finditer(line):
        if match.group(1).count(".parent") > depth + 1:
            found.append("a .parent chain climbs above the root")
    return found


def test_nothing_reads_a_path_outside_the_repository() -> None:
    files = [name for name in tracked_files() if scanned(name)]
    assert len(files) > 100 and "tests/conftest.py" in files and "Makefile" in files and "README.md" in files
    problems, used = [], set()
    for name in files:
        lines = (ROOT / name).read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            allowed = [key for key in ALLOWED if key[0] == name and key[1] in line]
            if allowed:
                used.update(allowed)
                continue
            problems += [f"{name}:{number}: {why}: {line.strip()[:120]}" for why in escapes(name, line)]
    assert problems == [], "paths outside the repository:\n" + "\n".join(problems)
    assert used == set(ALLOWED), f"stale exceptions: {set(ALLOWED) - used}"


@pytest.mark.parametrize(
    ("name", "line", "caught"),
    [
        ("tests/test_x.py", 'SAMPLES = ROOT / "../shared/provider-samples"', True),
        ("README.md", "see [the design](../shared/DESIGN.md)", True),
        ("tests/test_x.py", "ROOT = Path(__file__).resolve().parents[2]", True),
        ("tests/test_x.py", "ROOT = Path(__file__).resolve().parents[1]", False),
        ("bench/x.py", "Path(__file__).resolve().parent.parent.parent", True),
        ("bench/x.py", "Path(__file__).resolve().parent.parent", False),
        ("bench/x.py", "ROOT = Path(__file__).parents[3]", True),
        ("tests/test_x.py", 'PACKAGED.parents[2] / "tests/provider-samples/x.csv"', False),
        ("devstack.py", 'DATA = Path("/work/main/.data")', True),
        ("deallens/x.py", 'open(os.path.join(base, "..", "x"))', True),
        ("deallens/x.py", "def f(*args: object) -> None: ...", False),
        ("deallens/x.py", "# Slack's /services/T../B../<token>", False),
        ("deallens/x.py", "shared_state = shared_secret", False),
    ],
)
def test_the_scan_catches_each_way_out(name: str, line: str, caught: bool) -> None:
    assert bool(escapes(name, line)) is caught


def _clone_alone(tmp_path: Path) -> Path:
    """HEAD cloned into a folder with nothing beside it (no ../shared, no sibling checkout)."""
    alone = tmp_path / "alone"
    alone.mkdir()
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(alone / "deallens-workers")],
        check=True, capture_output=True, timeout=120,
    )
    clone = alone / "deallens-workers"
    assert sorted(p.name for p in alone.iterdir()) == ["deallens-workers"]
    return clone


def _run_in(clone: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run(
        [sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_clone_with_nothing_beside_it_collects_and_reads_its_samples(tmp_path: Path) -> None:
    clone = _clone_alone(tmp_path)
    # The clone's own code is what runs there, not this checkout's (editable install).
    where = _run_in(clone, "-c", "import deallens, tests.conftest as c; print(deallens.__file__); print(c.SAMPLES)")
    assert where.returncode == 0, where.stderr
    package, samples = where.stdout.split()
    assert Path(package).is_relative_to(clone) and Path(samples).is_relative_to(clone)

    collected = _run_in(clone, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    count = int(re.search(r"(\d+) tests? collected", collected.stdout).group(1))  # type: ignore[union-attr]
    assert count > 300 and "error" not in collected.stdout.splitlines()[-1]

    # Tests that read the vendored samples and the NYSE calendar files, run in the clone.
    ran = _run_in(
        clone, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/test_alphavantage_parser.py", "tests/test_market_calendar.py",
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert re.search(r"\d+ passed", ran.stdout.splitlines()[-1]) and "skipped" not in ran.stdout.splitlines()[-1]
