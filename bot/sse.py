"""Server-sent events read straight from the response's bytes.

A streamed answer is a few hundred small events; decoding them through text and line
iterators costs more CPU than everything else a reply does with them. Events end at a blank
line (the stream's lines end in LF, CRLF or CR), so whole events are cut from the buffered
bytes at once and only their `event` and `data` fields are read. The events of one read
come out together, so what handles them does its per-read work once for all of them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\n|\r")
MAX_EVENT = 16 * 1024 * 1024  # a single event larger than this is not an answer's


async def server_sent(body: AsyncIterator[bytes]) -> AsyncIterator[list[tuple[str, str]]]:
    """(event, data) of the stream's events, in order, as lists: the events each read of the
    body completed; a last event without its blank line (the connection ended) is not one."""
    buffer = b""
    async for chunk in body:
        buffer += chunk
        if len(buffer) > MAX_EVENT:
            raise httpx.DecodingError("an event in the stream is over 16 MB")
        if b"\n" not in chunk and b"\r" not in chunk:
            continue
        *blocks, buffer = _EVENT_END.split(buffer)
        events = [found for found in map(parse_event, blocks) if found is not None]
        if events:
            yield events


def parse_event(block: bytes) -> tuple[str, str] | None:
    """One event's type and data (its data lines joined by LF); None for comments only."""
    # The shape nearly every event has, `event: <type>` LF `data: <json>`, cut in two
    # slices; anything else (CR line ends, several data lines, comments) line by line.
    if block.startswith(b"event: ") and block.count(b"\n") == 1 and b"\r" not in block:
        at = block.find(b"\ndata: ")
        if at > 0:
            return (block[7:at].decode("utf-8", "replace"),
                    block[at + 7:].decode("utf-8", "replace"))
    return parse_lines(block)


def parse_lines(block: bytes) -> tuple[str, str] | None:
    """`parse_event` for any block, field by field as the SSE format has them."""
    event, data = "", []
    for line in _LINE.split(block):
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data and not event:
        return None
    return event, b"\n".join(data).decode("utf-8", "replace")
