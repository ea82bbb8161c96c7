"""The Messages API over httpx: one async generator of text deltas, then the end.

Where it is served (the Anthropic API, Bedrock, Vertex) is a Provider (providers.py).
Everything else here is private: request bodies per model profile, SSE parsing, typed errors
from the error body, retries with backoff before any text, fresh credentials after a 401,
and the fallback model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from bot.conversation import Prompt, StreamEnd, Turn, Usage
from bot.errors import (
    AuthenticationError,
    BadRequestError,
    LLMError,
    OverloadedError,
    PromptTooLongError,
    RateLimitError,
    StreamInterruptedError,
    UnavailableError,
)
from bot.models import ModelProfile, estimate_tokens, profile
from bot.providers import AnthropicAPI, Prepared, Provider
from bot.sse import server_sent
from bot.transport import AiohttpTransport

log = logging.getLogger(__name__)

MAX_RETRIES = 3
_TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")


@dataclass(frozen=True)
class ModelOptions:
    """The settings that shape each request, beyond the prompt."""

    model: str
    fallback_model: str | None
    temperature: float
    effort: str  # low / medium / high / off
    prompt_caching: bool = True  # cache breakpoints (off only to measure what they save)


class ClaudeClient:
    """A pooled HTTP client for the Messages API wherever a Provider serves it; `stream()`
    is the one call the bot makes."""

    def __init__(
        self,
        provider: Provider,
        options: ModelOptions,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        backoff_base: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.options = options
        self.backoff_base = backoff_base
        self._transport = transport or AiohttpTransport()
        self._client = httpx.AsyncClient(
            base_url=provider.base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=self._transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str | StreamEnd, None]:
        """Text deltas of the answer, then one StreamEnd. Raises an LLMError subclass."""
        models = [self.options.model]
        fallback = self.options.fallback_model
        if fallback and fallback != self.options.model:
            models.append(fallback)
        for index, model_id in enumerate(models):
            last = index == len(models) - 1
            sent_text = False
            try:
                async for item in self._stream_with_retries(prompt, model_id):
                    sent_text = sent_text or isinstance(item, str)
                    yield item
                return
            except (OverloadedError, UnavailableError) as error:
                if last or sent_text:  # never splice a second answer onto a partial one
                    raise
                log.warning("%s stays unavailable (%s); trying %s", model_id, error, models[-1])

    async def count_tokens(self, prompt: Prompt) -> int:
        """The API's own count of the prompt's input tokens (the Anthropic API)."""
        body = _body(prompt, profile(self.options.model), self.options, stream=False)
        for name in ("max_tokens", "stream", "temperature"):
            body.pop(name, None)
        prepared = await self.provider.prepare(self.options.model, body, stream=False)
        response = await self._send(prepared.path + "/count_tokens", prepared)
        return int(response.json()["input_tokens"])

    async def check(self) -> str:
        """Reach the provider with the configured model: what answered, and as whom."""
        model = self.options.model
        if isinstance(self.provider, AnthropicAPI):
            response = await self._client.get(f"/v1/models/{model}",
                                              headers=self.provider.headers())
            if response.status_code != 200:
                raise error_from(response.status_code, response.text, response.headers)
            name = f'{model} ({response.json().get("display_name", model)})'
        else:  # no model list on the clouds' Messages endpoints: one tiny request
            body = {"max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}
            prepared = await self.provider.prepare(model, body, stream=False)
            response = await self._send(prepared.path, prepared)
            name = self.provider.model_id(model)
        return f"{name}, as {await self.provider.identity()}"

    async def _send(self, path: str, prepared: Prepared) -> httpx.Response:
        try:
            response = await self._client.post(path, content=prepared.content,
                                               headers=prepared.headers)
        except httpx.HTTPError as error:
            raise UnavailableError(f"cannot reach {self.provider.base_url}{path} "
                                   f"({type(error).__name__})") from None
        if response.status_code != 200:
            raise error_from(response.status_code, response.text, response.headers)
        return response

    async def stream_body(self, body: dict[str, Any]) -> AsyncIterator[str | StreamEnd]:
        """A request body made by request_body(), streamed with the same retries (no
        fallback: an evaluation asks the model it names)."""
        payload = {key: value for key, value in body.items() if key != "model"}
        async for item in self._retrying({**payload, "stream": True}, str(body["model"])):
            yield item

    async def _stream_with_retries(
        self, prompt: Prompt, model_id: str
    ) -> AsyncIterator[str | StreamEnd]:
        body = _body(prompt, profile(model_id), self.options, stream=True)
        async for item in self._retrying(body, model_id):
            yield item

    async def _retrying(
        self, body: dict[str, Any], model_id: str
    ) -> AsyncIterator[str | StreamEnd]:
        renewed = False
        attempt = 0
        while True:
            started = False
            try:
                async for item in self._stream_once(body, model_id):
                    started = started or isinstance(item, str)
                    yield item
                return
            except AuthenticationError:
                # A token that expired or was revoked early: fresh credentials, once.
                if started or renewed or not await self.provider.renew():
                    raise
                renewed = True
                log.info("model API refused the credentials; retrying with fresh ones")
            except LLMError as error:
                if started or not error.retryable or attempt == MAX_RETRIES:
                    raise
                delay = self._backoff(attempt, error.retry_after)
                attempt += 1
                log.info("model API %s (%s); retry %d in %.1fs", error.status, error.error_type,
                         attempt, delay)
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; the server's retry-after wins when given."""
        if retry_after is not None:
            return min(retry_after, 60.0)
        return random.uniform(0, self.backoff_base * 2**attempt)

    async def _stream_once(
        self, body: dict[str, Any], model_id: str
    ) -> AsyncIterator[str | StreamEnd]:
        sent_text = False
        prepared = await self.provider.prepare(model_id, body, stream=True)
        end_model = self.provider.model_id(model_id)
        factor = self.provider.price_factor(model_id)
        try:
            async with self._streamed(prepared) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise error_from(response.status_code, text, response.headers)
                request_id = response.headers.get("request-id", "")
                async for item in _read_events(server_sent(_bytes_of(response)), end_model,
                                               request_id, factor):
                    sent_text = sent_text or isinstance(item, str)
                    yield item
        except httpx.HTTPError as error:
            # After some text the answer is partial whatever the cause: not retryable.
            if isinstance(error, httpx.ConnectError):
                raise UnavailableError(f"cannot connect to {self.provider.base_url}"
                                       f"{prepared.path} (ConnectError)") from None
            cls = StreamInterruptedError if sent_text else UnavailableError
            what = "timed out" if isinstance(error, httpx.TimeoutException) else "was lost"
            raise cls(f"the model API connection {what} ({type(error).__name__})") from None

    @contextlib.asynccontextmanager
    async def _streamed(self, prepared: Prepared) -> AsyncIterator[httpx.Response]:
        """The streamed request, sent straight to the transport: the client's send (auth,
        redirects, cookies, hooks: none of which a Messages request uses) and its three
        wrappers around every read of the body cost more CPU than the rest of the request."""
        if self._client.is_closed:  # as the client's own send would say
            raise RuntimeError("the model client is closed")
        headers = {**prepared.headers, "accept-encoding": "identity"}
        request = self._client.build_request("POST", prepared.path, content=prepared.content,
                                             headers=headers)
        response = await self._transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()


