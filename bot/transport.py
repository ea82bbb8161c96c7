"""An httpx transport that speaks HTTP through aiohttp's C parser.

Streaming answers arrive as hundreds of small HTTP chunks; httpx's default pure-Python stack
spends most of the bot's CPU parsing them one by one. This transport hands httpx whatever
aiohttp has buffered, so the client API (and bot/sse.py) stays the same at a fraction of the
cost. It is the one-method seam httpx offers for exactly this.

Event streams (the answers) are read in bites when many stream at once: all of them
together are read about `stream_reads` times a second, each at most `max_stream_pace`
seconds apart. Between bites the connection is paused, so the kernel gathers the events the
model sends meanwhile and the next read takes them all at once. One answer alone is read as
its events come; fifty at once are read four times a second each, a hundred or more twice a
second. Nobody sees it: a reply's text is shown about once a second at most, and far less
often when a hundred replies share a Slack workspace's ~45 edits a minute or a Discord
channel's 5 writes per 5 s. It costs a few reads per answer per second instead of one per
event; the last text of an answer waits for the next read, 0.25 s on average at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests with one pooled aiohttp session (created on first use)."""

    def __init__(self, max_connections: int = 100, stream_reads: float = 200.0,
                 max_stream_pace: float = 0.5) -> None:
        self._max_connections = max_connections
        self._stream_reads = stream_reads
        self._max_stream_pace = max_stream_pace
        self.streams = 0  # event streams being read now
        self._session: aiohttp.ClientSession | None = None

    def stream_pace(self) -> float:
        """Seconds between two reads of one event stream, now."""
        return min(self._max_stream_pace, self.streams / self._stream_reads)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                auto_decompress=False,  # httpx decodes content-encoding itself
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        try:
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=[(k.decode(), v.decode()) for k, v in request.headers.raw],
                data=await request.aread(),
                timeout=timeout,
                allow_redirects=False,
            )
        except TimeoutError as error:
            raise httpx.ConnectTimeout(str(error), request=request) from None
        except aiohttp.ClientError as error:
            raise httpx.ConnectError(type(error).__name__, request=request) from None
        streaming = response.content_type == "text/event-stream"
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode(), v.decode()) for k, v in response.raw_headers],
            stream=_Body(response, request, self if streaming else None),
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp buffers it, every byte of it per read; an event stream
    paced by its transport. Errors mapped to httpx's types."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request,
                 paced_by: AiohttpTransport | None = None) -> None:
        self._response = response
        self._request = request
        self._paced_by = paced_by

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        content = self._response.content
        paced_by = self._paced_by
        read_at: float | None = None
        if paced_by is not None:
            paced_by.streams += 1
        try:
            for _ in range(100_000_000):  # a read per pass; ends at the body's end
                if read_at is not None and paced_by is not None:
                    await self._gather(read_at + paced_by.stream_pace() - loop.time())
                chunk = await content.readany()
                if not chunk:
                    return
                read_at = loop.time()
                yield chunk
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error), request=self._request) from None
        except aiohttp.ClientError as error:
            raise httpx.ReadError(type(error).__name__, request=self._request) from None
        finally:
            if paced_by is not None:
                paced_by.streams -= 1

    async def _gather(self, wait: float) -> None:
        """Let the kernel hold what arrives for `wait` seconds, unread. The socket itself is
        paused (aiohttp's own flow control would also stop its parser and restart its read
        timer each time, for nothing: nothing is read meanwhile)."""
        if wait <= 0:
            return
        connection = self._response.connection
        transport = connection.transport if connection is not None else None
        if transport is None or not transport.is_reading():
            return  # the body is all here already, or aiohttp holds the socket itself
        transport.pause_reading()
        try:
            await asyncio.sleep(wait)
        finally:
            transport.resume_reading()  # a no-op once the connection is gone

    async def aclose(self) -> None:
        self._response.release()
