"""A local fake of the Anthropic Messages API (aiohttp, 127.0.0.1 only) for tests and benchmarks.

It speaks the real wire format (headers, error bodies, SSE events) and imitates the per-model
rules in DESIGN.md; answers are scripted with Reply/Fail or generated deterministically.

This module is the public entry: the scripted values, the server and the command line. The
model table and request validation are in anthropic_rules.py; generated text, token counts and
the prompt cache in anthropic_text.py; JSON, error and SSE responses in anthropic_wire.py.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_batches import BatchEndpoints
from tests.fakes.anthropic_clouds import (
    BEDROCK_PATH,
    TOKEN_PATH,
    VERTEX_PATH,
    AwsAccount,
    CloudError,
    GoogleAccount,
    aws_error,
)
from tests.fakes.anthropic_rules import (
    ERROR_MESSAGES,
    JSON,
    MAX_REQUEST_BYTES,
    MODELS,
    PREFILL_MESSAGE,
    ApiError,
    ModelSpec,
    check_count_request,
    check_headers,
    check_message_request,
    find_model,
    invalid,
    model_object,
    parse_body,
    require_object,
)
from tests.fakes.anthropic_text import (
    Call,
    PromptCache,
    compose_answer,
    default_text,
    measure_prompt,
    split_deltas,
)
from tests.fakes.anthropic_wire import (
    STALL_SECONDS,
    Pace,
    SentText,
    error_response,
    errors_middleware,
    json_response,
    message_object,
    respond,
    stream,
)
from tests.fakes.server import LocalServer

__all__ = [
    "MODELS",
    "PREFILL_MESSAGE",
    "ApiError",
    "Fail",
    "FakeAnthropic",
    "ModelSpec",
    "RecordedRequest",
    "Reply",
    "Step",
    "default_text",
    "error_response",
    "main",
    "measure_prompt",
    "split_deltas",
    "step_from_dict",
]

# A short shutdown timeout so stop() never waits on a slow scripted stream.
SHUTDOWN_TIMEOUT = 0.5


@dataclass(frozen=True)
class Reply:
    """One scripted successful answer; unset fields fall back to the server's defaults."""

    text: str | None = None
    words: int | None = None
    stop_reason: str = "end_turn"
    first_token_delay: float | None = None
    delta_interval: float | None = None
    error_after_deltas: int | None = None
    drop_after_deltas: int | None = None  # the connection is lost after N deltas, silently
    # The stream goes quiet after N deltas (0: before any text) and stays open, as a stuck
    # endpoint does; `silent` accepts the request and never sends even the status line.
    stall_after_deltas: int | None = None
    silent: bool = False
    when: str | None = None


@dataclass(frozen=True)
class Fail:
    """One scripted HTTP failure, with the real API's error body and an optional retry-after."""

    status: int
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    when: str | None = None


Step = Reply | Fail


def bedrock_id(model: str) -> str:
    """The Claude API id behind a Bedrock model id ("us.anthropic.claude-haiku-5-5"), or ""
    for an id Bedrock would not know (no "anthropic." provider prefix)."""
    name = model.split(".", 1)[1] if model.split(".", 1)[0] in (
        "global", "us", "eu", "apac", "jp", "au") else model
    if not name.startswith("anthropic."):
        return ""
    name = name.removeprefix("anthropic.")
    return name.rsplit("-v", 1)[0] if name.endswith(":0") else name


