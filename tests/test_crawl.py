"""The docs crawler against tests/data/site served over HTTP on 127.0.0.1 by a small server
that answers conditional requests, records every request and can fail, stall or bloat a page."""

import asyncio
import time

import pytest
from aiohttp import web

from bot.crawl import MAX_BYTES, USER_AGENT, CrawlError, Validators, crawl
from tests.fakes.docs_site import LAST_MODIFIED, PAGES, SITEMAP_PAGES, DocsSite
from tests.fakes.server import LocalServer


def urls(site: DocsSite, paths: list[str]) -> list[str]:
    return [site.url + path for path in paths]


async def test_a_sitemap_index_lists_the_pages(site: DocsSite, elsewhere: DocsSite) -> None:
    result = await crawl(site.url + "/sitemap.xml")
    # troubleshooting.html names /docs/ as its canonical URL; other content, so it keeps its own
    assert [page.url for page in result.pages] == urls(site, SITEMAP_PAGES)
    assert "Dark mode for every widget" in result.pages[1].html
    assert result.skipped_by_robots == [site.url + "/docs/internal.html"]
    assert result.failed == [] and result.unchanged == []
    assert sorted(site.paths()) == SITEMAP_PAGES  # nothing followed, nothing disallowed
    assert elsewhere.requests == []  # the sitemap's off-site URL is not for this site
    first = [path for path, _ in site.requests[:3]]
    assert first == ["/robots.txt", "/sitemap.xml", "/sitemaps/docs.xml"]


