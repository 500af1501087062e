"""python -m deallens.config_doc [--check]: the configuration reference, generated from Settings.

docs/CONFIG.md lists every environment variable the Settings class reads, with its type,
bounds, default and meaning. The meaning is the field's `description`, else the comment
written above the field in deallens/config.py: the reference cannot drift from the code,
because it is the code's own words, and tests/test_config_doc.py fails when the file is out
of date (run this module to rewrite it).
"""

from __future__ import annotations

import argparse
import ast
import enum
import re
import sys
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from deallens import config
from deallens.config import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"

HEADER = f"""# Configuration reference

Every environment variable DealLens reads (a `.env` file in the working directory is honoured;
the process environment wins). Generated from the `Settings` class in `deallens/config.py` by
`.venv/bin/python -m deallens.config_doc`; do not edit between the markers. A bad value stops
the process at start-up with one line naming the variable. Secrets are never printed.

{START}
"""


def _comments_above() -> dict[str, str]:
    """field name -> the comment block directly above its line in the Settings class."""
    source = Path(config.__file__).read_text(encoding="utf-8")
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    block: list[str] = []
                    index = statement.lineno - 2
                    while index >= 0 and lines[index].strip().startswith("#"):
                        block.insert(0, lines[index].strip().lstrip("#").strip())
                        index -= 1
                    if block:
                        found[statement.target.id] = " ".join(block)
    return found


def _env_names(name: str, info: FieldInfo) -> list[str]:
    if isinstance(info.validation_alias, AliasChoices):
        return [str(choice) for choice in info.validation_alias.choices]
    return [name.upper()]


def _bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(args[0])
    if args and origin is not None:  # Optional[X], X | None
        return _type_name(args[0]) if len(args) == 1 else " or ".join(_type_name(a) for a in args)
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr):
            return "secret"
        if issubclass(annotation, config.DatabaseUrl):
            return "URL"
        if issubclass(annotation, bool):
            return "bool"
        if issubclass(annotation, enum.Enum):
            return " \\| ".join(f"`{m.value}`" for m in annotation)
        return {int: "int", float: "number", Decimal: "decimal", str: "text", Path: "path"}.get(annotation, annotation.__name__)
    return str(annotation)


def _default(info: FieldInfo) -> str:
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|").strip()


def table() -> str:
    """The markdown table, one row per Settings field, in the class's order."""
    comments = _comments_above()
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        names = _env_names(name, info)
        variable = f"`{names[0]}`" + (f" (alias {', '.join(f'`{n}`' for n in names[1:])})" if names[1:] else "")
        meaning = info.description or comments.get(name, "")
        rows.append(
            f"| {variable} | {_type_name(info.annotation)}{_bounds(info)} | {_default(info)} | {_cell(meaning)} |"
        )
    return "\n".join(rows) + "\n"


def document() -> str:
    return f"{HEADER}{table()}{END}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deallens.config_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/CONFIG.md is out of date, change nothing")
    args = parser.parse_args(argv)
    wanted = document()
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if args.check:
        if current != wanted:
            print(f"config_doc: {DOC.name} is out of date: run `.venv/bin/python -m deallens.config_doc`", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(wanted, encoding="utf-8")
    print(f"wrote {DOC.relative_to(DOC.parents[1])} ({len(Settings.model_fields)} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
