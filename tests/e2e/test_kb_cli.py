"""`supportbot kb …` and the docs kept fresh by `run`, as a subprocess, against a folder in
tests/data and the docs site in tests/data/site served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path

from bot.conversation import ConversationKey, Passage, Platform
from bot.store import Store
from tests.e2e.processes import BotProcess, bot_env
from tests.e2e.test_bad_input import run
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply
from tests.fakes.docs_site import DocsSite

DATA = Path(__file__).resolve().parent.parent / "data"


async def indexed(db: Path, source: str, documents: int, timeout: float = 30.0) -> None:
    """Wait until the running bot has indexed `documents` pages of `source`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # not created or migrated yet
            with contextlib.closing(sqlite3.connect(db)) as conn:
                row = conn.execute("SELECT count(*) FROM kb_documents WHERE source = ?",
                                   [source]).fetchone()
                if row[0] >= documents:
                    return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{source} not indexed within {timeout} s")


async def test_a_folder_and_a_site_side_by_side(tmp_path: Path, site: DocsSite) -> None:
    env = bot_env(tmp_path)
    sitemap = site.url + "/sitemap.xml"
    code, out, err = await run(tmp_path, env, "kb", "add", str(DATA / "docs"), sitemap)
    assert code == 0, err
    assert "4 new" in out and "5 new" in out
    code, out, _ = await run(tmp_path, env, "kb", "list")
    assert code == 0 and "2 sources" in out
    assert f"{sitemap}\tsite\t5 documents" in out and "\tfolder\t4 documents" in out
    code, out, _ = await run(tmp_path, env, "kb", "list", "--documents")
    lines = out.splitlines()
    folder_line = next(i for i, line in enumerate(lines) if "\tfolder\t" in line)
    assert lines[folder_line + 1].startswith("  guide/exports.md\t")  # under its source
    code, _, err = await run(tmp_path, env, "kb", "add", "ftp://docs.acme.test/")
    assert code == 2 and "not an http(s) URL" in err
    code, _, err = await run(tmp_path, env, "kb", "add", "")  # an empty "$DOCS"
    assert code == 2 and "an empty source" in err
    (tmp_path / "empty").mkdir()
    code, _, err = await run(tmp_path, env, "kb", "add", str(tmp_path / "empty"))
    assert code == 0 and "holds no docs files" in err
    code, out, _ = await run(tmp_path, env, "kb", "search", "--json",
                             "shortest refresh interval of a widget")
    found = json.loads(out)
    assert found["confident"] is True
    best = found["passages"][0]
    assert set(best) == {"source", "heading", "text", "url", "score"}
    assert best["score"] > 0 and best["heading"].endswith("Refresh intervals")
    code, out, _ = await run(tmp_path, env, "kb", "remove", sitemap)
    assert code == 0 and "its 5 documents" in out
    code, out, _ = await run(tmp_path, env, "kb", "search", "--json", "revoke a shared link")
    assert json.loads(out)["passages"][0]["source"] == "guide/sharing.mdx"
    assert json.loads(out)["passages"][0]["url"] == ""  # a folder file has no web address
    code, _, err = await run(tmp_path, env, "kb", "remove", sitemap)
    assert code == 2 and "no source" in err
    code, _, err = await run(tmp_path, env, "kb", "clear")  # no terminal to ask on
    assert code == 2 and "add --yes" in err
    code, out, _ = await run(tmp_path, env, "kb", "list")
    assert "2 sources" in out  # nothing was removed
    code, out, _ = await run(tmp_path, env, "kb", "clear", "--yes")
    assert code == 0 and "removed 4 documents" in out