def _bytes_of(response: httpx.Response) -> AsyncIterator[bytes]:
    """A streamed response's bytes: as the transport reads them when they are not encoded
    (identity was asked for), else decoded by httpx."""
    if response.headers.get("content-encoding", "identity") == "identity" and isinstance(
            response.stream, httpx.AsyncByteStream):
        return aiter(response.stream)
    return response.aiter_bytes()


class AnthropicClient(ClaudeClient):
    """The client on the Anthropic API with an API key."""

    def __init__(self, api_key: str, base_url: str, options: ModelOptions,
                 **kw: Any) -> None:
        super().__init__(AnthropicAPI(api_key, base_url), options, **kw)


async def _read_events(
    source: AsyncIterator[list[tuple[str, str]]], model_id: str, request_id: str,
    price_factor: float = 1.0,
) -> AsyncIterator[str | StreamEnd]:
    """Turn SSE events into text: only `text` blocks count, picked by type; the text deltas
    of each batch of events come out as one."""
    text_blocks: set[int] = set()
    usage: dict[str, int] = {}
    stop_reason = ""
    sent_text = stopped = False
    async for batch in source:
        text: list[str] = []
        failure: dict[str, Any] | None = None
        for (event, _), data in zip(batch, _decoded(batch), strict=True):
            kind = data.get("type", event)
            if kind == "content_block_delta":
                delta = data.get("delta", {})
                if delta.get("type") == "text_delta" and data.get("index", 0) in text_blocks \
                        and delta.get("text"):
                    text.append(delta["text"])
            elif kind == "message_start":
                # Keep the requested id: the API may answer with a dated snapshot id that the
                # price table does not list.
                usage.update(usage_fields(data.get("message", {}).get("usage", {})))
            elif kind == "content_block_start":
                if data.get("content_block", {}).get("type") == "text":
                    text_blocks.add(int(data.get("index", 0)))
            elif kind == "message_delta":
                stop_reason = data.get("delta", {}).get("stop_reason") or stop_reason
                usage.update(usage_fields(data.get("usage", {})))
            elif kind == "message_stop":
                stopped = True  # read to the end of the body so the connection is reused
            elif kind == "error":
                failure = data.get("error", {})
                break
        if text:  # before an error too: what came before it is shown with it
            sent_text = True
            yield "".join(text)
        if failure is not None:
            cls = StreamInterruptedError if sent_text else _class_for(0, failure.get("type", ""))
            raise cls(
                failure.get("message", "the stream failed"),
                error_type=failure.get("type", ""),
                request_id=request_id,
                status=0 if sent_text else _status_for(failure.get("type", "")),
            )
    if stopped:
        yield StreamEnd(stop_reason=stop_reason or "end_turn", usage=Usage(**usage),
                        model=model_id, price_factor=price_factor)
        return
    # The connection closed without message_stop: the answer is incomplete.
    cls = StreamInterruptedError if sent_text else UnavailableError
    raise cls("the model API closed the stream early", request_id=request_id)


