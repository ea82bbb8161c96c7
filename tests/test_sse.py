"""The stream reader cuts the model's server-sent events from bytes as they come, whatever
the chunking and the line endings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
from hypothesis import given
from hypothesis import strategies as st

from bot.sse import parse_event, parse_lines, server_sent


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def read(chunks: list[bytes]) -> list[tuple[str, str]]:
    async def collect() -> list[tuple[str, str]]:
        response = httpx.Response(200, stream=Chunks(chunks))
        return [event async for batch in server_sent(response.aiter_bytes()) for event in batch]

    return asyncio.run(collect())


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
                max_size=40)


@given(st.lists(st.tuples(st.sampled_from(["content_block_delta", "ping", "message_stop"]),
                          texts), min_size=1, max_size=12),
       st.sampled_from([b"\n", b"\r\n", b"\r"]),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_events_come_out_whole_and_in_order_however_the_bytes_are_cut(
    events: list[tuple[str, str]], end: bytes, points: list[int]
) -> None:
    wire = b"".join(
        b"event: " + kind.encode() + end + b"data: " + json.dumps({"text": text}).encode() + end
        + end for kind, text in events)
    assert read(cut(wire, points)) == [(kind, json.dumps({"text": text})) for kind, text in events]


@given(st.lists(st.sampled_from([b"event", b"data", b"id", b"", b":", b": ", b" ", b"x", b"{}",
                                 b"\n", b"\r", b"\r\n", b"\xff", "\u00e9".encode()]),
                max_size=14))
def test_the_quick_cut_of_an_event_reads_it_as_its_lines_do(parts: list[bytes]) -> None:
    for block in (b"".join(parts), b"event: " + b"".join(parts),
                  b"event: x\ndata: " + b"".join(parts)):
        assert parse_event(block) == parse_lines(block), block


def test_comments_multi_line_data_and_an_unfinished_last_event() -> None:
    wire = (b": keep-alive\n\n"  # a comment alone is no event
            b"data:first\ndata: second\n\n"  # no space after the colon, two data lines
            b"event: error\ndata: {\"type\": \"error\"}\n\n"
            b"event: message_delta\ndata: {\"cut\": ")  # the connection ended mid-event
    assert read([wire]) == [("", "first\nsecond"), ("error", '{"type": "error"}')]
    assert parse_event(b": only a comment") is None


def test_the_events_one_read_completes_come_out_together() -> None:
    async def collect() -> list[list[tuple[str, str]]]:
        chunks = [b"data: 1\n\ndata: 2\n\nda", b"ta: 3\n", b"\n", b": ping\n\n", b"data: 4\n\n"]
        response = httpx.Response(200, stream=Chunks(chunks))
        return [batch async for batch in server_sent(response.aiter_bytes())]

    assert asyncio.run(collect()) == [[("", "1"), ("", "2")], [("", "3")], [("", "4")]]