async def test_kb_eval_prints_both_systems_and_the_gate(tmp_path: Path) -> None:
    questions = DATA / "docs-questions.jsonl"
    code, out, err = await run(tmp_path, bot_env(tmp_path), "kb", "eval", str(questions),
                               "--docs", str(DATA / "docs"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["questions"] == 7 and report["answerable"] == 5
    assert report["ours"]["hit"]["5"] == 1.0  # each question finds its page
    assert set(report["baseline"]["hit"]) == {"1", "3", "5"}
    assert 0 <= report["gate_recall"] <= 1 and report["ours"]["latency_p50_ms"] > 0
    code, out, _ = await run(tmp_path, bot_env(tmp_path), "kb", "eval", str(questions),
                             "--docs", str(DATA / "docs"))
    assert "supportbot" in out and "baseline" in out and "section hit@5" in out
    assert not (tmp_path / "bot.db").exists()  # --docs leaves the bot's own index alone
    typo = tmp_path / "typo.jsonl"
    typo.write_text('{"question": "PDF export?", "expected": ["guide/exports.md"], '
                    '"section": "Exporting a dashbord"}\n')
    code, out, err = await run(tmp_path, bot_env(tmp_path), "kb", "eval", str(typo),
                               "--docs", str(DATA / "docs"))
    assert code == 0 and "section 'Exporting a dashbord' is not a heading" in err
    assert "no unanswerable questions to measure it on" in out  # not "recall 0.00"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\nnot json\n')
    code, _, err = await run(tmp_path, bot_env(tmp_path), "kb", "eval", str(bad))
    assert code == 2 and "bad.jsonl:1" in err and "Traceback" not in err


async def test_kb_eval_answers_counts_the_gate_and_the_models_marker_together(
    tmp_path: Path
) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question": "How can I get my dashboard as a PDF file?",
         "expected": ["guide/exports.md"]},
        {"question": "What is the fastest a widget can refresh?",
         "expected": ["guide/widgets.rst"]},
        # On the docs' topic, so it passes the gate; only the model can tell it is not there.
        {"question": "Can scheduled exports be revoked like a shared link?",
         "expected": [], "answerable": False},
        {"question": "What is the price of the enterprise plan per seat?",
         "expected": [], "answerable": False},
    ]) + "\n")
    args = ("kb", "eval", str(questions), "--docs", str(DATA / "docs"), "--json", "--answers")
    code, _, err = await run(tmp_path, bot_env(tmp_path), *args)
    assert code == 2 and "ANTHROPIC_API_KEY" in err  # never a silent run without the model
    async with FakeAnthropic(delta_interval=0.0, default_words=40) as model:
        model.script(Reply(text="[[NOT_IN_DOCS]] Nothing about that.", when="revoked"))
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url)
        code, out, err = await run(tmp_path, env, *args)
        assert code == 0, err
        report = json.loads(out)
        asked = {request.question() for request in model.requests}
    assert report["gate_recall"] == 0.5  # the gate alone catches the off-topic one
    assert report["model"] == {"asked": 3, "model_declined": 1, "recall": 1.0,
                               "declined_answerable": 0.0}
    assert "price" not in " ".join(asked)  # a gated question costs no model call
    assert any("revoked" in q for q in asked) and len(asked) == 3
    async with FakeAnthropic(delta_interval=0.0) as model:
        model.script(Fail(401, "authentication_error", "invalid x-api-key"))
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url)
        code, out, err = await run(tmp_path, env, *args)
    assert code == 1 and "could not answer" in err and "Traceback" not in err


async def test_run_indexes_in_the_background_and_other_commands_never_crawl(
    tmp_path: Path, site: DocsSite
) -> None:
    site.delay = 1.0  # a slow site must not hold up anything but its own indexing
    env = bot_env(tmp_path, SUPPORTBOT_KB=f"{DATA / 'docs'},{site.url}/sitemap.xml")
    for command in (("stats",), ("kb", "list"), ("check",)):
        code, out, err = await run(tmp_path, env, *command)
        assert code == 0, err
    assert site.requests == []  # only `run` indexes; these start at once
    async with FakeAnthropic(delta_interval=0.01, default_words=10) as model:
        env.update(ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url)
        bot = await BotProcess(tmp_path, env, "run").start()
        try:
            await bot.send("hello, are you there?")  # answered while the site is crawled
            await bot.read_until("\n\n", 20)
            assert len(model.requests) == 1
            assert not any(path.startswith("/docs") for path, _ in site.answers)
            await indexed(tmp_path / "bot.db", site.url + "/sitemap.xml", 5)
            await bot.send("which version added dark mode for widgets?")
            await bot.read_until("\n\n", 20)
            system = model.requests[-1].documentation()
            assert "Dark mode for every widget" in system  # from the site's changelog
            await bot.send("how do I revoke a shared link?")
            await bot.read_until("\n\n", 20)
            system = model.requests[-1].documentation()
            assert "Press **Revoke** next to the link" in system  # from the folder
        finally:
            await bot.stop()
    assert {path for path, _ in site.requests} >= {"/docs/configuration.html"}


async def test_kb_gaps_lists_the_questions_the_docs_did_not_answer(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.db")
    key = ConversationKey(Platform.SLACK, "T1", "C1", "1.1")
    closest = [Passage("sso.md", "Single sign-on › Configure SSO", "…", score=0.01)]
    await store.record_gap(key, "How do I set up Okta SAML?", "model", 0.41, closest)
    await store.record_gap(key, "Which ingress annotations?", "gate", 0.05, [])
    await store.close()
    code, out, err = await run(tmp_path, bot_env(tmp_path), "kb", "gaps")
    assert code == 0, err
    assert out.index("Which ingress annotations?") < out.index("How do I set up Okta SAML?")
    assert "closest: Single sign-on › Configure SSO" in out and "41% of its words" in out
    assert "2 questions in the last 30 days" in out
    code, _, err = await run(tmp_path, bot_env(tmp_path), "kb", "gaps", "--days", "-1")
    assert code == 2 and "--days" in err