def message_text(message: Any) -> str:
    """A message's own text: string content, or its text blocks but a <documentation> one."""
    content = message["content"]
    if isinstance(content, str):
        return str(content)
    texts = [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "".join(t for t in texts if not t.startswith("<documentation>"))


@dataclass(frozen=True)
class RecordedRequest:
    """A /v1/messages request as the fake received it."""

    path: str
    headers: dict[str, str]
    body: JSON
    received: float

    def question(self) -> str:
        """The text of the last message without the docs passages put before it."""
        return message_text(self.body["messages"][-1])

    def documentation(self) -> str:
        """The docs passages the bot sent with the question (in the last message)."""
        content = self.body["messages"][-1]["content"]
        blocks = [content] if isinstance(content, str) else [
            block.get("text", "") for block in content if isinstance(block, dict)]
        return next((text for text in blocks if text.startswith("<documentation>")), "")


def step_from_dict(data: Any) -> Step:
    """A step from its JSON form: the dataclass fields plus "kind": "reply" or "fail"."""
    if not isinstance(data, dict):
        raise invalid("step: expected an object")
    kind = data.get("kind", "reply")
    cls: type[Reply] | type[Fail] = Reply if kind == "reply" else Fail
    if kind not in ("reply", "fail"):
        raise invalid(f"step.kind: expected 'reply' or 'fail', got {kind!r}")
    args = {key: value for key, value in data.items() if key != "kind"}
    unknown = set(args) - {f.name for f in fields(cls)}
    if unknown:
        raise invalid(f"step: unknown fields {sorted(unknown)}")
    try:
        return cls(**args)
    except TypeError as exc:
        raise invalid(f"step: {exc}") from None


def fail_error(fail: Fail) -> ApiError:
    """The error a scripted Fail answers with."""
    headers = {} if fail.retry_after is None else {"retry-after": _seconds(fail.retry_after)}
    message = fail.message or ERROR_MESSAGES.get(fail.status, "Error")
    return ApiError(fail.status, message, fail.error_type, headers)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------- the server


class FakeAnthropic:
    """The fake server; use in-process (async with) or as a subprocess through the CLI."""

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        default_words: int = 40,
        delta_interval: float = 0.0,
        first_token_delay: float = 0.0,
        context_window: int | None = None,
        thinking_delay: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.default_words = default_words
        self.delta_interval = delta_interval
        self.first_token_delay = first_token_delay
        self.context_window = context_window
        self.thinking_delay = thinking_delay
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self._steps: list[Step] = []
        self._cache = PromptCache()
        self._sent = SentText()
        self._server: LocalServer | None = None
        self.batches = BatchEndpoints(self._batch_answer, lambda: self.base_url,
                                      lambda r: check_headers(r.headers, self.api_key))
        self.aws = AwsAccount()  # Bedrock: who may call, where (anthropic_clouds.py)
        self.google = GoogleAccount()  # Vertex: the project, region and token issuer

    # -- lifecycle

    async def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 and return the base URL."""
        app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/messages", self._on_messages)
        app.router.add_post("/v1/messages/count_tokens", self._on_count_tokens)
        self.batches.add_routes(app)
        app.router.add_post(BEDROCK_PATH, self._on_bedrock)
        app.router.add_post(VERTEX_PATH, self._on_vertex)
        app.router.add_post(TOKEN_PATH, self.google.on_token)
        app.router.add_get("/v1/models", self._on_models)
        app.router.add_get("/v1/models/{model_id}", self._on_model)
        app.router.add_post("/_fake/script", self._on_script)
        app.router.add_get("/_fake/requests", self._on_requests)
        app.router.add_get("/_fake/stats", self._on_stats)
        app.router.add_post("/_fake/reset", self._on_reset)
        app.router.add_get("/_fake/google-credentials", self._on_google_credentials)
        self._server = LocalServer(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
        self.base_url = await self._server.start(port)
        return self.base_url

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- scripting

    def script(self, *steps: Step) -> None:
        """Queue answers; each request consumes the first step that matches it."""
        self._steps.extend(steps)

    def reset(self) -> None:
        """Forget the script, recorded requests, the prompt cache and the last answer."""
        self._steps.clear()
        self.requests.clear()
        self._cache.clear()
        self._sent.text = ""

    def last_text_sent(self) -> str:
        """The text of the last answer, as far as it was sent."""
        return self._sent.text

    def _take_step(self, last_user_text: str) -> Step:
        for i, step in enumerate(self._steps):
            if step.when is not None and step.when in last_user_text:
                return self._steps.pop(i)
        for i, step in enumerate(self._steps):
            if step.when is None:
                return self._steps.pop(i)
        return Reply()

    def _pace(self, reply: Reply) -> Pace:
        first, interval = reply.first_token_delay, reply.delta_interval
        return Pace(
            self.first_token_delay if first is None else first,
            self.delta_interval if interval is None else interval,
            self.thinking_delay,
            reply.error_after_deltas,
            reply.drop_after_deltas,
            reply.stall_after_deltas,
        )

    # -- /v1 endpoints

    async def _on_messages(self, request: web.Request) -> web.StreamResponse:
        body = parse_body(await request.read())
        self._record(request, body)
        try:
            check_headers(request.headers, self.api_key)
        except ApiError as exc:
            return error_response(exc)
        return await self._answer(request, body)

    def _record(self, request: web.Request, body: Any) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(RecordedRequest(request.path, headers, body or {}, time.monotonic()))

    async def _on_bedrock(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = parse_body(raw)
        self._record(request, body)
        try:
            self.aws.check(request, raw)
            if not request.headers.get("anthropic-version"):
                raise aws_error(400, "ValidationException", "anthropic-version is required")
            model = body.get("model") if isinstance(body, dict) else None
            if not isinstance(model, str) or not bedrock_id(model):
                raise aws_error(400, "ValidationException",
                                "The provided model identifier is invalid.")
        except CloudError as refusal:
            return refusal.response
        return await self._answer(request, {**body, "model": bedrock_id(model)})

    async def _on_vertex(self, request: web.Request) -> web.StreamResponse:
        body = parse_body(await request.read())
        self._record(request, body)
        try:
            model, streamed = self.google.check(request, body)
        except CloudError as refusal:
            return refusal.response
        payload = {k: v for k, v in body.items() if k != "anthropic_version"}
        return await self._answer(request, {**payload, "model": model, "stream": streamed})

    async def _answer(self, request: web.Request, body: Any) -> web.StreamResponse:
        try:
            payload = require_object(body)
            call = self._validate(payload)
            step = self._take_step(call.prompt.last_user_text)
            if isinstance(step, Fail):
                raise fail_error(step)
        except ApiError as exc:
            return error_response(exc)
        if step.silent:
            await asyncio.sleep(STALL_SECONDS)  # until the client gives up and disconnects
        answer = compose_answer(call, step.text, step.words, step.stop_reason, self.default_words)
        usage = self._cache.bill(call.prompt, call.spec.min_cacheable)
        if payload.get("stream") is True:
            return await stream(request, call, answer, usage, self._pace(step), self._sent)
        return await respond(call, answer, usage, self._pace(step), self._sent)

    def _batch_answer(self, params: JSON) -> tuple[str, JSON]:
        """One batch request's result: the answer this request would have had alone."""
        try:
            call = self._validate(params)
            step = self._take_step(call.prompt.last_user_text)
            if isinstance(step, Fail):
                raise fail_error(step)
        except ApiError as exc:
            return "errored", {"type": "error", "error": {
                "type": exc.error_type or "invalid_request_error", "message": exc.message}}
        answer = compose_answer(call, step.text, step.words, step.stop_reason, self.default_words)
        usage = self._cache.bill(call.prompt, call.spec.min_cacheable)
        self.requests.append(RecordedRequest("/v1/messages/batches", {}, params,
                                             time.monotonic()))
        return "succeeded", message_object(call, answer, usage)

    def _validate(self, body: JSON) -> Call:
        spec, max_tokens, thinking = check_message_request(body)
        prompt = measure_prompt(body, spec)
        window = self.context_window or spec.context
        if prompt.tokens > window:
            raise invalid(f"prompt is too long: {prompt.tokens} tokens > {window} maximum")
        return Call(spec, max_tokens, prompt, thinking)

    async def _on_count_tokens(self, request: web.Request) -> web.StreamResponse:
        try:
            check_headers(request.headers, self.api_key)
            body = require_object(parse_body(await request.read()))
            spec = check_count_request(body)
            tokens = measure_prompt(body, spec).tokens
        except ApiError as exc:
            return error_response(exc)
        return json_response({"input_tokens": tokens})

    async def _on_models(self, request: web.Request) -> web.StreamResponse:
        try:
            check_headers(request.headers, self.api_key)
        except ApiError as exc:
            return error_response(exc)
        data = [model_object(spec) for spec in MODELS.values()]
        return json_response(
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        )

    async def _on_model(self, request: web.Request) -> web.StreamResponse:
        try:
            check_headers(request.headers, self.api_key)
            spec = find_model(request.match_info["model_id"])
        except ApiError as exc:
            return error_response(exc)
        return json_response(model_object(spec))

    # -- control endpoints (for a fake running as a subprocess)

    async def _on_script(self, request: web.Request) -> web.StreamResponse:
        try:
            raw = parse_body(await request.read(), allow_list=True)
            if not isinstance(raw, list):
                raise invalid("body: expected a JSON list of steps")
            self.script(*(step_from_dict(item) for item in raw))
        except ApiError as exc:
            return error_response(exc)
        return json_response({"queued": len(self._steps)})

    async def _on_requests(self, request: web.Request) -> web.StreamResponse:
        return json_response([recorded.body for recorded in self.requests])

    async def _on_stats(self, request: web.Request) -> web.StreamResponse:
        return json_response({"requests": len(self.requests), "cpu_seconds": time.process_time()})

    async def _on_google_credentials(self, request: web.Request) -> web.StreamResponse:
        """A service-account key file for the fake Vertex (GOOGLE_APPLICATION_CREDENTIALS)."""
        return json_response(self.google.adc_file(self.base_url + TOKEN_PATH))

    async def _on_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return json_response({"ok": True})


# ---------------------------------------------------------------- command line


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.anthropic",
        description="Serve the fake Anthropic API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key", help='"" turns the key check off')
    parser.add_argument("--default-words", type=int, default=40)
    parser.add_argument("--delta-interval", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--thinking-delay", type=float, default=0.0)
    parser.add_argument("--context-window", type=int, default=None)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeAnthropic(
        api_key=args.api_key or None,
        default_words=args.default_words,
        delta_interval=args.delta_interval,
        first_token_delay=args.first_token_delay,
        context_window=args.context_window,
        thinking_delay=args.thinking_delay,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    url = await fake.start(args.port)
    print(f"READY {url}", flush=True)
    await stop.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until SIGTERM or SIGINT; print one READY line once it listens."""
    asyncio.run(_serve(_arguments(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
