"""The aiohttp-backed transport reads an event stream in bites, whole and in order, and other
bodies as fast as they come."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from bot.transport import AiohttpTransport

EVENTS = 40
GAP = 0.02  # seconds between two events: 0.8 s of stream


async def _stream(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream" if kind == "events" else "text/plain"})
    await response.prepare(request)
    for n in range(EVENTS):
        await response.write(f"data: {n}\n\n".encode())
        await asyncio.sleep(GAP)
    await response.write_eof()
    return response


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 for the block; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{kind}", _stream)
    async with serving(app) as url:
        yield url


async def reads(url: str, per_second: float) -> tuple[list[bytes], float]:
    """The body's chunks as the client got them, and seconds until the first one, with event
    streams read `per_second` times a second in all."""
    transport = AiohttpTransport(stream_reads=per_second)
    async with httpx.AsyncClient(transport=transport) as client:
        started = time.monotonic()
        first = 0.0
        chunks = []
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                first = first or time.monotonic() - started
                chunks.append(chunk)
    assert transport.streams == 0
    return chunks, first


async def test_an_event_stream_is_read_in_bites_with_nothing_lost(server: str) -> None:
    whole = b"".join(f"data: {n}\n\n".encode() for n in range(EVENTS))
    paced, first = await reads(f"{server}/events", 4.0)  # alone: a read each 0.25 s
    unpaced, _ = await reads(f"{server}/events", 1e9)
    assert b"".join(paced) == whole == b"".join(unpaced)
    # 0.8 s of events at most one read a quarter second apart: a handful of reads, where
    # reading as they come takes one per event (or close to it).
    assert len(paced) <= 0.8 / 0.25 + 3
    assert len(unpaced) >= EVENTS // 2
    assert first < 0.25  # the first read is not held back


async def test_streams_read_together_share_the_reads(server: str) -> None:
    # 20 reads a second in all: alone a stream is read every 0.05 s, five at once each
    # every 0.25 s (the most any stream waits).
    transport = AiohttpTransport(stream_reads=20.0)
    async with httpx.AsyncClient(transport=transport) as client:
        async def one() -> list[bytes]:
            async with client.stream("GET", f"{server}/events") as response:
                return [chunk async for chunk in response.aiter_raw()]

        together = await asyncio.gather(*(one() for _ in range(5)))
        alone = await one()
    assert all(len(chunks) <= 0.8 / 0.25 + 3 for chunks in together)
    assert len(alone) >= 0.8 / 0.25 + 3  # read about every 0.05 s: more than together
    assert transport.streams == 0


async def test_other_bodies_are_read_as_they_come(server: str) -> None:
    chunks, _ = await reads(f"{server}/plain", 4.0)
    assert b"".join(chunks) == b"".join(f"data: {n}\n\n".encode() for n in range(EVENTS))
    assert len(chunks) >= EVENTS // 2


def test_more_streams_are_read_less_often_each_up_to_the_cap() -> None:
    transport = AiohttpTransport()  # 200 reads a second in all, each stream every 0.5 s
    paces = {}
    for count in (1, 50, 100, 500):
        transport.streams = count
        paces[count] = transport.stream_pace()
    assert paces == {1: 0.005, 50: 0.25, 100: 0.5, 500: 0.5}
