"""The Message Batches API: many Messages requests in one, answered within 24 hours at half
the price (Anthropic's pricing page). Used to replay evaluation sets cheaply.

    POST /v1/messages/batches            {"requests": [{"custom_id", "params"}]}
    GET  /v1/messages/batches/{id}       processing_status in_progress / canceling / ended
    GET  {results_url}                   JSON lines: {"custom_id", "result": {"type": …}}
    POST /v1/messages/batches/{id}/cancel

Only the Anthropic API serves it; Bedrock and Vertex run batch jobs of their own through
cloud storage, which this does not drive.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.errors import BadRequestError, UnavailableError
from bot.llm import error_from
from bot.providers import AnthropicAPI, Provider

MAX_REQUESTS = 100_000  # per batch (the API's limit)
MAX_BYTES = 256_000_000  # per batch body (256 MB)
CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class BatchStatus:
    id: str
    status: str  # in_progress / canceling / ended
    counts: dict[str, int]  # processing, succeeded, errored, canceled, expired
    results_url: str | None

    @property
    def done(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "processing")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome: kind is succeeded / errored / canceled / expired."""

    custom_id: str
    kind: str
    message: dict[str, Any] = field(default_factory=dict)
    error: str = ""


Progress = Callable[[BatchStatus], None]


def chunks(requests: Sequence[tuple[str, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The requests as batches within the API's limits (count and body size)."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for custom_id, params in requests:
        if not CUSTOM_ID.match(custom_id):
            raise ValueError(f"custom_id {custom_id!r}: 1-64 letters, digits, - or _")
        item = {"custom_id": custom_id, "params": params}
        item_size = len(json.dumps(item)) + 2
        if out[-1] and (len(out[-1]) >= MAX_REQUESTS or size + item_size > MAX_BYTES):
            out.append([])
            size = 0
        out[-1].append(item)
        size += item_size
    return [batch for batch in out if batch]


class MessageBatches:
    """A small client for the batch endpoints on the Anthropic API provider."""

    def __init__(self, provider: Provider, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0) -> None:
        if not isinstance(provider, AnthropicAPI):
            raise BadRequestError(f"the Message Batches API is not served by {provider.name}")
        self.provider = provider
        self._client = httpx.AsyncClient(base_url=provider.base_url, timeout=timeout,
                                         transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, url: str, body: Any = None) -> httpx.Response:
        try:
            response = await self._client.request(
                method, url, headers=self.provider.headers(),
                content=None if body is None else json.dumps(body).encode())
        except httpx.HTTPError as error:
            raise UnavailableError(f"cannot reach the batch API: {type(error).__name__}") from None
        if response.status_code != 200:
            raise error_from(response.status_code, response.text, response.headers)
        return response

    async def create(self, requests: list[dict[str, Any]]) -> BatchStatus:
        response = await self._call("POST", "/v1/messages/batches", {"requests": requests})
        return _status(response.json())

    async def retrieve(self, batch_id: str) -> BatchStatus:
        return _status((await self._call("GET", f"/v1/messages/batches/{batch_id}")).json())

    async def cancel(self, batch_id: str) -> BatchStatus:
        response = await self._call("POST", f"/v1/messages/batches/{batch_id}/cancel")
        return _status(response.json())

    async def wait(self, batch_id: str, progress: Progress | None = None, *,
                   first_poll: float = 5.0, longest_poll: float = 60.0,
                   deadline_s: float = 24 * 3600 + 600) -> BatchStatus:
        """Poll with a growing interval until the batch ends (a batch expires after 24 h)."""
        delay, give_up = first_poll, time.monotonic() + deadline_s
        while True:
            status = await self.retrieve(batch_id)
            if progress is not None:
                progress(status)
            if status.status == "ended":
                return status
            if time.monotonic() > give_up:
                raise UnavailableError(f"batch {batch_id} did not end in time")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, longest_poll)

    async def results(self, status: BatchStatus) -> list[BatchResult]:
        """Every request's outcome, read from the batch's results_url (JSON lines)."""
        if not status.results_url:
            raise UnavailableError(f"batch {status.id} has no results yet")
        response = await self._call("GET", status.results_url)
        out: list[BatchResult] = []
        for line in response.text.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            result = entry.get("result", {})
            kind = str(result.get("type", "errored"))
            error = result.get("error", {}).get("error", {}) if kind == "errored" else {}
            out.append(BatchResult(str(entry.get("custom_id", "")), kind,
                                   result.get("message") or {},
                                   str(error.get("message", "") if error else "")))
        return out


def _status(data: dict[str, Any]) -> BatchStatus:
    counts = {k: int(v) for k, v in (data.get("request_counts") or {}).items()}
    return BatchStatus(str(data["id"]), str(data.get("processing_status", "")), counts,
                       data.get("results_url"))
