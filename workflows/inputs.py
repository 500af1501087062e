"""Workflow input validation that fails the *workflow*, not the workflow task.

If a workflow's run() parameter is typed as a pydantic model, a bad `--input` fails while the
SDK decodes it: that is a workflow *task* failure, retried forever and visible only as a
stuck workflow. So workflows take the raw JSON object and validate it here, failing with a
non-retryable `InvalidInput` that names the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

M = TypeVar("M", bound=BaseModel)
_MAX_LINE = 300


def validated(model: type[M], raw: Any) -> M:
    """`raw` is typed Any on purpose: a JSON string or list must reach this check too."""
    if isinstance(raw, model):
        return raw
    data = raw.model_dump() if isinstance(raw, BaseModel) else ({} if raw is None else raw)
    if not isinstance(data, dict):
        raise ApplicationError(
            f"invalid input: expected a JSON object, got {type(data).__name__}", type="InvalidInput", non_retryable=True
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "input"
        message = " ".join(first["msg"].removeprefix("Value error, ").split())
        line = f"invalid input: {field[:80]}: {message}"
        # One bounded line whatever the input held (a message may quote the offending value).
        raise ApplicationError(
            line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…", type="InvalidInput", non_retryable=True
        ) from None