def _decoded(batch: list[tuple[str, str]]) -> list[Any]:
    """The events' JSON data, decoded in one call (a few per read; each call costs more
    than its few bytes); event by event when that fails, so a bad one raises as itself."""
    with contextlib.suppress(ValueError):
        decoded = json.loads("[" + ",".join(payload or "{}" for _, payload in batch) + "]")
        if isinstance(decoded, list) and len(decoded) == len(batch):
            return decoded
    return [json.loads(payload) if payload else {} for _, payload in batch]


def usage_fields(raw: dict[str, Any]) -> dict[str, int]:
    """The token counts of an API usage object that it holds (a stream's parts, a message)."""
    names = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
             "cache_read_input_tokens")
    return {name: int(raw[name]) for name in names if isinstance(raw.get(name), int)}


def _status_for(error_type: str) -> int:
    return {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429}.get(error_type, 0)


def _class_for(status: int, error_type: str) -> type[LLMError]:
    if status in (401, 403) or error_type in ("authentication_error", "permission_error"):
        return AuthenticationError
    if status == 429 or error_type == "rate_limit_error":
        return RateLimitError
    if status == 529 or error_type == "overloaded_error":
        return OverloadedError
    if status >= 500 or error_type == "api_error" or status == 0:
        return UnavailableError
    return BadRequestError


