from pathlib import Path

from bot.knowledge import Knowledge, fts_query, html_to_markdown, split_sections
from bot.store import Store


async def test_index_search_update_and_remove(store: Store, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reset.md").write_text("# Passwords\n\n## Reset\n\nUse the Forgot password link.\n")
    (docs / "billing.html").write_text(
        "<html><head><title>x</title></head><body><h1>Billing</h1>"
        "<p>Refunds take 5 business days.</p><script>var refunds = 1;</script></body></html>"
    )
    kb = Knowledge(store.sqlite)
    report = await kb.index_folder(docs)
    assert (report.added, report.updated, report.removed) == (2, 0, 0)
    hits = await kb.search("How long do refunds take?")
    assert hits[0].source == "billing.html"
    assert "5 business days" in hits[0].text and "var refunds" not in hits[0].text
    assert (await kb.index_folder(docs)).unchanged == 2
    (docs / "reset.md").write_text("# Passwords\n\n## Reset\n\nAsk an admin to reset it.\n")
    (docs / "billing.html").unlink()
    report = await kb.index_folder(docs)
    assert (report.updated, report.removed) == (1, 1)
    assert await kb.search("refunds") == []
    assert "admin" in (await kb.search("reset password"))[0].text
    assert [d.path for d in await kb.documents()] == ["reset.md"]


def test_query_keeps_meaningful_words_and_is_safe() -> None:
    assert fts_query('How do I "reset" my password?') == '"reset" OR "password"'
    assert fts_query("the a of") == ""
    assert fts_query("NEAR(x) AND *") == '"near"'


def test_sections_follow_headings() -> None:
    title, sections = split_sections("# Guide\n\nintro\n\n## Setup\n\nstep one", "guide")
    assert title == "Guide"
    assert sections == [("Guide", "intro"), ("Setup", "step one")]


def test_html_headings_become_markdown() -> None:
    assert "## Setup" in html_to_markdown("<h2>Setup</h2><p>x</p>")
