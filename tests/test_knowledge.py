"""The knowledge base: sources in, scored passages out, and no passages when the docs are
silent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlite_utils import Database

import bot.knowledge as knowledge_module
from bot.docs_parse import ParsedDoc, parse_document
from bot.embedding import Embedder, available
from bot.knowledge import Knowledge
from bot.migrations import migrations
from bot.retrieval import folded, is_release_notes, rrf
from bot.store import Store

SSO = "# Single sign-on\n\n## Configure SSO\n\nSSO is configured under Admin > Security.\n"
EXPORT = ("---\ntitle: Reports\nurl: https://docs.acme.test/reports\n---\n\n# Reports\n\n"
          "## Exporting a report {#export}\n\nOpen the report and press Export; choose CSV "
          "or PDF. Large reports are emailed when ready.\n\n"
          "## Scheduling reports\n\nA report can be sent every Monday.\n")
ASYNC = "# Python SDK\n\n## Async client\n\nUse AsyncClient with await for every call.\n"


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


async def test_index_search_update_and_remove(store: Store, tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {"reset.md": "# Passwords\n\n## Reset\n\nUse the Forgot "
                                     "password link.\n"})
    (docs / "billing.html").write_text(
        "<html><head><title>x</title></head><body><nav>Menu refunds</nav><main><h1>Billing</h1>"
        "<p>Refunds take 5 business days.</p></main><script>var refunds = 1;</script>"
        "</body></html>"
    )
    kb = Knowledge(store.sqlite)
    report = await kb.index_folder(docs)
    assert (report.added, report.updated, report.removed) == (2, 0, 0)
    hits = await kb.search("How long do refunds take?")
    assert hits[0].source == "billing.html"
    assert "5 business days" in hits[0].text and "var refunds" not in hits[0].text
    assert "Menu" not in hits[0].text  # navigation is not content
    assert (await kb.index_folder(docs)).unchanged == 2
    (docs / "reset.md").write_text("# Passwords\n\n## Reset\n\nAsk an admin to reset it.\n")
    (docs / "billing.html").unlink()
    report = await kb.index_folder(docs)
    assert (report.updated, report.removed) == (1, 1)
    assert await kb.search("refunds") == []
    assert "admin" in (await kb.search("reset password"))[0].text
    assert [d.path for d in await kb.documents()] == ["reset.md"]


async def test_results_carry_heading_path_link_and_score(store: Store, tmp_path: Path) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {"reports.md": EXPORT, "sso.md": SSO}))
    hits = await kb.search("how do I export a report as CSV?")
    best = hits[0]
    assert best.heading == "Reports › Exporting a report"
    assert best.url == "https://docs.acme.test/reports#export"
    assert best.score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_a_question_the_docs_do_not_answer_gets_no_passages(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {"reports.md": EXPORT, "sso.md": SSO}))
    question = "Which Kubernetes ingress annotations tune gRPC keepalive for the report exporter?"
    ranked = await kb.rank(question)
    assert ranked.passages  # BM25 finds something that shares a word...
    assert not ranked.confident and ranked.confidence < 0.2  # ...but far too little of it
    assert await kb.search(question) == []
    assert (await kb.rank("how do I export a report")).confident


async def test_a_question_mostly_in_words_the_docs_never_use_is_not_confident(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {"reports.md": EXPORT, "sdk.md": ASYNC,
                                                    "sso.md": SSO}))
    off_topic = await kb.rank("how do I export sourdough bread?")
    assert off_topic.confidence >= knowledge_module.MIN_COVERAGE  # "export" matched...
    assert not off_topic.confident  # ...but the rest is nothing the docs talk about
    assert (await kb.rank("can I export my reports as PDF?")).confident


async def test_a_follow_up_searches_with_the_thread_s_earlier_question(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {"reports.md": EXPORT, "sdk.md": ASYNC,
                                                    "sso.md": SSO}))
    alone = await kb.search("What about the other format?")
    follow_up = await kb.search("What about the other format?",
                                earlier=["How do I export a report?"])
    assert alone == []  # on its own it names nothing the docs hold
    assert follow_up[0].heading == "Reports › Exporting a report"
    assert folded("and in async?", ["How do I export?"]) == ["async", "export"]


async def test_headings_weigh_more_than_a_passing_mention(store: Store, tmp_path: Path) -> None:
    filler = " ".join(f"Paragraph {i} talks about dashboards and widgets." for i in range(20))
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {
        "webhooks.md": "# Webhooks\n\n## Signing secret\n\nEach delivery carries a header.\n",
        "misc.md": f"# Dashboards\n\n{filler} A signing secret is mentioned here once.\n",
    }))
    assert (await kb.search("webhook signing secret"))[0].source == "webhooks.md"


async def test_sources_live_side_by_side_and_are_removed_alone(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    first = write(tmp_path / "a", {"sso.md": SSO})
    second = write(tmp_path / "b", {"sso.md": EXPORT})  # the same file name in another source
    await kb.index_folder(first)
    await kb.index_folder(second)
    rows = {row.id: row for row in await kb.sources()}
    assert {str(first.resolve()), str(second.resolve())} == set(rows)
    assert rows[str(first.resolve())].documents == 1 and rows[str(first.resolve())].passages == 1
    assert await kb.remove(str(first)) == 1
    assert await kb.search("configure SSO security") == []
    assert (await kb.search("export a report"))[0].source == "sso.md"
    assert await kb.remove(str(tmp_path / "nothing")) is None


async def test_a_source_that_vanished_keeps_its_documents(store: Store, tmp_path: Path) -> None:
    kb = Knowledge(store.sqlite)
    docs = write(tmp_path / "docs", {"sso.md": SSO})
    await kb.index_folder(docs)
    (docs / "sso.md").unlink()
    docs.rmdir()
    results = await kb.refresh()
    assert "not a folder" in str(results[str(docs.resolve())])
    assert (await kb.search("configure SSO"))[0].source == "sso.md"
    assert "not a folder" in (await kb.sources())[0].problem


async def test_the_semantic_signal_stores_vectors_and_joins_the_ranking(
    store: Store, tmp_path: Path
) -> None:
    embedder = Embedder.load()
    assert embedder is not None  # the dev install has the semantic extra
    kb = Knowledge(store.sqlite, lambda: embedder)
    await kb.index_folder(write(tmp_path / "docs", {"reports.md": EXPORT, "sso.md": SSO}))
    vectors = store.sqlite.db.execute("SELECT count(*) FROM kb_vectors").fetchone()[0]
    passages = store.sqlite.db.execute("SELECT count(*) FROM kb_passages").fetchone()[0]
    assert vectors == passages == 3
    semantic = await kb._semantic("sign in with the company identity provider")
    assert semantic[0][1] > semantic[-1][1]
    ids = {pid for pid, _ in semantic}
    assert len(ids) == 3  # every passage ranked by meaning, words shared or not
    assert (await kb.search("how do I export a report"))[0].heading.endswith("Exporting a report")


def test_rrf_rewards_agreement_and_respects_weights() -> None:
    fused = rrf([[1, 2, 3], [3, 1]], [1.0, 0.5])
    assert max(fused, key=lambda k: fused[k]) == 1
    assert fused[3] > fused[2]  # found by both beats found by one


def test_the_semantic_model_loads_with_no_network() -> None:
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from bot.embedding import Embedder\n"
        "e = Embedder.load()\nv = e.embed(['hello world'])\n"
        "print(v.shape, round(float((v * v).sum()), 3))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": "/nonexistent"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "(1, 256) 1.0"


async def test_commands_that_never_search_do_not_load_the_model(store: Store) -> None:
    loads: list[int] = []

    def loader() -> Embedder | None:
        loads.append(1)
        return None

    kb = Knowledge(store.sqlite, loader)
    await kb.sources()
    await kb.documents()
    assert loads == []
    await asyncio.gather(kb.search("anything"), kb.search("else"))
    assert loads == [1]


async def test_indexing_reports_progress_file_by_file(store: Store, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    docs = write(tmp_path / "docs", {"a.md": SSO, "b.md": EXPORT, "c.md": ASYNC})
    await Knowledge(store.sqlite).index_folder(docs, lambda done, total: calls.append(
        (done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


async def test_binary_files_are_skipped_and_old_encodings_read(
    store: Store, tmp_path: Path
) -> None:
    docs = write(tmp_path / "docs", {"sso.md": SSO})
    (docs / "program.md").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    (docs / "cafe.md").write_bytes("# Café\n\nLe café est ouvert à midi.\n".encode("cp1252"))
    (docs / "windows.txt").write_bytes("Notes saved by Notepad in UTF-16.\n".encode("utf-16"))
    report = await Knowledge(store.sqlite).index_folder(docs)
    assert report.skipped == ("program.md: not a text file",) and report.added == 3
    kb = Knowledge(store.sqlite)
    assert (await kb.rank("café ouvert midi")).passages[0].text == "Le café est ouvert à midi."
    assert all(doc.path != "program.md" for doc in await kb.documents())
    assert (await kb.rank("Notepad UTF-16 notes")).passages[0].source == "windows.txt"


async def test_nothing_outside_the_folder_templates_or_dumps_is_indexed(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.env"
    secret.write_text("ANTHROPIC_API_KEY=sk-ant-do-not-index\n")
    docs = write(tmp_path / "docs", {"sso.md": SSO, "big.txt": "x" * 2_000})
    for name, text in {"guide/extra.md": "# Extra\n\nSee sso.\n",
                       "_templates/page.html": "{% block body %}{% endblock %}",
                       "overrides/main.html": "{{ page.title }}",
                       "templates/emails.md": "# Email templates\n\nWrite them in HTML.\n"}.items():
        (docs / name).parent.mkdir(exist_ok=True)
        (docs / name).write_text(text)
    (docs / "leak.txt").symlink_to(secret)  # a link out of the docs folder
    (docs / "leak.md").symlink_to(secret)
    (docs / "outside").symlink_to(tmp_path, target_is_directory=True)
    (docs / "same.md").symlink_to(docs / "sso.md")  # a link inside it is a page like others
    monkeypatch.setattr(knowledge_module, "MAX_DOC_BYTES", 1_000)
    report = await Knowledge(store.sqlite).index_folder(docs)
    kb = Knowledge(store.sqlite)
    assert {doc.path for doc in await kb.documents()} == {
        "sso.md", "guide/extra.md", "same.md", "templates/emails.md"}  # a page about templates
    assert report.skipped == ("big.txt: 0.0 MB, over the 0.001 MB limit",)
    assert not (await kb.rank("ANTHROPIC_API_KEY do not index")).passages


async def test_one_file_that_cannot_be_parsed_never_stops_the_rest(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = parse_document

    def parse(name: str, text: str, url: str | None = None) -> ParsedDoc:
        if name == "odd.rst":
            raise RecursionError("maximum recursion depth exceeded")
        return real(name, text, url)

    monkeypatch.setattr(knowledge_module, "parse_document", parse)
    docs = write(tmp_path / "docs", {"sso.md": SSO, "odd.rst": "Odd\n===\n\nText.\n",
                                     "reports.md": EXPORT})
    report = await Knowledge(store.sqlite).index_folder(docs)
    assert report.added == 2 and report.skipped[0].startswith("odd.rst: could not be parsed")


async def test_overlapping_sources_never_show_a_passage_twice(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    docs = write(tmp_path / "docs", {"sso.md": SSO})
    write(docs / "product", {"reports.md": EXPORT, "sdk.md": ASYNC})
    await kb.index_folder(docs / "product")
    await kb.index_folder(docs)  # its parent: every page of product/ again
    found = await kb.rank("how do I export a report as PDF?", 4)
    texts = [passage.text for passage in found.passages]
    assert len(texts) == len(set(texts)) and len(texts) >= 2
    assert found.passages[0].heading == "Reports › Exporting a report"


def test_a_question_that_names_its_own_subject_is_not_folded() -> None:
    earlier = ["How do I rotate my API key?"]
    assert folded("what is the refund policy for annual plans?", earlier) == [
        "refund", "policy", "annual", "plans"]
    assert folded("and via the CLI?", earlier) == ["via", "cli", "rotate", "api", "key"]


CHANGELOG = "# Changelog\n\n" + "".join(
    f"## 2.{n}.0 ({2020 + n}-01-15)\n\n- Webhook deliveries are retried more times (#{n}0{n})."
    "\n\n" for n in range(6))
RETRIES = ("# Webhooks\n\n## When a send fails\n\nA webhook delivery that fails is sent again up "
           "to five times, each time after a longer wait; the log lists every attempt.\n")


def test_release_notes_are_told_from_guides_by_their_headings() -> None:
    sep = " › "
    assert is_release_notes(["Changelog", "Changelog › pytest 8.4.2 (2025-09-03) › Bug fixes",
                             "Changelog › pytest 8.4.1 (2025-06-17)"], sep)
    assert is_release_notes(["Release Notes › 0.47.3 (August 24, 2025) › Fixed"], sep)
    assert is_release_notes(["pytest-2.9.0"], sep)
    assert is_release_notes(["Version 1.4 (2019)"], sep)
    # Numbered chapters, a version in prose, one release section in a guide: not release notes.
    assert not is_release_notes(["Site map › Node 1.0: Quick reference", "Site map › 2.1: FAQ"],
                                sep)
    assert not is_release_notes(["Upgrading › Migrating to 3.0.0 from the old release line"], sep)
    assert not is_release_notes(["Guide › Install", "Guide › Proxies", "Guide › 20.3.1 changes"],
                                sep)
    assert not is_release_notes([], sep)


async def test_a_changelog_that_names_the_words_ranks_below_the_guide(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {"changelog.md": CHANGELOG,
                                                    "webhooks.md": RETRIES}))
    found = await kb.rank("how many times are webhook deliveries retried?", 3)
    assert found.passages[0].source == "webhooks.md"
    assert {p.source for p in found.passages} == {"webhooks.md", "changelog.md"}  # still found
    # Without the rule the changelog's repeated words win: the test measures the rule.
    knowledge_module.RELEASE_NOTES_WEIGHT = 1.0
    try:
        plain = await kb.rank("how many times are webhook deliveries retried?", 3)
    finally:
        knowledge_module.RELEASE_NOTES_WEIGHT = 0.6
    assert plain.passages[0].source == "changelog.md"
    # A question about releases is answered by the release notes.
    about = await kb.rank("which release retried webhook deliveries more times?", 3)
    assert about.passages[0].source == "changelog.md"


async def test_an_index_made_before_the_rule_is_classified_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m012_release_notes")
    db.execute("INSERT INTO kb_sources (id, kind, added_at, refreshed_at, problem)"
               " VALUES ('d', 'folder', 0, 0, '')")
    for doc_id, heading in ((1, "Changelog › 1.2.3 (2024-01-01)"), (2, "Webhooks › Delivery")):
        db.execute("INSERT INTO kb_documents (id, source, path, title, url, sha256, etag,"
                   " last_modified, indexed_at) VALUES (?, 'd', ?, '', '', '', '', '', 0)",
                   [doc_id, f"doc{doc_id}.md"])
        db.execute("INSERT INTO kb_passages (document_id, heading, anchor, text)"
                   " VALUES (?, ?, '', 'text')", [doc_id, heading])
    db.conn.commit()
    db.close()
    store = await Store.open(path)
    try:
        flags = await store.sqlite.call(lambda: store.sqlite.db.execute(
            "SELECT path, release_notes FROM kb_documents ORDER BY path").fetchall())
    finally:
        await store.close()
    assert flags == [("doc1.md", 1), ("doc2.md", 0)]


async def test_a_long_section_is_one_result_showing_its_best_passage(
    store: Store, tmp_path: Path
) -> None:
    # The section is cut into several passages; search ranks it whole, so it fills one
    # place among the results (not two of them with its own passages), and the passage
    # shown is the one that holds most of the question.
    prose = " ".join(f"Step {i} of the network setup changes nothing else." for i in range(60))
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {
        "network.md": (f"# Network\n\n## Corporate proxy\n\nSet the proxy URL first. {prose}"
                       f"\n\n{prose}\n\nThe proxy's certificate bundle goes in ca.pem; every "
                       "proxy certificate there is trusted.\n"),
        "faq.md": "# FAQ\n\n## Odds and ends\n\nA proxy or a certificate may be involved.\n",
    }))
    passages = await store.sqlite.call(lambda: store.sqlite.db.execute(
        "SELECT count(*) FROM kb_passages p JOIN kb_documents d ON d.id = p.document_id"
        " WHERE d.path = 'network.md'").fetchone()[0])
    assert passages >= 3
    found = await kb.rank("which proxy certificate bundle does the proxy trust?", 3)
    assert sorted(p.source for p in found.passages) == ["faq.md", "network.md"]
    [network] = [p for p in found.passages if p.source == "network.md"]
    assert "ca.pem" in network.text and network.score > 0


async def test_late_words_of_a_long_question_still_count(store: Store, tmp_path: Path) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {
        "a.md": "# Alpha\n\nbeta gamma delta epsilon zeta theta iota kappa lambda mu nu.\n",
        "tz.md": "# Time zones\n\nReports use the account's timezone setting.\n",
    }))
    question = ("alpha beta gamma delta epsilon zeta theta iota kappa lambda mu nu xi omicron "
                "pi rho sigma, and which timezone do reports use?")
    found = await kb.rank(question, 2)
    assert "tz.md" in [p.source for p in found.passages]


async def test_an_index_made_before_sections_gets_them_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m013_sections")
    db.execute("INSERT INTO kb_sources (id, kind, added_at, refreshed_at, problem)"
               " VALUES ('d', 'folder', 0, 0, '')")
    db.execute("INSERT INTO kb_documents (id, source, path, title, url, sha256, etag,"
               " last_modified, indexed_at) VALUES (1, 'd', 'doc.md', '', '', '', '', '', 0)")
    for heading, text in (("Doc › Setup", "install the agent"), ("Doc › Setup", "then restart"),
                          ("Doc › Usage", "run the agent")):
        db.execute("INSERT INTO kb_passages (document_id, heading, anchor, text)"
                   " VALUES (1, ?, '', ?)", [heading, text])
    db.conn.commit()
    db.close()
    store = await Store.open(path)
    try:
        kb = Knowledge(store.sqlite)
        assert await kb.sections() == [
            ("doc.md", "Doc › Setup", "install the agent\n\nthen restart"),
            ("doc.md", "Doc › Usage", "run the agent")]
        found = await kb.rank("how do I restart it?", 2)
    finally:
        await store.close()
    assert found.passages[0].heading == "Doc › Setup"
    assert found.passages[0].text == "then restart"


async def test_other_forms_of_a_word_are_found_when_the_docs_never_use_it_as_written(
    store: Store, tmp_path: Path
) -> None:
    kb = Knowledge(store.sqlite)
    await kb.index_folder(write(tmp_path / "docs", {
        "billing.md": "# Billing\n\n## Invoices\n\nInvoices are emailed monthly.\n",
        "network.md": "# Network\n\n## Proxy\n\nTo configure a proxy, set HTTPS_PROXY.\n",
    }))
    invoice = await kb.rank("invoice", 2)
    assert invoice.confident and invoice.passages[0].source == "billing.md"
    proxies = await kb.rank("configuring proxies", 2)
    assert proxies.confident and proxies.passages[0].source == "network.md"
    # As written when the docs use it: "emailed" does not also pull in "emails" pages.
    assert (await kb.rank("emailed invoices", 2)).passages[0].source == "billing.md"


async def test_a_section_found_by_meaning_shows_its_passage_nearest_in_meaning(
    store: Store, tmp_path: Path
) -> None:
    assert available()  # the dev extra installs it
    filler = " ".join(f"Line {i} describes the dashboard colours and fonts." for i in range(45))
    kb = Knowledge(store.sqlite, Embedder.load)
    await kb.index_folder(write(tmp_path / "docs", {
        "help.md": (f"# Help\n\n## Troubleshooting\n\n{filler}\n\n{filler}\n\n"
                    "When the network is down or a firewall blocks outbound traffic, the "
                    "agent cannot connect and retries every minute.\n"),
    }))
    found = await kb.rank("internet unreachable", 1)
    assert found.passages and "firewall" in found.passages[0].text
