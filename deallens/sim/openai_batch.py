"""The stand-in's Batch API: /v1/files (upload, list, retrieve, content) and /v1/batches (create,
retrieve, list, cancel), in the shapes of the real service, enough for the official SDK.

A batch completes `delay` after its creation on the stand-in's clock (a ManualClock in tests,
so a test decides when); a delay past the 24 h completion window makes it expire instead,
with every line in the error file as `batch_expired`, as OpenAI does. Status is computed when
a batch is read, so nothing runs in the background. Each input line is answered by the chat
endpoint's own machinery (responders, cached tokens, the fault rules under key "batch_line"):
answers go to the output file, error answers (a 4xx/5xx status) to the error file.

The input is checked like the real service checks it: JSONL, unique custom_ids, method POST,
the batch's endpoint as url, one model per file; a bad file fails the batch at validation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deallens.sim.clock import Clock, utc
from deallens.sim.faults import SimController, answer, json_response

COMPLETION_WINDOW = timedelta(hours=24)
SUPPORTED_ENDPOINTS = ("/v1/chat/completions",)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_LIST = 100

LineAnswer = Callable[[dict[str, Any], int], tuple[int, dict[str, Any]]]


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return json_response(body, status, indent=2)


def _not_found(kind: str, ident: str) -> Response:
    return _error(404, f"No such {kind}: '{ident}'", code=None, param="id")


def _seconds(moment: datetime) -> int:
    return int(utc(moment).timestamp())


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
            "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
            "status_details": None,
        }


@dataclass
class StoredBatch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    created: datetime
    lines: list[dict[str, Any]]
    model: str | None
    status: str = "validating"
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    times: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        created = _seconds(self.created)
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": "24h", "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": created, "expires_at": created + int(COMPLETION_WINDOW.total_seconds()),
            **{f"{name}_at": self.times.get(name) for name in
               ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")},
            "request_counts": {"total": len(self.lines), "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


class BatchStore:
    """Files and batches of one stand-in, in memory."""

    def __init__(
        self, *, controller: SimController, clock: Clock, delay: timedelta, complete_line: LineAnswer, seed: int
    ) -> None:
        self.controller = controller
        self.clock = clock
        self.delay = delay
        self.complete_line = complete_line
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, StoredBatch] = {}
        self._seed = seed
        self._serial = 0
        self.lines_answered = 0

    def _new_id(self, prefix: str, length: int = 24) -> str:
        self._serial += 1
        return prefix + hashlib.sha256(f"{self._seed}:{prefix}:{self._serial}".encode()).hexdigest()[:length]

    def add_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile(self._new_id("file-"), filename, purpose, content, _seconds(self.clock()))
        self.files[stored.id] = stored
        return stored

    def create_batch(self, input_file: StoredFile, endpoint: str, metadata: dict[str, str] | None) -> StoredBatch:
        lines, errors, model = _parse_input(input_file.content, endpoint)
        batch = StoredBatch(
            id=self._new_id("batch_"), input_file_id=input_file.id, endpoint=endpoint, metadata=metadata,
            created=utc(self.clock()), lines=lines, model=model,
        )
        if errors:
            batch.status = "failed"
            batch.errors = errors
            batch.times["failed"] = _seconds(batch.created)
        else:
            batch.status = "in_progress"
            batch.times["in_progress"] = _seconds(batch.created)
        self.batches[batch.id] = batch
        return batch

    def refresh(self, batch: StoredBatch) -> StoredBatch:
        """Move the batch along the clock: complete it, or expire it at the end of its window."""
        if batch.status in TERMINAL or batch.status == "cancelling":
            return batch
        now = utc(self.clock())
        done_at = batch.created + self.delay
        expires_at = batch.created + COMPLETION_WINDOW
        if self.delay > COMPLETION_WINDOW and now >= expires_at:
            self._finish(batch, "expired", answered=False)
        elif self.delay <= COMPLETION_WINDOW and now >= done_at:
            self._finish(batch, "completed", answered=True)
        return batch

    def cancel(self, batch: StoredBatch) -> StoredBatch:
        self.refresh(batch)
        if batch.status not in TERMINAL:
            batch.times["cancelling"] = _seconds(self.clock())
            self._finish(batch, "cancelled", answered=False)
        return batch

    def _finish(self, batch: StoredBatch, status: str, *, answered: bool) -> None:
        outputs: list[str] = []
        errors: list[str] = []
        for line in batch.lines:
            request_id = "req_" + hashlib.sha256(f"{batch.id}:{line['custom_id']}".encode()).hexdigest()[:32]
            row: dict[str, Any] = {
                "id": "batch_req_" + hashlib.sha256(f"{batch.id}:{line['custom_id']}".encode()).hexdigest()[:32],
                "custom_id": line["custom_id"],
                "response": None,
                "error": None,
            }
            if answered:
                self.lines_answered += 1
                self._serial += 1
                status_code, body = self.complete_line(line["body"], self._serial)
                row["response"] = {"status_code": status_code, "request_id": request_id, "body": body}
                (outputs if status_code == 200 else errors).append(json.dumps(row, separators=(",", ":")))
            else:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                message = (
                    "This request could not be executed before the completion window expired."
                    if status == "expired" else "This request was not executed because the batch was cancelled."
                )
                row["error"] = {"code": code, "message": message}
                errors.append(json.dumps(row, separators=(",", ":")))
        batch.completed = len(outputs)
        batch.failed = len(errors)
        if outputs:
            batch.output_file_id = self.add_file(
                f"batch_{batch.id}_output.jsonl", "batch_output", ("\n".join(outputs) + "\n").encode()
            ).id
        if errors:
            batch.error_file_id = self.add_file(
                f"batch_{batch.id}_error.jsonl", "batch_output", ("\n".join(errors) + "\n").encode()
            ).id
        now = _seconds(self.clock())
        if status == "completed":
            batch.times["finalizing"] = now
        batch.times[status] = now
        batch.status = status


def _parse_input(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """(lines, validation errors, model) of an input file, checked as the real service does."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()

    def problem(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": number})

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], [{"code": "invalid_json_line", "message": "The file is not UTF-8 text.", "param": None, "line": None}], None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            problem(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str) or not line["custom_id"]:
            problem(number, "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if line["custom_id"] in seen:
            problem(number, "duplicate_custom_id", "The custom_id for this request is a duplicate of another request.", "custom_id")
            continue
        if line.get("method") != "POST":
            problem(number, "invalid_value", "Invalid value for 'method': only POST is supported.", "method")
            continue
        if line.get("url") != endpoint:
            problem(number, "mismatched_endpoint", f"The provided url does not match the batch endpoint {endpoint}.", "url")
            continue
        if not isinstance(line.get("body"), dict):
            problem(number, "missing_required_parameter", "Missing required parameter: 'body'.", "body")
            continue
        seen.add(line["custom_id"])
        models.add(str(line["body"].get("model")))
        lines.append(line)
    if not lines and not errors:
        errors.append({"code": "empty_file", "message": "The batch input file is empty.", "param": None, "line": None})
    if len(models) > 1:
        errors.append({"code": "mismatched_model", "message": "The model must be the same for every request of a batch.",
                       "param": "body.model", "line": None})
    return lines, errors, next(iter(models)) if len(models) == 1 else None


def _page(items: list[dict[str, Any]], request: Request) -> Response:
    """A cursor page: `after` an id, `limit` items (at most 100)."""
    try:
        limit = max(1, min(MAX_LIST, int(request.query_params.get("limit", "20"))))
    except ValueError:
        return _error(400, "Invalid value for 'limit': expected an integer.", code="invalid_value", param="limit")
    after = request.query_params.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return json_response({
        "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit,
    }, indent=2)


def _multipart(request: Request, body: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """The fields of a multipart/form-data body: name -> (filename, bytes); None if it is not multipart."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=default_policy).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def batch_routes(store: BatchStore) -> list[Route]:
    """The /v1/files and /v1/batches routes (counted and fault-injectable like the chat endpoint)."""
    from deallens.sim.openai import _read_key_problem

    def routed(key: str, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            async def handle() -> Response:
                problem = _read_key_problem(request)
                return problem if problem is not None else await handler(request)

            def fault(rule: Any, request: Request) -> Response:
                from deallens.sim.openai import _LINE_ERROR_FAULTS, _error_fault

                if rule.kind in _LINE_ERROR_FAULTS:
                    return _error_fault(rule, "batch")
                # A completion fault means nothing to a file or batch request: say so rather than guess.
                return _error(500, f"fault {rule.kind!r} applies to completions only; aim it with match "
                                   "'/v1/chat/completions' or 'batch_line'", code="sim_fault")

            return await answer(store.controller, key, request, handle, fault)

        return endpoint

    async def upload(request: Request) -> Response:
        fields = _multipart(request, await request.body())
        if fields is None:
            return _error(400, "Expected a multipart/form-data body with 'file' and 'purpose'.", code="invalid_request")
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
        if "file" not in fields:
            return _error(400, "Missing required parameter: 'file'.", code="missing_required_parameter", param="file")
        if purpose != "batch":
            return _error(400, f"Invalid value for 'purpose': this stand-in stores 'batch' files only, not {purpose!r}.",
                          code="invalid_value", param="purpose")
        filename, content = fields["file"]
        return json_response(store.add_file(filename or "upload.jsonl", purpose, content).as_dict(), indent=2)

    async def list_files(request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        files = [f.as_dict() for f in store.files.values() if purpose in (None, f.purpose)]
        if request.query_params.get("order", "desc") == "desc":
            files.reverse()
        return _page(files, request)

    async def get_file(request: Request) -> Response:
        stored = store.files.get(request.path_params["file_id"])
        return json_response(stored.as_dict(), indent=2) if stored else _not_found("file", request.path_params["file_id"])

    async def file_content(request: Request) -> Response:
        stored = store.files.get(request.path_params["file_id"])
        if stored is None:
            return _not_found("file", request.path_params["file_id"])
        return Response(stored.content, media_type="application/octet-stream")

    async def create(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.", code=None)
        if body.get("completion_window") != "24h":
            return _error(400, "Invalid value for 'completion_window': only '24h' is supported.",
                          code="invalid_value", param="completion_window")
        if body.get("endpoint") not in SUPPORTED_ENDPOINTS:
            return _error(400, f"Invalid value for 'endpoint': this stand-in batches {', '.join(SUPPORTED_ENDPOINTS)} only.",
                          code="invalid_value", param="endpoint")
        input_file = store.files.get(str(body.get("input_file_id")))
        if input_file is None:
            return _not_found("file", str(body.get("input_file_id")))
        if input_file.purpose != "batch":
            return _error(400, "The input file must have purpose 'batch'.", code="invalid_value", param="input_file_id")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict) or len(metadata) > 16
            or any(not isinstance(k, str) or len(k) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in metadata.items())
        ):
            return _error(400, "Invalid 'metadata': at most 16 string pairs, keys up to 64 and values up to 512 characters.",
                          code="invalid_value", param="metadata")
        batch = store.create_batch(input_file, body["endpoint"], metadata)
        return json_response(batch.as_dict(), indent=2)

    async def retrieve(request: Request) -> Response:
        batch = store.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _not_found("batch", request.path_params["batch_id"])
        return json_response(store.refresh(batch).as_dict(), indent=2)

    async def list_batches(request: Request) -> Response:
        batches = [store.refresh(b).as_dict() for b in reversed(list(store.batches.values()))]
        return _page(batches, request)

    async def cancel(request: Request) -> Response:
        batch = store.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _not_found("batch", request.path_params["batch_id"])
        return json_response(store.cancel(batch).as_dict(), indent=2)

    return [
        Route("/v1/files", routed("/v1/files", upload), methods=["POST"]),
        Route("/v1/files", routed("/v1/files:list", list_files), methods=["GET"]),
        Route("/v1/files/{file_id}", routed("/v1/files:retrieve", get_file), methods=["GET"]),
        Route("/v1/files/{file_id}/content", routed("/v1/files:content", file_content), methods=["GET"]),
        Route("/v1/batches", routed("/v1/batches", create), methods=["POST"]),
        Route("/v1/batches", routed("/v1/batches:list", list_batches), methods=["GET"]),
        Route("/v1/batches/{batch_id}", routed("/v1/batches:retrieve", retrieve), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", routed("/v1/batches:cancel", cancel), methods=["POST"]),
    ]
