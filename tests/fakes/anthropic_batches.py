"""The Message Batches endpoints of the fake Anthropic server.

A batch is validated as the API does (at most `max_requests` requests and `max_bytes` of
body, custom ids of 1-64 letters, digits, - or _, unique in the batch; every request a valid
non-streaming Messages request), stays `in_progress` for `processing_seconds`, then ends with
one result per request: succeeded (the answer the fake would have given, scripted steps
included), errored (a scripted Fail, or a request the API would refuse), expired (custom ids
listed in `expire`) or canceled (cancelled before it ended). Results are JSON lines at the
batch's results_url, in an order that is not the requests' (as the API warns).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_rules import ApiError, invalid
from tests.fakes.anthropic_wire import error_response

JSON = dict[str, Any]
MAX_REQUESTS = 100_000
MAX_BYTES = 256_000_000
CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# (params) -> ("succeeded", message) or ("errored", error object)
Answerer = Callable[[JSON], tuple[str, JSON]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Batch:
    id: str
    requests: list[JSON]
    created: float
    ends_at: float
    results: list[JSON] = field(default_factory=list)
    canceled_at: float | None = None
    ended_at: float | None = None


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


class BatchEndpoints:
    """Batches kept in memory; `answer` gives each request's result when the batch ends."""

    def __init__(self, answer: Answerer, base_url: Callable[[], str],
                 check: Callable[[web.Request], None]) -> None:
        self.answer = answer
        self.check = check  # the API key and version headers, as on /v1/messages
        self.base_url = base_url
        self.batches: dict[str, Batch] = {}
        self.processing_seconds = 0.2
        self.max_requests = MAX_REQUESTS
        self.max_bytes = MAX_BYTES
        self.expire: set[str] = set()
        self.polls = 0

    def add_routes(self, app: web.Application) -> None:
        for method, path, handler in (
                ("POST", "/v1/messages/batches", self.on_create),
                ("GET", "/v1/messages/batches/{id}", self.on_retrieve),
                ("GET", "/v1/messages/batches/{id}/results", self.on_results),
                ("POST", "/v1/messages/batches/{id}/cancel", self.on_cancel)):
            app.router.add_route(method, path, self._guarded(handler))

    def _guarded(self, handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                self.check(request)
                return await handler(request)
            except ApiError as exc:
                return error_response(exc)

        return run

    def create(self, raw: bytes) -> Batch:
        if len(raw) > self.max_bytes:
            raise ApiError(413, f"Batch body exceeds the {self.max_bytes} byte limit",
                           "request_too_large")
        try:
            body = json.loads(raw)
        except ValueError:
            raise invalid("body: not valid JSON") from None
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise invalid("requests: expected a non-empty list")
        if len(requests) > self.max_requests:
            raise invalid(f"requests: at most {self.max_requests} requests per batch")
        seen: set[str] = set()
        for number, item in enumerate(requests):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                raise invalid(f"requests.{number}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if custom_id in seen:
                raise invalid(f"requests.{number}.custom_id: '{custom_id}' is not unique")
            seen.add(custom_id)
            if not isinstance(item.get("params"), dict):
                raise invalid(f"requests.{number}.params: expected an object")
        now = time.time()
        batch = Batch("msgbatch_" + f"{len(self.batches) + 1:024d}", requests, now,
                      now + self.processing_seconds)
        self.batches[batch.id] = batch
        return batch

    def _settle(self, batch: Batch) -> None:
        """End the batch once its time has come: one result per request."""
        now = time.time()
        if batch.ended_at is not None or (now < batch.ends_at and batch.canceled_at is None):
            return
        for item in batch.requests:
            custom_id = item["custom_id"]
            if batch.canceled_at is not None:
                result: JSON = {"type": "canceled"}
            elif custom_id in self.expire:
                result = {"type": "expired"}
            else:
                kind, payload = self._answer(item["params"])
                result = ({"type": "succeeded", "message": payload} if kind == "succeeded"
                          else {"type": "errored", "error": payload})
            batch.results.append({"custom_id": custom_id, "result": result})
        batch.results.reverse()  # not the requests' order, as the API warns
        batch.ended_at = now

    def _answer(self, params: JSON) -> tuple[str, JSON]:
        if params.get("stream"):
            return "errored", _error("invalid_request_error",
                                     "stream: batch requests cannot stream")
        return self.answer(params)

    def view(self, batch: Batch) -> JSON:
        self._settle(batch)
        ended = batch.ended_at is not None
        counts = {"processing": 0 if ended else len(batch.requests), "succeeded": 0,
                  "errored": 0, "canceled": 0, "expired": 0}
        for entry in batch.results:
            counts[entry["result"]["type"]] += 1
        return {
            "id": batch.id, "type": "message_batch",
            "processing_status": "ended" if ended else (
                "canceling" if batch.canceled_at is not None else "in_progress"),
            "request_counts": counts,
            "created_at": _stamp(batch.created),
            "expires_at": _stamp(batch.created + timedelta(hours=24).total_seconds()),
            "ended_at": _stamp(batch.ended_at) if batch.ended_at else None,
            "cancel_initiated_at": _stamp(batch.canceled_at) if batch.canceled_at else None,
            "archived_at": None,
            "results_url": (f"{self.base_url()}/v1/messages/batches/{batch.id}/results"
                            if ended else None),
        }

    def find(self, request: web.Request) -> Batch:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            raise ApiError(404, f"No message batch with id {request.match_info['id']}",
                           "not_found_error")
        return batch

    # -- handlers (the server checks the key before calling these)

    async def on_create(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view(self.create(await request.read())))

    async def on_retrieve(self, request: web.Request) -> web.StreamResponse:
        self.polls += 1
        return web.json_response(self.view(self.find(request)))

    async def on_cancel(self, request: web.Request) -> web.StreamResponse:
        batch = self.find(request)
        if batch.ended_at is None:
            batch.canceled_at = time.time()
        return web.json_response(self.view(batch))

    async def on_results(self, request: web.Request) -> web.StreamResponse:
        batch = self.find(request)
        self._settle(batch)
        if batch.ended_at is None:
            raise ApiError(400, f"Batch {batch.id} is still processing; results are "
                           "available once it has ended", "invalid_request_error")
        lines = "".join(json.dumps(entry) + "\n" for entry in batch.results)
        return web.Response(text=lines, content_type="application/binary")


def _error(kind: str, message: str) -> JSON:
    return {"type": "error", "error": {"type": kind, "message": message}}
