"""tests/data/site (a small docs website) served on 127.0.0.1: it answers conditional
requests with 304, records every request, and can fail, stall, drip, bloat or redirect a
page. Used by the crawler's and the knowledge base's tests."""

import asyncio
import hashlib
from pathlib import Path

from aiohttp import web

from tests.fakes.server import LocalServer

SITE = Path(__file__).resolve().parent.parent / "data" / "site"
TYPES = {".html": "text/html; charset=utf-8", ".xml": "application/xml", ".txt": "text/plain"}
LAST_MODIFIED = "Tue, 03 Mar 2026 10:00:00 GMT"
PAGES = ["/docs/", "/docs/api/widgets.html", "/docs/changelog.html", "/docs/configuration.html",
         "/docs/getting-started.html", "/docs/troubleshooting.html"]
SITEMAP_PAGES = [p for p in PAGES if "api" not in p]  # api/widgets is only linked to


class DocsSite:
    """tests/data/site on 127.0.0.1, {{site}} and {{elsewhere}} filled in."""

    def __init__(self, elsewhere: str = "") -> None:
        self.elsewhere = elsewhere
        self.requests: list[tuple[str, str]] = []  # (path, User-Agent)
        self.answers: list[tuple[str, int]] = []  # (path, status)
        self.fail: set[str] = set()  # paths answered 500
        self.slow: dict[str, float] = {}  # path → seconds before answering
        self.delay = 0.0  # before answering any other path
        self.pad: dict[str, int] = {}  # path → bytes of padding added to the page
        self.redirect: dict[str, str] = {}
        self.drip: set[str] = set()  # paths answered a byte at a time, never quite stalling
        self.in_flight = self.max_in_flight = 0
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle)
        self.server = LocalServer(app)
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("User-Agent", "")))
        if request.path in self.drip:
            response = web.StreamResponse(headers={"Content-Type": "text/html"})
            await response.prepare(request)
            for _ in range(200):
                await response.write(b" ")
                await asyncio.sleep(0.05)
            return response
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.slow.get(request.path, self.delay))
            response = self.answer(request)
        finally:
            self.in_flight -= 1
        self.answers.append((request.path, response.status))
        return response

    def answer(self, request: web.Request) -> web.Response:
        path = request.path
        if path in self.fail:
            return web.Response(status=500, text="Internal Server Error")
        if path in self.redirect:
            return web.Response(status=302, headers={"Location": self.redirect[path]})
        file = (SITE / path.lstrip("/")).resolve()
        if file.is_dir() and not path.endswith("/"):
            return web.Response(status=301, headers={"Location": path + "/"})
        file = file / "index.html" if file.is_dir() else file
        if not file.is_relative_to(SITE) or not file.is_file():
            return web.Response(status=404, text="Not Found")
        text = file.read_text().replace("{{site}}", self.url)
        text = text.replace("{{elsewhere}}", self.elsewhere) + " " * self.pad.get(path, 0)
        body = text.encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        validators = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
        if request.headers.get("If-None-Match", request.headers.get("If-Modified-Since")) in (
            etag, LAST_MODIFIED
        ):
            return web.Response(status=304, headers=validators)
        kind = TYPES.get(file.suffix, "application/octet-stream")
        return web.Response(body=body, headers={**validators, "Content-Type": kind})

    def paths(self) -> list[str]:
        """The pages asked for (robots.txt and sitemaps left out), in order."""
        return [p for p, _ in self.requests if p.startswith("/docs") or p.startswith("/blog")]