async def test_a_link_crawl_stays_on_the_site_and_under_the_start_folder(
    site: DocsSite, elsewhere: DocsSite
) -> None:
    calls: list[tuple[int, int]] = []
    result = await crawl(site.url + "/docs", progress=lambda *call: calls.append(call))
    assert [page.url for page in result.pages] == urls(site, PAGES)  # /docs → /docs/
    assert result.skipped_by_robots == [site.url + "/docs/internal.html"]
    assert result.failed == []
    assert elsewhere.requests == []  # the blog post linked from the configuration page
    asked = site.paths()
    assert "/docs/internal.html" not in asked and "/blog/" not in asked  # robots; other folder
    assert not any(path.endswith((".png", ".pdf")) for path in asked)
    assert asked.count("/docs/feed") == 1  # asked once, and not HTML, so not a page
    assert "/docs/index.html" in asked  # the nav's Home: canonical /docs/, one page
    assert len(asked) == len(set(asked))  # each URL once
    assert {agent for _, agent in site.requests} == {USER_AGENT}
    assert USER_AGENT.startswith("supportbot/") and USER_AGENT.endswith(" (docs indexer)")
    assert [done for done, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[0] == (1, 1) and calls[1][1] > 2  # a level's pages are counted before fetching
    assert all(done <= total for done, total in calls)
    assert calls[-1] == (len(calls), len(calls)) and len(calls) == len(asked) - 1


async def test_depth_and_page_budgets(site: DocsSite) -> None:
    calls: list[tuple[int, int]] = []
    shallow = await crawl(site.url + "/docs/", max_depth=1, progress=lambda *c: calls.append(c))
    assert [page.url for page in shallow.pages] == urls(site, SITEMAP_PAGES)
    assert calls[-1] == (len(site.paths()), len(site.paths()))  # no total for what is not asked
    assert "/docs/api/widgets.html" not in site.paths()  # two hops from the start page
    site.requests.clear()
    assert [p.url for p in (await crawl(site.url + "/docs/", max_depth=0)).pages] == urls(
        site, ["/docs/"])
    assert site.paths() == ["/docs/"]
    site.requests.clear()
    few = await crawl(site.url + "/docs/", max_pages=3)
    assert len(site.paths()) == 3 and 1 <= len(few.pages) <= 3  # index.html is /docs/


async def test_a_recrawl_with_the_validators_is_all_not_modified(site: DocsSite) -> None:
    first = await crawl(site.url + "/docs/")
    known = {page.url: page.validators for page in first.pages}
    assert all(v.etag and v.last_modified == LAST_MODIFIED for v in known.values())
    site.answers.clear()
    again = await crawl(site.url + "/docs/", known=known)
    assert again.pages == [] and again.failed == []
    assert again.unchanged == sorted(known)
    assert [status for path, status in site.answers if path.startswith("/docs")] == [304] * 6
    for tags, dates in ((True, False), (False, True)):  # either validator is enough
        one = {url: Validators(v.etag if tags else None, v.last_modified if dates else None)
               for url, v in known.items()}
        assert (await crawl(site.url + "/sitemap.xml", known=one)).unchanged == urls(
            site, SITEMAP_PAGES)


async def test_one_failing_page_is_reported_and_the_rest_are_crawled(site: DocsSite) -> None:
    site.fail.add("/docs/getting-started.html")
    result = await crawl(site.url + "/docs/")
    assert result.failed == [(site.url + "/docs/getting-started.html", "HTTP 500")]
    ok = [p for p in PAGES if p not in ("/docs/getting-started.html", "/docs/api/widgets.html")]
    assert [page.url for page in result.pages] == urls(site, ok)  # api/: linked from the failure


async def test_slow_large_and_redirected_pages_fail_alone(
    site: DocsSite, elsewhere: DocsSite
) -> None:
    site.slow["/docs/changelog.html"] = 5.0
    site.pad["/docs/configuration.html"] = MAX_BYTES
    site.redirect["/docs/troubleshooting.html"] = elsewhere.url + "/docs/troubleshooting.html"
    site.drip.add("/docs/getting-started.html")  # each byte in time, the whole page never
    started = time.monotonic()
    result = await crawl(site.url + "/sitemap.xml", timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert result.failed == [
        (site.url + "/docs/changelog.html", "timed out"),
        (site.url + "/docs/configuration.html", "too large"),
        (site.url + "/docs/getting-started.html", "timed out"),
        (site.url + "/docs/troubleshooting.html",
         f"redirected out of scope to {elsewhere.url}/docs/troubleshooting.html"),
    ]
    assert [page.url for page in result.pages] == urls(site, ["/docs/"])
    assert elsewhere.requests == []


async def test_concurrency_stays_within_the_bound(site: DocsSite) -> None:
    site.delay = 0.05
    result = await crawl(site.url + "/docs/", concurrency=2)
    assert len(result.pages) == len(PAGES)
    assert site.max_in_flight == 2  # the bound is reached, never passed


async def test_robots_txt_is_read_for_our_user_agent(site: DocsSite) -> None:
    with pytest.raises(CrawlError, match="robots.txt does not allow crawling"):
        await crawl(site.url + "/docs/", user_agent="curious/1.0")
    site.fail.add("/robots.txt")  # a 5xx robots.txt allows nothing, as Google reads it
    with pytest.raises(CrawlError, match=f"{site.url}/docs/: {site.url}/robots.txt answered HTTP"):
        await crawl(site.url + "/docs/")
    assert site.paths() == []


async def test_bad_start_urls_are_crawl_errors(site: DocsSite) -> None:
    for start in ("ftp://acme.example/docs/", "file:///etc/passwd", "docs/index.html", ""):
        with pytest.raises(CrawlError, match="not an http"):
            await crawl(start)
    closed = LocalServer(web.Application())
    gone = await closed.start() + "/docs/"
    await closed.stop()
    with pytest.raises(CrawlError, match=f"could not crawl {gone}: .*could not connect"):
        await crawl(gone)
    with pytest.raises(CrawlError, match=f"start page {site.url}/docs/nope.html: HTTP 404"):
        await crawl(site.url + "/docs/nope.html")
    with pytest.raises(CrawlError, match=f"sitemap {site.url}/docs/index.xml: HTTP 404"):
        await crawl(site.url + "/docs/index.xml")
    with pytest.raises(CrawlError, match="not HTML"):
        await crawl(site.url + "/docs/feed")
    assert isinstance(CrawlError("x"), ValueError)


async def test_cancelling_a_crawl_leaves_no_tasks_behind(site: DocsSite) -> None:
    site.delay = 5.0
    site.slow.update({"/robots.txt": 0.0, "/docs/": 0.0, "/sitemap.xml": 0.0,
                      "/sitemaps/docs.xml": 0.0})
    task = asyncio.create_task(crawl(site.url + "/docs/"))
    for _ in range(200):
        if site.in_flight == 4:
            break
        await asyncio.sleep(0.01)
    assert site.in_flight == 4  # the first level of pages, as many as concurrency allows
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("crawl ")] == []
