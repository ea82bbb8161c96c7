"""A docs website as a knowledge source: tests/data/site served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.kb_sites import SiteError
from bot.knowledge import Knowledge
from bot.store import Store
from tests.fakes.docs_site import DocsSite


async def test_a_site_is_indexed_with_page_links_and_main_content_only(
    store: Store, site: DocsSite
) -> None:
    kb = Knowledge(store.sqlite)
    report = await kb.add_site(site.url + "/sitemap.xml")
    assert report.added == 5 and report.failed == 0
    hits = await kb.search("what is the shortest refresh interval for a widget?")
    best = hits[0]
    assert best.source == site.url + "/docs/configuration.html"
    assert best.heading == "Configuration › Widgets › Refresh intervals"
    assert best.url == site.url + "/docs/configuration.html#refresh"
    assert "The shortest interval is 5 seconds." in best.text
    blank = (await kb.search("the dashboard stays blank: check the source file"))[0]
    assert blank.heading.endswith("The dashboard stays blank")  # no id on that heading:
    assert blank.url == site.url + "/docs/troubleshooting.html"  # no made-up #anchor
    found = await kb.rank("search the docs blog home helpful", 10)
    every = " ".join(passage.text for passage in found.passages)
    assert "Was this page helpful" not in every and "© 2026" not in every
    rows = await kb.sources()
    assert [(r.id, r.kind, r.documents) for r in rows] == [(site.url + "/sitemap.xml", "site",
                                                           5)]


async def test_a_refresh_asks_only_for_what_changed(store: Store, site: DocsSite) -> None:
    kb = Knowledge(store.sqlite)
    await kb.add_site(site.url + "/sitemap.xml")
    site.requests.clear()
    site.answers.clear()
    results = await kb.refresh()
    report = results[site.url + "/sitemap.xml"]
    assert not isinstance(report, str)
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 5)
    page_answers = [status for path, status in site.answers if path.startswith("/docs")]
    assert page_answers == [304] * 5  # conditional requests, nothing downloaded again
    site.pad["/docs/changelog.html"] = 10  # the page changes
    report = (await kb.refresh())[site.url + "/sitemap.xml"]
    assert not isinstance(report, str) and report.updated == 1 and report.unchanged == 4
    # A page whose canonical link names the home page changes while the home page answers
    # 304: it stays itself (it once replaced the home page and was then dropped).
    site.pad["/docs/troubleshooting.html"] = 10
    report = (await kb.refresh())[site.url + "/sitemap.xml"]
    assert not isinstance(report, str) and (report.updated, report.removed) == (1, 0)
    paths = {doc.path for doc in await kb.documents()}
    assert {site.url + "/docs/troubleshooting.html", site.url + "/docs/"} <= paths
    rows = await kb.sources()
    assert rows[0].refreshed_at > 0 and rows[0].documents == 5  # and it says when


async def test_a_site_that_cannot_be_reached_is_named_and_keeps_its_pages(
    store: Store, site: DocsSite, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "sso.md").write_text("# SSO\n\nSSO is configured under Admin > Security.\n")
    await kb.index_folder(docs)
    await kb.add_site(site.url + "/sitemap.xml")
    site.fail.update({"/sitemap.xml", "/robots.txt"})
    results = await kb.refresh()
    assert "sitemap.xml" in str(results[site.url + "/sitemap.xml"])
    assert (await kb.search("shortest refresh interval widget"))[0].source.endswith(
        "configuration.html")  # the pages from before are still answered from
    assert (await kb.search("configure SSO security"))[0].source == "sso.md"
    with pytest.raises(SiteError, match="sitemap.xml"):  # `kb add` of a known site, now down
        await kb.add_site(site.url + "/sitemap.xml")
    [row] = [row for row in await kb.sources() if row.kind == "site"]
    assert "sitemap.xml" in row.problem and row.documents == 5  # named; its pages kept
    with pytest.raises(SiteError, match="127.0.0.1:1"):
        await kb.add_site("http://127.0.0.1:1/docs/")
    assert await kb.remove(site.url + "/sitemap.xml") == 5
    assert [row.kind for row in await kb.sources()] == ["folder"]  # a failed add is not kept


async def test_one_site_spelled_three_ways_is_one_source(store: Store, site: DocsSite) -> None:
    kb = Knowledge(store.sqlite)
    for spelling in ("/docs", "/docs/", "/docs/index.html"):
        await kb.add_site(site.url + spelling)
    assert [row.id for row in await kb.sources()] == [site.url + "/docs/"]
    hits = await kb.search("the dashboard stays blank")
    assert len({(h.source, h.heading) for h in hits}) == len(hits)  # no section twice
    assert await kb.remove(site.url + "/docs/index.html") == 6


async def test_a_sitemap_with_no_page_of_the_site_is_refused(
    store: Store, site: DocsSite
) -> None:
    kb = Knowledge(store.sqlite)
    with pytest.raises(SiteError, match="empty-sitemap.xml: found no pages to index"):
        await kb.add_site(site.url + "/empty-sitemap.xml")
    assert await kb.sources() == []  # and not kept as a source of 0 documents


async def test_a_page_is_titled_by_its_heading_not_the_site_s_title_bar(
    store: Store, site: DocsSite
) -> None:
    kb = Knowledge(store.sqlite)
    await kb.add_site(site.url + "/sitemap.xml")
    titles = {doc.path.rsplit("/", 1)[-1]: doc.title for doc in await kb.documents()}
    assert titles["configuration.html"] == "Configuration"  # <title> says "… — Acme Widgets"
