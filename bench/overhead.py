"""Overhead benchmark: CPU time the bot spends per streamed ~500-token reply, beside the fake
model server's own CPU time for the same replies. Target: ≤ 5 ms of bot CPU per reply.

The fake runs in its own process; the bot side is the real responder, store, knowledge base
and model client with a surface that only counts (no terminal output).

Measured side by side in the same run: the floor, a bare asyncio protocol that receives the
same streamed responses and does nothing with them. Each SSE event arrives in its own TCP
read, as from the real API, and on some machines the reads alone cost more than 5 ms per
reply; what the bot adds above the floor is its own work.

Run: python -m bench.overhead
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.common import FakeProcess, median, write_result
from bot.conversation import Arrival, ConversationKey, Incoming, Platform
from bot.knowledge import Knowledge
from bot.llm import AnthropicClient, ModelOptions
from bot.policy import ReplyPolicy
from bot.prompts import PromptBook
from bot.responder import Responder
from bot.store import Store
from bot.surface import Ahead, Snapshot

REPLIES = 40
RUNS = 5
WORDS = 375  # about 500 output tokens


class CountingSurface:
    """A surface with real pacing that shows nothing: what is left is the bot's own work."""

    limit = 4000

    def __init__(self) -> None:
        self.updates = 0
        self.final = ""

    def interval(self) -> float:
        return 1.0

    def render(self, markdown: str) -> str:
        return markdown

    def size(self, text: str) -> int:
        return len(text)

    async def start(self) -> None:
        return None

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> None:
        if ahead is None or await ahead():
            self.updates += 1

    async def finish(self, snapshot: Snapshot) -> None:
        self.final = snapshot.text


async def fake_cpu(base_url: str) -> float:
    async with httpx.AsyncClient() as client:
        return float((await client.get(f"{base_url}/_fake/stats")).json()["cpu_seconds"])


class _Drain(asyncio.Protocol):
    """Receives chunked HTTP responses and only notices where each ends."""

    def __init__(self) -> None:
        self.tail = b""
        self.ended: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-5:]
        if self.tail == b"0\r\n\r\n" and self.ended is not None and not self.ended.done():
            self.ended.set_result(None)


async def floor_run(base_url: str, run: int) -> float:
    """CPU ms per reply to receive the same streams on one keep-alive connection, no parsing."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    loop = asyncio.get_running_loop()
    transport, drain = await loop.create_connection(_Drain, host, port)
    try:
        started = time.process_time()
        for i in range(REPLIES):
            body = json.dumps({
                "model": "claude-haiku-5-5", "max_tokens": 1024, "stream": True,
                "messages": [{"role": "user", "content": f"How do I export my data? {run}-{i}"}],
            }).encode()
            head = (f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "x-api-key: test-key\r\nanthropic-version: 2023-06-01\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n")
            drain.ended = loop.create_future()
            transport.write(head.encode() + body)
            await asyncio.wait_for(drain.ended, 30)
        return (time.process_time() - started) / REPLIES * 1000
    finally:
        transport.close()


async def one_run(responder: Responder, base_url: str, run: int) -> dict[str, float]:
    fake_before, ours_before = await fake_cpu(base_url), time.process_time()
    started = time.perf_counter()
    for i in range(REPLIES):
        key = ConversationKey(Platform.CONSOLE, "bench", "u", f"run{run}-{i}")
        incoming = Incoming(key, "u", "How do I export my data?", f"r{run}-{i}", Arrival.DM)
        surface = CountingSurface()
        task = await responder.submit(incoming, surface)
        assert task is not None
        await task
        assert surface.final.startswith('Answer to "How do I export')
    ours = time.process_time() - ours_before
    fake = await fake_cpu(base_url) - fake_before
    return {
        "bot_cpu_ms_per_reply": ours / REPLIES * 1000,
        "fake_cpu_ms_per_reply": fake / REPLIES * 1000,
        "ratio_bot_to_fake": ours / fake if fake else float("inf"),
        "wall_ms_per_reply": (time.perf_counter() - started) / REPLIES * 1000,
    }


def make_responder(store: Store, base_url: str, default_stack: bool) -> Responder:
    # default_stack: httpx's own pure-Python HTTP stack, measured beside ours for comparison.
    transport = httpx.AsyncHTTPTransport() if default_stack else None
    llm = AnthropicClient("test-key", base_url,
                          ModelOptions("claude-haiku-5-5", None, 0.3, "low"), transport=transport)
    policy = ReplyPolicy("claude-haiku-5-5", 1024, 20_000, 8)
    return Responder(policy, store, Knowledge(store.sqlite), llm, PromptBook.load())


async def main() -> None:
    async with FakeProcess("tests.fakes.anthropic", "--default-words", str(WORDS)) as fake:
        with tempfile.TemporaryDirectory() as folder:
            store = await Store.open(Path(folder) / "bench.db")
            ours = make_responder(store, fake.base_url, default_stack=False)
            plain = make_responder(store, fake.base_url, default_stack=True)
            await one_run(ours, fake.base_url, -1)  # warm-up: imports, connections
            await one_run(plain, fake.base_url, -2)
            await floor_run(fake.base_url, -3)
            runs, plain_runs, floors = [], [], []
            for run in range(RUNS):  # alternate, so all three see the same machine load
                runs.append(await one_run(ours, fake.base_url, 3 * run))
                plain_runs.append(await one_run(plain, fake.base_url, 3 * run + 1))
                floors.append(await floor_run(fake.base_url, 3 * run + 2))
                runs[-1]["floor_cpu_ms_per_reply"] = floors[-1]
                runs[-1]["bot_above_floor_ms_per_reply"] = (
                    runs[-1]["bot_cpu_ms_per_reply"] - floors[-1])
            for responder in (ours, plain):
                assert responder.llm is not None
                await responder.llm.aclose()
            await store.close()
    figures = {name: round(median([r[name] for r in runs]), 3) for name in runs[0]}
    plain_cpu = median([r["bot_cpu_ms_per_reply"] for r in plain_runs])
    speedup = median([p["bot_cpu_ms_per_reply"] / r["bot_cpu_ms_per_reply"]
                      for r, p in zip(runs, plain_runs, strict=True)])
    print(f"{REPLIES} replies of ~{WORDS} words x {RUNS} runs (median of runs):")
    print(f"  bot CPU per reply:  {figures['bot_cpu_ms_per_reply']:.2f} ms (target ≤ 5 ms)")
    print(f"  floor (receive the same streams, no parsing): "
          f"{figures['floor_cpu_ms_per_reply']:.2f} ms per reply")
    print(f"  bot above the floor: {figures['bot_above_floor_ms_per_reply']:.2f} ms per reply")
    print(f"  fake server CPU:    {figures['fake_cpu_ms_per_reply']:.2f} ms per reply")
    print(f"  ratio bot / fake:   {figures['ratio_bot_to_fake']:.2f}")
    print(f"  same bot on httpx's default HTTP stack: {plain_cpu:.2f} ms per reply "
          f"({speedup:.2f}x ours, side by side)")
    path = write_result("overhead", {"replies_per_run": REPLIES, "runs": RUNS,
                                     "words_per_reply": WORDS, **figures,
                                     "default_httpx_stack_cpu_ms_per_reply": round(plain_cpu, 3),
                                     "default_stack_over_ours": round(speedup, 2),
                                     "per_run": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
