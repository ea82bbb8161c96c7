import asyncio
import gzip
import json
import time

import pytest
from aiohttp import web

from bot.conversation import Image, Prompt, StreamEnd, Turn
from bot.errors import (
    AuthenticationError,
    LLMError,
    OverloadedError,
    PromptTooLongError,
    StreamInterruptedError,
    UnavailableError,
)
from bot.llm import AnthropicClient, ClaudeClient, ModelOptions
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply
from tests.fakes.anthropic_text import default_text, split_deltas
from tests.test_transport import serving

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


def prompt(text: str = "How do I rotate my key?", images: tuple[Image, ...] = ()) -> Prompt:
    return Prompt(
        system="You are a support assistant.",
        context="<documentation></documentation>",
        turns=(Turn("user", text, 10, images),),
        max_tokens=512,
    )


def client(fake: FakeAnthropic, **options: object) -> AnthropicClient:
    opts = ModelOptions(
        model=str(options.get("model", "claude-haiku-5-5")),
        fallback_model=options.get("fallback_model", None),  # type: ignore[arg-type]
        temperature=0.3,
        effort=str(options.get("effort", "low")),
    )
    return AnthropicClient(
        "test-key", fake.base_url, opts, backoff_base=0.01,
        read_timeout=float(options.get("read_timeout", 10.0)),  # type: ignore[arg-type]
    )


async def collect(c: ClaudeClient, p: Prompt) -> tuple[str, StreamEnd]:
    text, end = "", None
    async for item in c.stream(p):
        if isinstance(item, StreamEnd):
            end = item
        else:
            text += item
    assert end is not None
    return text, end


async def test_streams_only_text_blocks_and_reports_usage(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(text="Go to Settings, then API keys."))
    c = client(anthropic)
    text, end = await collect(c, prompt())
    await c.aclose()
    assert text == "Go to Settings, then API keys."
    assert end.stop_reason == "end_turn"
    assert end.usage.input_tokens > 0 and end.usage.output_tokens > 0
    body = anthropic.requests[-1].body
    # Haiku 5.5 takes no sampling parameters; effort goes in output_config.
    assert "temperature" not in body and body["output_config"] == {"effort": "low"}
    assert body["stream"] is True
    # A 5-word system prompt is far below the 512-token minimum: a breakpoint would be wasted.
    assert "cache_control" not in body["system"][0]


def thread(turns: int, system_words: int = 0) -> Prompt:
    """A thread of `turns` questions and answers, then this turn's question and passages."""
    history: list[Turn] = []
    for n in range(turns):
        history += [Turn("user", f"Question {n} about exports and reports?", 20),
                    Turn("assistant", f"Answer {n}: " + "open the report and export it. " * 40,
                         300)]
    return Prompt(
        system="You are a support assistant. " + "Follow the house rules. " * system_words,
        context="<documentation>\n<passage index=\"1\">Press Export.</passage>\n"
                "</documentation>",
        turns=(*history, Turn("user", "And as PDF?", 10)),
        max_tokens=512,
    )


async def test_cache_breakpoints_only_above_the_minimum_and_passages_last(
    anthropic: FakeAnthropic
) -> None:
    c = client(anthropic)
    await collect(c, thread(0))  # short system, no history: no breakpoint at all
    body = anthropic.requests[-1].body
    assert "cache_control" not in body["system"][0]
    assert body["messages"][-1]["content"][0]["text"].startswith("<documentation>")
    assert "cache_control" not in str(body["messages"])
    await collect(c, thread(3, system_words=400))  # both prefixes are long enough
    body = anthropic.requests[-1].body
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    history_end = body["messages"][-2]["content"][-1]
    assert history_end["cache_control"] == {"type": "ephemeral"}
    last = body["messages"][-1]["content"]  # the passages and the question, after the marks
    assert [b["text"][:15] for b in last] == ["<documentation>", "And as PDF?"]
    assert all("cache_control" not in block for block in last)
    await c.aclose()


async def test_a_thread_reads_its_history_from_the_cache(anthropic: FakeAnthropic) -> None:
    c = client(anthropic)
    _, first = await collect(c, thread(3))
    _, second = await collect(c, thread(4))  # the next turn: the same history plus one
    await c.aclose()
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens >= first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens < first.usage.input_tokens + 400  # only the new turn


