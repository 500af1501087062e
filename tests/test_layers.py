"""The layers the README promises, checked on the source: no Temporal under deallens/, no
import circles inside the notification package, and the delivery engine lives in deallens/
(activities/notifications.py is only its Temporal adapter)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

NOTIFY = ROOT / "deallens" / "notify"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any level (TYPE_CHECKING blocks included: a circle
    hidden behind TYPE_CHECKING is still a circle in the design)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_under_deallens_imports_temporal() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "deallens").rglob("*.py"))
        if any(name == "temporalio" or name.startswith("temporalio.") for name in imported_modules(path))
    ]
    assert offenders == []


def test_the_notify_package_has_no_import_circles() -> None:
    modules = {f"deallens.notify.{path.stem}": path for path in NOTIFY.glob("*.py") if path.stem != "__init__"}
    graph = {name: {m for m in imported_modules(path) if m in modules and m != name} for name, path in modules.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    assert [cycle for name in sorted(graph) if (cycle := cycle_from(name))] == []
    # The pair that used to import each other: render needs message's header_safe, message
    # needs only the plain RenderedEmail (in content.py).
    assert "deallens.notify.render" not in graph["deallens.notify.message"]


def test_the_notification_activities_hold_no_delivery_logic() -> None:
    """The adapter neither touches the ledgers nor the senders itself: the engine does."""
    imports = imported_modules(ROOT / "activities" / "notifications.py")
    for module in ("deallens.db.claims", "deallens.notify.email", "deallens.notify.render", "deallens.notify.message"):
        assert not any(name == module or name.startswith(module + ".") for name in imports), module
    assert "check_public_host" not in (ROOT / "activities" / "notifications.py").read_text(encoding="utf-8")
