"""A bounded, polite crawler for a docs website: the pages to index and what changed since.

Either a sitemap (a URL ending in .xml; nested sitemap indexes are followed) lists the pages,
or a breadth-first walk from a start page follows same-site links under the start page's
folder. Every crawl obeys robots.txt, asks only for what changed (conditional requests), and
is bounded in pages, link hops, concurrent requests, seconds per request, redirects and bytes
per response. One bad page is reported in the result, never raised.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpx

from bot.html_docs import html_page

try:
    USER_AGENT = f"supportbot/{importlib.metadata.version('supportbot')} (docs indexer)"
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    USER_AGENT = "supportbot/0 (docs indexer)"
MAX_BYTES = 5 * 1024 * 1024  # per response, sitemaps included (the protocol allows 50 MB)
MAX_ROBOTS_BYTES = 500 * 1024  # Google reads no further either
MAX_REDIRECTS = 5
MAX_SITEMAPS = 20  # sitemap files read per crawl, nested indexes included
MAX_SITEMAP_URLS = 50_000  # the sitemap protocol's own limit per file
PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
SKIPPED_SUFFIXES = tuple(
    ".png .jpg .jpeg .gif .svg .webp .ico .bmp .pdf .zip .gz .tgz .tar .bz2 .xz .7z .whl .exe "
    ".dmg .msi .deb .rpm .jar .apk .mp3 .mp4 .webm .mov .avi .woff .woff2 .ttf .otf .eot .css "
    ".js .mjs .map .json .xml .txt .csv .doc .docx .xls .xlsx .ppt .pptx .epub".split()
)


class CrawlError(ValueError):
    """The crawl as a whole failed: a start URL that is not http(s), or that cannot be read."""


@dataclass(frozen=True)
class Validators:
    """What the last fetch of a page returned, for conditional requests."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class Page:
    url: str  # final URL after redirects, or the page's canonical URL when that is in scope
    html: str
    validators: Validators


@dataclass(frozen=True)
class CrawlResult:
    pages: list[Page]  # new or changed pages
    unchanged: list[str]  # URLs answered 304 Not Modified
    failed: list[tuple[str, str]]  # (url, short reason)
    skipped_by_robots: list[str]