@pytest.mark.parametrize(
    ("model", "effort", "expect"),
    [
        ("claude-haiku-5-5", "off", {"thinking": {"type": "disabled"}}),
        ("claude-sonnet-5-5", "off", {"output_config": {"effort": "low"}}),
        ("claude-3-haiku-20240307", "low", {"temperature": 0.3}),
        ("claude-haiku-4-5", "high", {"temperature": 0.3}),
    ],
)
async def test_each_model_gets_only_parameters_it_accepts(
    anthropic: FakeAnthropic, model: str, effort: str, expect: dict[str, object]
) -> None:
    c = client(anthropic, model=model, effort=effort)
    text, _ = await collect(c, prompt())
    await c.aclose()
    assert text  # the fake rejects parameters a model does not accept with a 400
    body = anthropic.requests[-1].body
    for key, value in expect.items():
        assert body[key] == value


async def test_429_is_retried_honouring_retry_after(anthropic: FakeAnthropic) -> None:
    anthropic.script(Fail(429, retry_after=0.3), Reply(text="ok"))
    c = client(anthropic)
    started = time.monotonic()
    text, _ = await collect(c, prompt())
    await c.aclose()
    assert text == "ok"
    assert len(anthropic.requests) == 2
    assert time.monotonic() - started >= 0.3


async def test_gives_up_after_three_retries(anthropic: FakeAnthropic) -> None:
    anthropic.script(*[Fail(500) for _ in range(5)])
    c = client(anthropic)
    with pytest.raises(UnavailableError):
        await collect(c, prompt())
    await c.aclose()
    assert len(anthropic.requests) == 4


async def test_401_is_typed_with_request_id(anthropic: FakeAnthropic) -> None:
    c = AnthropicClient("wrong-key", anthropic.base_url,
                        ModelOptions("claude-haiku-5-5", None, 0.3, "low"))
    with pytest.raises(AuthenticationError) as info:
        await collect(c, prompt())
    await c.aclose()
    assert info.value.status == 401
    assert info.value.request_id.startswith("req_")
    assert "wrong-key" not in str(info.value)


async def test_overloaded_model_falls_back(anthropic: FakeAnthropic) -> None:
    anthropic.script(*[Fail(529) for _ in range(4)], Reply(text="from the fallback"))
    c = client(anthropic, fallback_model="claude-sonnet-5-5")
    text, end = await collect(c, prompt())
    await c.aclose()
    assert text == "from the fallback"
    assert end.model == "claude-sonnet-5-5"
    assert anthropic.requests[-1].body["model"] == "claude-sonnet-5-5"


async def test_overloaded_fallback_too_raises_once_both_were_tried(
    anthropic: FakeAnthropic,
) -> None:
    anthropic.script(*[Fail(529, "overloaded_error") for _ in range(12)])
    c = client(anthropic, fallback_model="claude-sonnet-5-5")
    with pytest.raises(OverloadedError):
        await collect(c, prompt())
    await c.aclose()
    models = [r.body["model"] for r in anthropic.requests]
    assert models[0] == "claude-haiku-5-5" and models[-1] == "claude-sonnet-5-5"
    assert len(models) < 12  # bounded: it gives up rather than retrying for ever


async def test_overloaded_without_fallback_raises(anthropic: FakeAnthropic) -> None:
    anthropic.script(*[Fail(529) for _ in range(4)])
    c = client(anthropic)
    with pytest.raises(OverloadedError):
        await collect(c, prompt())
    await c.aclose()


async def test_mid_stream_error_raises_after_the_partial_text(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(words=60, error_after_deltas=5))
    c = client(anthropic)
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError):
        async for item in c.stream(prompt()):
            if isinstance(item, str):
                seen.append(item)
    await c.aclose()
    # Exactly the five deltas before the error, however the reads batched them.
    assert "".join(seen) == "".join(split_deltas(default_text("How do I rotate my key?", 60))[:5])
    assert len(anthropic.requests) == 1  # text was shown: no silent retry


