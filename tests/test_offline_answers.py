"""Answers without the model: the closest sections with their titles, links and the lines that
match, under a clear label, and nothing when the docs are silent."""

from __future__ import annotations

from pathlib import Path

from bot.conversation import Passage
from bot.notices import DOCS_LABEL, kb_only_answer, matching_lines
from bot.store import Store
from tests.fakes.anthropic import Fail, FakeAnthropic
from tests.surfaces import RecordingSurface
from tests.test_responder import answer, ask, responder

KEYS = ("---\ntitle: API keys\nurl: https://docs.acme.test/keys\n---\n\n# API keys\n\n"
        "## Rotating a key {#rotate}\n\nKeys live under Settings.\nOpen Settings > API keys "
        "and press Rotate.\nThe old key stops working after 24 hours.\nBilling is separate.\n")


def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "keys.md").write_text(KEYS)
    return folder


def test_the_lines_that_match_come_first_and_nothing_else() -> None:
    text = "Intro line.\nPress Rotate to rotate a key.\n```\nacme login\n```\nUnrelated."
    assert matching_lines(text, ["rotate", "key"]) == ["Press Rotate to rotate a key."]
    assert matching_lines("One.\nTwo.\nThree.\nFour.", ["absent"]) == ["One.", "Two.", "Three."]
    code = "Run:\n```\n# exporting from the CLI\nacme export --format pdf\n```\n"
    assert matching_lines(code, ["export", "pdf"]) == [  # code stays code in the excerpt
        "`# exporting from the CLI`", "`acme export --format pdf`"]
    passage = Passage("keys.md", "API keys › Rotating a key", "Press Rotate.",
                      url="https://docs.acme.test/keys#rotate")
    reply = kb_only_answer([passage], ["rotate", "key"])
    assert DOCS_LABEL in reply
    assert "**API keys › Rotating a key** — https://docs.acme.test/keys#rotate" in reply
    assert "> Press Rotate." in reply


async def test_without_a_key_the_reply_shows_sections_and_links(
    store: Store, tmp_path: Path
) -> None:
    r = responder(store, None)
    await r.knowledge.index_folder(docs(tmp_path))
    surface = RecordingSurface()
    await answer(r, ask("how do I rotate a key?", "E1"), surface)
    text = surface.final.text
    assert "no ANTHROPIC_API_KEY is set" in text and DOCS_LABEL in text
    assert "https://docs.acme.test/keys#rotate" in text
    assert "> Open Settings > API keys and press Rotate." in text
    assert "Billing is separate." not in text  # only the lines that match


async def test_without_a_key_a_question_the_docs_do_not_answer_gets_no_sections(
    store: Store, tmp_path: Path
) -> None:
    r = responder(store, None)
    await r.knowledge.index_folder(docs(tmp_path))
    surface = RecordingSurface()
    await answer(r, ask("Which Kubernetes ingress annotations tune gRPC keepalive?", "E1"),
                 surface)
    assert "couldn't find this in the docs" in surface.final.text
    assert DOCS_LABEL not in surface.final.text
    assert "A person from the team will need to help." in surface.final.text


async def test_without_a_key_greetings_and_an_empty_index_get_their_own_replies(
    store: Store, tmp_path: Path
) -> None:
    r = responder(store, None)
    empty = RecordingSurface()
    await answer(r, ask("how do I rotate a key?", "E1"), empty)
    assert "I have no docs to look in yet" in empty.final.text  # not "found nothing"
    await r.knowledge.index_folder(docs(tmp_path))
    hello = RecordingSurface()
    await answer(r, ask("hello!", "E2"), hello)
    assert hello.final.text.startswith("Hi!") and "ask me a question" in hello.final.text
    thanks = RecordingSurface()
    await answer(r, ask("thank you, that helped", "E3"), thanks)
    assert thanks.final.text.startswith("Glad it helped!")


async def test_without_a_key_a_short_follow_up_is_searched_with_its_thread(
    store: Store, tmp_path: Path
) -> None:
    r = responder(store, None)
    await r.knowledge.index_folder(docs(tmp_path))
    await answer(r, ask("how do I rotate a key?", "E1"), RecordingSurface())
    follow_up = RecordingSurface()
    await answer(r, ask("and billing?", "E2"), follow_up)
    assert DOCS_LABEL in follow_up.final.text and "Billing is separate." in follow_up.final.text
    off_topic = RecordingSurface()  # a question that stands on its own is held to its words
    await answer(r, ask("how do I bake a sourdough bread at home?", "E3"), off_topic)
    assert "couldn't find this in the docs" in off_topic.final.text
    assert DOCS_LABEL not in off_topic.final.text


async def test_when_the_model_is_unreachable_the_docs_still_help(
    store: Store, tmp_path: Path
) -> None:
    async with FakeAnthropic() as fake:
        fake.script(*[Fail(529, "overloaded_error") for _ in range(8)])
        r = responder(store, fake)
        await r.knowledge.index_folder(docs(tmp_path))
        surface = RecordingSurface()
        await answer(r, ask("how do I rotate a key?", "E1"), surface)
        await r.llm.aclose()  # type: ignore[union-attr]
    text = surface.final.text
    assert text.startswith("⚠️ The AI service is unavailable right now")
    assert DOCS_LABEL in text and "https://docs.acme.test/keys#rotate" in text
