"""A small helper for the aiohttp lifecycle the local fakes share: serve one app on 127.0.0.1."""

from __future__ import annotations

from aiohttp import web


class LocalServer:
    """Serve an aiohttp app on 127.0.0.1 (port 0 picks a free one) until stopped.

    `start()` returns the base URL ("http://127.0.0.1:PORT"); `stop()` closes the listener and
    every open connection, waiting at most `shutdown_timeout` seconds for handlers still running
    (a slow stream must not hold a test up). Also an async context manager.
    """

    def __init__(self, app: web.Application, *, shutdown_timeout: float = 0.5) -> None:
        self.app = app
        self.shutdown_timeout = shutdown_timeout
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:`port` and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("LocalServer is already running")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; calling it again (or before start) does nothing."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
