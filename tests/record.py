"""`python -m tests.record NAME [NAME ...]` (or `make history NAME=...`): re-record histories.

Finds the tests that record a history of that name (calls of `record_history(handle, NAME)`
or helpers given `record=NAME`; an f-string name such as f"alert_monitor_{kind}" matches as
a glob) and runs only those, writing only the histories named. `new` records every history
that is not committed yet. Re-recording is for new, unreleased workflow types: a change that
breaks a committed history goes behind workflow.patched (tests/test_replay.py replays them).
"""

from __future__ import annotations

import ast
import fnmatch
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _pattern(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "*" for part in node.values)  # type: ignore[misc]
    return None


def _names(function: ast.AST) -> Iterator[str]:
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        candidates = [node.args[1]] if called == "record_history" and len(node.args) >= 2 else []
        candidates += [k.value for k in node.keywords if k.arg == "record"]
        for candidate in candidates:
            pattern = _pattern(candidate)
            if pattern is not None:
                yield pattern


def recorders() -> dict[str, list[str]]:
    """Test node id -> the history names (or globs) it records."""
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names = list(_names(node))
                if names:
                    found[f"tests/{path.name}::{node.name}"] = names
    return found


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m tests.record NAME [NAME ...]   (history names or globs, or `new`)", file=sys.stderr)
        return 2
    tests = recorders()
    if argv == ["new"]:
        selected = sorted(tests)
    else:
        selected = sorted(
            test for test, patterns in tests.items()
            if any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(pattern, name) for name in argv for pattern in patterns)
        )
    if not selected:
        print(f"no test records a history named {', '.join(argv)}", file=sys.stderr)
        return 2
    env = {**os.environ, "DEALLENS_RECORD_HISTORIES": ",".join(argv)}
    print("recording with", " ".join(selected), file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "pytest", "-q", *selected], cwd=TESTS.parent, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
