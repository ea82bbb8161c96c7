"""An httpx transport that speaks HTTP through aiohttp's C parser.

Streaming answers arrive as hundreds of small HTTP chunks; httpx's default pure-Python stack
spends most of the bot's CPU parsing them one by one. This transport hands httpx whatever
aiohttp has buffered, so the client API (and bot/sse.py) stays the same at a fraction of the
cost. It is the one-method seam httpx offers for exactly this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests with one pooled aiohttp session (created on first use)."""

    def __init__(self, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

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
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode(), v.decode()) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp buffers it; errors mapped to httpx's types."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error), request=self._request) from None
        except aiohttp.ClientError as error:
            raise httpx.ReadError(type(error).__name__, request=self._request) from None

    async def aclose(self) -> None:
        self._response.release()
