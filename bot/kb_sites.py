"""A docs website as a knowledge source: crawl it (crawl.py), keep each page's main content
(html_docs.py) under the page's URL, and on later refreshes ask only for what changed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.crawl import CrawlError, Validators, crawl
from bot.docs_parse import ParsedDoc, parse_markdown
from bot.html_docs import html_page
from bot.kb_store import IndexReport, Known

Progress = Callable[[int, int], None]


class Index(Protocol):
    """What a site refresh needs of the knowledge base (bot.knowledge.Knowledge)."""

    async def known(self, source: str) -> dict[str, Known]: ...

    async def write_document(
        self, source: str, path: str, doc: ParsedDoc, known: Known, url: str
    ) -> int: ...

    async def forget(self, source: str, paths: Sequence[str]) -> None: ...

    async def embed_missing(self) -> int: ...

    async def mark_refreshed(self, source: str) -> None: ...


class SiteError(Exception):
    """The site (its start page or sitemap) could not be read; the message says which URL."""


async def refresh_site(
    knowledge: Index, url: str, progress: Progress | None = None
) -> IndexReport:
    """Bring the site's pages in the index in line with the site."""
    known = await knowledge.known(url)
    # Every known page is named, validators or not: the crawler starts from them too, so a
    # page reachable only through unchanged (304) pages is still found.
    validators = {path: Validators(k.etag or None, k.last_modified or None)
                  for path, k in known.items()}
    try:
        result = await crawl(url, known=validators, progress=progress)
    except CrawlError as error:
        raise SiteError(str(error)) from None
    if not known and not result.pages and not result.unchanged:
        why = "; ".join(f"{page}: {reason}" for page, reason in result.failed[:3])
        raise SiteError(f"{url}: found no pages to index on this site"
                        + (f" ({why})" if why else ""))
    added = updated = passages = 0
    seen = set(result.unchanged)
    for page in result.pages:
        html = html_page(page.html, page.url)
        doc = parse_markdown(html.markdown, html.title, html.description)
        digest = hashlib.sha256(page.html.encode()).hexdigest()
        seen.add(page.url)
        if page.url in known and known[page.url].sha256 == digest:
            continue  # the server sent it again, unchanged
        added, updated = (added + 1, updated) if page.url not in known else (added, updated + 1)
        stamp = Known(digest, page.validators.etag or "", page.validators.last_modified or "")
        # page.url is already the canonical URL where the crawler found that safe
        passages += await knowledge.write_document(url, page.url, doc, stamp, page.url)
    # A page that failed this time keeps its old passages; one the site no longer links
    # (or lists in its sitemap) is removed.
    failed = {page for page, _ in result.failed}
    gone = [path for path in known if path not in seen and path not in failed]
    await knowledge.forget(url, gone)
    await knowledge.embed_missing()
    await knowledge.mark_refreshed(url)
    unchanged = len(result.pages) + len(result.unchanged) - added - updated
    problems = tuple(f"{page}: {reason}" for page, reason in result.failed)
    return IndexReport(added, updated, len(gone), unchanged, passages, len(result.failed),
                       problems=problems)