async def crawl(
    start: str,
    *,
    known: Mapping[str, Validators] = {},
    max_pages: int = 500,
    max_depth: int = 3,
    concurrency: int = 4,
    timeout: float = 20.0,
    user_agent: str = USER_AGENT,
    progress: Callable[[int, int], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CrawlResult:
    """Crawl a sitemap or, from a start page, the site's links; see the module docstring.

    Every URL in `known` under the start folder is visited again even when no changed page
    links to it (a 304 page's links are not seen), so pass every page of the last crawl.
    """
    url = _normalize(start)
    if url is None:
        raise CrawlError(f"not an http(s) URL: {start!r}")
    if max_pages < 1 or max_depth < 0 or concurrency < 1 or timeout <= 0:
        raise ValueError("max_pages, concurrency and timeout must be positive, max_depth ≥ 0")
    async with httpx.AsyncClient(
        transport=transport, headers={"User-Agent": user_agent}, timeout=timeout,
        max_redirects=MAX_REDIRECTS,
    ) as client:
        run = _Crawl(client, known, max_pages, concurrency, timeout, progress)
        await run.read_robots(url, user_agent)
        if not run.allowed(url):
            raise CrawlError(f"{_origin(url)}/robots.txt does not allow crawling {url}")
        if urlsplit(url).path.lower().endswith(".xml"):
            await run.from_sitemap(url)
        else:
            await run.from_start_page(url, max_depth)
        return run.result()


@dataclass(frozen=True)
class _Scope:
    origin: str  # "https://host:port"
    folder: str  # the path every URL in scope starts with: "/docs/"

    def __contains__(self, url: str) -> bool:
        return _origin(url) == self.origin and urlsplit(url).path.startswith(self.folder)


@dataclass(frozen=True)
class _Answer:
    kind: str  # "page" (a 200 within every bound) | "unchanged" | "failed" | "robots" | "other"
    url: str  # a page's URL after redirects; else the URL asked for (robots: the hop refused)
    reason: str = ""
    body: bytes = b""
    charset: str | None = None
    validators: Validators = Validators(None, None)


class _Crawl:
    """One crawl's client, bounds and findings."""

    def __init__(self, client: httpx.AsyncClient, known: Mapping[str, Validators],
                 max_pages: int, concurrency: int, timeout: float,
                 progress: Callable[[int, int], None] | None) -> None:
        self.client, self.max_pages, self.timeout = client, max_pages, timeout
        self.known = {n: v for url, v in known.items() if (n := _normalize(url)) is not None}
        self.progress, self.slots = progress, asyncio.Semaphore(concurrency)
        self.allowed: Callable[[str], bool] = lambda url: False
        self.scope = _Scope("", "/")
        self.found: list[tuple[str, Page]] = []  # (the URL it was fetched at, the page)
        self.unchanged: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.skipped: list[str] = []
        self.seen: set[str] = set()  # URLs admitted or found, never admitted again
        self.done = self.total = 0

    async def read_robots(self, url: str, user_agent: str) -> None:
        """Fetch robots.txt once. Missing (4xx) allows all; 5xx or unreachable allows nothing,
        as Google does, which fails the crawl: an empty result would read as "every page is
        gone". Crawl-delay is ignored: the concurrency bound is what keeps us polite."""
        robots_url = _origin(url) + "/robots.txt"
        try:
            async with asyncio.timeout(self.timeout), self.client.stream(
                "GET", robots_url, follow_redirects=True
            ) as response:
                status = response.status_code
                body, _ = await _read(response, MAX_ROBOTS_BYTES)
        except (TimeoutError, httpx.HTTPError) as error:
            reason = f"fetching {robots_url} failed ({_describe(error)})"
            raise CrawlError(f"could not crawl {url}: {reason}") from None
        if status >= 500 or status == 429:
            reason = f"{robots_url} answered HTTP {status}, which allows nothing"
            raise CrawlError(f"could not crawl {url}: {reason}")
        if status != 200:
            self.allowed = lambda url: True
        else:
            rules = RobotFileParser()
            rules.parse(body.decode("utf-8", "replace").splitlines())
            self.allowed = lambda url: rules.can_fetch(user_agent, url)

    async def from_sitemap(self, url: str) -> None:
        self.scope = _Scope(_origin(url), "/")
        listed = await self.read_sitemaps(url, strict=True)
        await self.visit_all(self.admit(listed), follow=False)

    async def from_start_page(self, start: str, max_depth: int) -> None:
        """Breadth-first from `start`: pages the sitemap lists or the last crawl found count as
        linked from the start page, so a recrawl revisits pages only unchanged ones link to."""
        self.seen.add(start)
        self.total = 1
        got = await self.fetch(start, _Scope(_origin(start), "/"), pages_only=True)
        if got.kind in ("failed", "other"):
            raise CrawlError(f"could not fetch the start page {start}: {got.reason}")
        final = got.url if got.kind == "page" else start
        self.scope = _Scope(_origin(final), urlsplit(final).path.rsplit("/", 1)[0] + "/")
        links = self.record(got)
        self.tick()
        if max_depth == 0:
            return
        listed = await self.read_sitemaps(self.scope.origin + "/sitemap.xml", strict=False)
        frontier = self.admit([*links, *listed, *self.known])
        for depth in range(1, max_depth + 1):
            if not frontier:
                break
            frontier = self.admit(await self.visit_all(frontier, follow=depth < max_depth))

    async def read_sitemaps(self, url: str, *, strict: bool) -> list[str]:
        """The page URLs a sitemap lists, nested sitemap indexes followed (bounded).
        `strict`: the sitemap is the start URL, so not reading it fails the crawl."""
        site, pages, queue, seen = _Scope(_origin(url), "/"), [], [url], {url}
        for _ in range(MAX_SITEMAPS):
            if not queue:
                break
            current = queue.pop(0)
            got = await self.fetch(current, site, pages_only=False, conditional=False)
            kind, locs = _sitemap(got.body) if got.kind == "page" else ("", [])
            if kind not in ("urlset", "sitemapindex"):
                reason = got.reason or "not a sitemap"
                if got.kind == "robots":
                    self.skipped.extend([got.url] if strict else [])
                elif strict and current == url:
                    raise CrawlError(f"could not read the sitemap {url}: {reason}")
                elif strict:
                    self.failed.append((current, reason))
                continue
            same_site = [n for loc in locs if (n := _normalize(loc)) and n in site]
            if kind == "urlset":
                pages.extend(same_site)
            else:
                queue.extend(n for n in same_site if n not in seen)
                seen.update(same_site)
        return pages

    def admit(self, urls: Iterable[str]) -> list[str]:
        """The URLs to fetch next: new, in scope, not files, allowed, within max_pages."""
        admitted = []
        for raw in urls:  # bounded by the links of one level of pages
            url = _normalize(raw)
            if url is None or url in self.seen or url not in self.scope:
                continue
            if urlsplit(url).path.lower().endswith(SKIPPED_SUFFIXES):
                continue
            if self.total >= self.max_pages:
                break
            self.seen.add(url)
            if not self.allowed(url):
                self.skipped.append(url)
                continue
            self.total += 1
            admitted.append(url)
        return admitted

    async def visit_all(self, urls: list[str], *, follow: bool) -> list[str]:
        """Fetch `urls` (at most `concurrency` at once); the links of their pages if `follow`."""
        found: list[str] = []

        async def visit(url: str) -> None:
            links = self.record(await self.fetch(url, self.scope, pages_only=True))
            found.extend(links if follow else ())
            self.tick()

        # The group cancels and awaits every task if the crawl is cancelled: nothing leaks.
        async with asyncio.TaskGroup() as group:
            for url in urls:
                group.create_task(visit(url), name=f"crawl {url}")
        return found

    async def fetch(self, url: str, scope: _Scope, *, pages_only: bool,
                    conditional: bool = True) -> _Answer:
        """GET `url`, conditional if known, following redirects that stay in `scope`."""
        first, validators = url, self.known.get(url) if conditional else None
        async with self.slots:
            for _ in range(MAX_REDIRECTS + 1):
                if not self.allowed(url):
                    return _Answer("robots", url)
                try:
                    async with asyncio.timeout(self.timeout):
                        got = await self._get(url, validators, pages_only)
                except (TimeoutError, httpx.HTTPError, httpx.InvalidURL) as error:
                    return _Answer("failed", first, _describe(error))
                if not isinstance(got, str):
                    return got
                target = _normalize(urljoin(url, got))
                if target is None or target not in scope:
                    return _Answer("failed", first, f"redirected out of scope to {target or got}")
                url, validators = target, None
        return _Answer("failed", first, "too many redirects")

    async def _get(self, url: str, validators: Validators | None,
                   pages_only: bool) -> _Answer | str:
        """One request: the answer, or the Location of a redirect."""
        headers = {}
        if validators and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        async with self.client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status in (301, 302, 303, 307, 308) and "location" in response.headers:
                return response.headers["location"]
            if status == 304 and headers:
                return _Answer("unchanged", url)
            if status != 200:
                return _Answer("failed", url, f"HTTP {status}")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if pages_only and kind not in PAGE_TYPES:
                return _Answer("other", url, f"not HTML ({kind or 'no Content-Type'})")
            declared = response.headers.get("content-length", "")
            too_large = declared.isdigit() and int(declared) > MAX_BYTES
            body, whole = (b"", False) if too_large else await _read(response, MAX_BYTES)
            if not whole:
                return _Answer("failed", url, "too large")
            header = response.headers.get
            return _Answer("page", url, body=body, charset=response.charset_encoding,
                           validators=Validators(header("etag"), header("last-modified")))

    def record(self, got: _Answer) -> list[str]:
        """Note what one fetch found; the links of a new or changed page."""
        if got.kind != "page":
            if got.kind == "unchanged":
                self.unchanged.append(got.url)
            elif got.kind == "failed":
                self.failed.append((got.url, got.reason))
            elif got.kind == "robots":
                self.skipped.append(got.url)
            return []
        html = _decode(got.body, got.charset)
        doc = html_page(html, got.url)  # parses on the loop: pages are capped at MAX_BYTES
        canonical = _normalize(doc.canonical) if doc.canonical else None
        # Only another spelling of this very page (/docs/index.html → /docs/): a canonical
        # that names another page would, on a later refresh where that page answers 304,
        # put this page's content in its place.
        same = canonical is not None and _resource(canonical) == _resource(got.url)
        url = canonical if canonical and same and canonical in self.scope else got.url
        self.seen.update((got.url, url))
        self.found.append((got.url, Page(url, html, got.validators)))
        return list(doc.links)

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def result(self) -> CrawlResult:
        """Pages found twice (/docs/ and /docs/index.html) once, under their canonical URL;
        but a page whose canonical URL holds other content (sites that give every page the
        home page's canonical URL) stays at its own."""
        pages: dict[str, Page] = {}
        for fetched, page in sorted(self.found, key=lambda found: found[1].url != found[0]):
            held = pages.setdefault(page.url, page)
            if held.html != page.html:
                pages.setdefault(fetched, replace(page, url=fetched))
        unchanged = sorted(set(self.unchanged))
        return CrawlResult([page for url, page in sorted(pages.items()) if url not in unchanged],
                           unchanged, sorted(set(self.failed)), sorted(set(self.skipped)))


def is_site(source: str) -> bool:
    """A docs source that is a website (an http(s) URL) rather than a folder."""
    return source.startswith(("http://", "https://"))


def site_source(url: str) -> str:
    """One spelling per docs site, so the same site is not added twice: scheme and host in
    lower case, no fragment, a start page's index.html dropped and its folder ending in /
    (a sitemap or another file keeps its name)."""
    parts = urlsplit(url.strip())
    path = parts.path or "/"
    for index in ("index.html", "index.htm"):
        path = path.removesuffix(index)
    if not path.endswith("/") and "." not in path.rsplit("/", 1)[-1]:
        path += "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def _resource(url: str) -> str:
    """The page a URL names, whatever its spelling: no index.html, no trailing slash."""
    parts = urlsplit(url)
    path = parts.path
    for index in ("index.html", "index.htm"):
        path = path.removesuffix(index)
    return f"{parts.netloc.lower()}{path.rstrip('/')}?{parts.query}"


def _normalize(url: str) -> str | None:
    """`url` without its fragment, scheme and host in lower case; None unless http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme.lower()]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _read(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """Up to `cap` bytes of the body, and whether that was all of it."""
    data = bytearray()
    async for chunk in response.aiter_bytes():  # bounded: stops once past the cap
        data.extend(chunk)
        if len(data) > cap:
            return bytes(data[:cap]), False
    return bytes(data), True


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def _sitemap(body: bytes) -> tuple[str, list[str]]:
    """("urlset" or "sitemapindex", the <loc>s), or ("", []) if this is not a sitemap."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "", []
    kind = root.tag.rsplit("}", 1)[-1]
    entry = "sitemap" if kind == "sitemapindex" else "url"
    locs = [loc.text.strip() for item in root if item.tag.rsplit("}", 1)[-1] == entry
            for loc in item if loc.tag.rsplit("}", 1)[-1] == "loc" and loc.text]
    return kind, locs[:MAX_SITEMAP_URLS]


def _describe(error: Exception) -> str:
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.ConnectError):
        return "could not connect"
    return type(error).__name__