def request_body(prompt: Prompt, model_id: str, options: ModelOptions) -> dict[str, Any]:
    """The non-streaming Messages request the bot would send for this prompt, with its
    model: what a Message Batch carries as each request's params."""
    body = _body(prompt, profile(model_id), options, stream=False)
    body.pop("stream")
    return {"model": model_id, **body}


def error_from(status: int, text: str, headers: httpx.Headers) -> LLMError:
    """A typed error from the error body: the API's {"type":"error","error":{type,message}},
    AWS's {"message": …} with an x-amzn-errortype header, or Google's
    {"error":{"code","message","status"}} (sometimes inside a list)."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {}
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]
    if not isinstance(payload, dict):
        payload = {}
    found = payload.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    message = str(error.get("message") or payload.get("message") or payload.get("Message")
                  or f"HTTP {status}")
    aws_type = headers.get("x-amzn-errortype", "").split(":")[0]
    error_type = str(error.get("type") or error.get("status") or aws_type or "")
    request_id = (headers.get("request-id") or headers.get("x-amzn-requestid")
                  or str(payload.get("request_id", "")))
    retry_after = _seconds(headers.get("retry-after"))
    kw: dict[str, Any] = dict(
        status=status, error_type=error_type, request_id=request_id, retry_after=retry_after
    )
    match = _TOO_LONG.search(message)
    if match:
        return PromptTooLongError(message, int(match.group(1)), int(match.group(2)), **kw)
    return _class_for(status, error_type)(message, **kw)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _body(
    prompt: Prompt, model: ModelProfile, options: ModelOptions, *, stream: bool
) -> dict[str, Any]:
    """The JSON body for one model: only the parameters that model accepts.

    Stable parts first, so they can be read from the prompt cache: the system prompt, then
    the conversation so far, then this turn's passages with the question. A breakpoint goes
    on the system prompt and at the end of the history, each only where the prefix reaches
    the model's minimum cacheable length (shorter marks are ignored by the API).
    """
    caching = options.prompt_caching
    system_block: dict[str, Any] = {"type": "text", "text": prompt.system}
    prefix = estimate_tokens(prompt.system, model)
    if caching and prefix >= model.min_cacheable:
        system_block["cache_control"] = {"type": "ephemeral"}
    *history, current = prompt.turns or (Turn(role="user", text="", tokens=0),)
    messages = [_message(turn) for turn in history]
    prefix += sum(estimate_tokens(t.text, model, len(t.images)) for t in history)
    if caching and messages and prefix >= model.min_cacheable:
        _mark_end(messages[-1])
    messages.append(_message(current, prompt.context))
    body: dict[str, Any] = {
        "max_tokens": min(prompt.max_tokens, model.max_output),
        "system": [system_block],
        "messages": messages,
        "stream": stream,
    }
    if model.sampling in ("all", "one"):
        body["temperature"] = options.temperature
    if model.thinking == "adaptive":
        if options.effort == "off" and model.can_disable_thinking:
            body["thinking"] = {"type": "disabled"}
        else:
            effort = "low" if options.effort == "off" else options.effort
            body["output_config"] = {"effort": effort}
    return body


def _mark_end(message: dict[str, Any]) -> None:
    """A cache breakpoint on the last block of a message."""
    content = message["content"]
    if isinstance(content, str):
        content = message["content"] = [{"type": "text", "text": content}]
    content[-1]["cache_control"] = {"type": "ephemeral"}


def _message(turn: Turn, context: str = "") -> dict[str, Any]:
    """One turn as a message; `context` (this turn's docs passages) goes before its text."""
    text = turn.text if turn.text.strip() else "(no text)"
    if not turn.images and not context:
        return {"role": turn.role, "content": text}
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": image.media_type,
                "data": base64.b64encode(image.data).decode("ascii"),
            },
        }
        for image in turn.images
    ]
    if context:
        blocks.append({"type": "text", "text": context})
    blocks.append({"type": "text", "text": text})
    return {"role": turn.role, "content": blocks}