async def test_prompt_too_long_is_typed(anthropic: FakeAnthropic) -> None:
    anthropic.context_window = 50
    c = client(anthropic)
    with pytest.raises(PromptTooLongError) as info:
        await collect(c, prompt("word " * 400))
    await c.aclose()
    assert info.value.tokens > info.value.maximum == 50


async def test_idle_read_timeout_is_an_unavailable_error() -> None:
    async with FakeAnthropic(first_token_delay=2.0) as fake:
        c = client(fake, read_timeout=0.2)
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(collect(c, prompt()), 10)
        await c.aclose()


async def test_connection_refused_is_unavailable() -> None:
    c = AnthropicClient("k", "http://127.0.0.1:9", ModelOptions("claude-haiku-5-5", None, 0, "low"),
                        backoff_base=0.01)
    with pytest.raises(LLMError) as info:
        await collect(c, prompt())
    await c.aclose()
    assert isinstance(info.value, UnavailableError)


async def test_images_are_sent_as_base64_blocks(anthropic: FakeAnthropic) -> None:
    c = client(anthropic)
    await collect(c, prompt("what is this?", (Image("image/png", PNG),)))
    await c.aclose()
    content = anthropic.requests[-1].body["messages"][0]["content"]
    assert content[0]["type"] == "image"
    assert content[0]["source"]["media_type"] == "image/png"
    assert content[-1] == {"type": "text", "text": "what is this?"}


async def test_check_and_count_tokens(anthropic: FakeAnthropic) -> None:
    c = client(anthropic)
    assert await c.check()
    assert await c.count_tokens(prompt()) > 0
    await c.aclose()


async def test_connection_lost_after_text_is_interrupted_without_fallback(
    anthropic: FakeAnthropic,
) -> None:
    anthropic.script(Reply(words=60, drop_after_deltas=5), Reply(text="SECOND ANSWER"))
    c = client(anthropic, fallback_model="claude-sonnet-5-5")
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError):
        async for item in c.stream(prompt()):
            if isinstance(item, str):
                seen.append(item)
    await c.aclose()
    assert "".join(seen) == "".join(split_deltas(default_text("How do I rotate my key?", 60))[:5])
    assert "SECOND ANSWER" not in "".join(seen)  # no second answer spliced onto the first
    assert len(anthropic.requests) == 1


async def test_connection_lost_before_text_is_retried(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(words=10, drop_after_deltas=0), Reply(text="ok"))
    c = client(anthropic)
    text, _ = await collect(c, prompt())
    await c.aclose()
    assert text == "ok" and len(anthropic.requests) == 2


async def test_stream_end_names_the_requested_model(anthropic: FakeAnthropic) -> None:
    # Prices are looked up by the id we asked for, not a snapshot id the API may return.
    c = client(anthropic, model="claude-3-haiku-20240307")
    _, end = await collect(c, prompt())
    await c.aclose()
    assert end.model == "claude-3-haiku-20240307"


async def test_a_stream_asks_for_plain_bytes_and_an_encoded_one_is_still_decoded() -> None:
    """The stream's bytes go from the transport to the event parser without httpx's readers,
    so the request asks for them unencoded; a server that compresses anyway is still read."""
    events = [("message_start", {"type": "message_start", "message": {"usage": {
                  "input_tokens": 5, "output_tokens": 1}}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "Rotate it "}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "in Settings."}}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 4}}),
              ("message_stop", {"type": "message_stop"})]
    wire = "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)
    asked: list[str] = []

    async def messages(request: web.Request) -> web.Response:
        asked.append(request.headers.get("Accept-Encoding", ""))
        compressed = len(asked) > 1  # the second request is answered compressed
        body = gzip.compress(wire.encode()) if compressed else wire.encode()
        headers = {"Content-Type": "text/event-stream"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    async with serving(app) as url:
        c = AnthropicClient("k", url, ModelOptions("claude-haiku-5-5", None, 0, "low"))
        try:
            assert (await collect(c, prompt()))[0] == "Rotate it in Settings."  # plain
            text, end = await collect(c, prompt())  # gzip-encoded
            assert text == "Rotate it in Settings." and end.usage.output_tokens == 4
            assert asked == ["identity", "identity"]
        finally:
            await c.aclose()
