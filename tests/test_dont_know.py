""""I don't know" instead of invention: the gate and the model's marker lead to one honest
reply, the marker is never shown (not even mid-stream), and every such question is noted."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.conversation import ConversationKey, Platform
from bot.dont_know import MARKER, MarkerWatch, marked
from bot.prompts import PromptBook
from bot.store import Store
from bot.streaming import TYPING_MARKER
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.surfaces import RecordingSurface
from tests.test_responder import answer, ask, responder

DOCS = {"keys.md": "---\nurl: https://docs.acme.test/keys\n---\n\n# API keys\n\n## Rotating "
                   "a key {#rotate}\n\nOpen Settings > API keys and press Rotate.\n",
        "sso.md": "# Single sign-on\n\n## Configure SSO\n\nSSO lives under Admin > Security.\n"}


def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


@given(st.lists(st.integers(1, 5), min_size=1, max_size=12), st.text(max_size=40))
def test_the_marker_is_never_let_through_however_it_is_split(cuts: list[int], rest: str) -> None:
    text, watch, shown, at = MARKER + rest, MarkerWatch(), "", 0
    for size in cuts:
        shown += watch.feed(text[at : at + size])
        at += size
    shown += watch.feed(text[at:]) + watch.flush()
    assert shown == "" and watch.declined


def test_an_answer_that_only_starts_like_the_marker_is_shown_whole() -> None:
    watch = MarkerWatch()
    assert watch.feed("[[NOT") == ""  # could still become the marker: held
    assert watch.feed(" quite] the rest") == "[[NOT quite] the rest"
    assert watch.feed(" more") == " more" and not watch.declined
    short = MarkerWatch()
    assert short.feed("[") == "" and short.flush() == "["  # the stream ended: it was text


def test_the_prompt_documents_the_marker() -> None:
    assert MARKER in PromptBook.load().system


async def test_the_model_s_marker_becomes_the_honest_reply_and_is_never_shown(
    store: Store, tmp_path: Path
) -> None:
    async with FakeAnthropic(delta_interval=0.02) as fake:
        fake.script(Reply(text=MARKER + " The docs say nothing about SAML metadata URLs."))
        r = responder(store, fake)
        await r.knowledge.index_folder(docs(tmp_path))
        surface = RecordingSurface()
        # On the docs' subject in the docs' words, so the gate lets it through and only the
        # model can tell the passages do not answer it.
        await answer(r, ask("how do I configure SSO for the Admin team?", "E1"),
                     surface)
        await r.llm.aclose()  # type: ignore[union-attr]
    seen = [page for update in surface.updates for page in update.pages]
    assert not any("NOT_IN" in page or "[[" in page for page in seen)  # never, mid-stream
    text = surface.final.text
    assert text.startswith("I couldn't find the answer to this in our docs")
    assert "Single sign-on › Configure SSO (sso.md)" in text  # the closest page
    assert "Please contact the team directly." in text and MARKER not in text
    [(question, reason, _, closest)] = await store.docs_gaps()
    assert reason == "model" and "Admin team" in question
    assert json.loads(closest)[0][0] == "sso.md"


async def test_the_gate_answers_honestly_without_asking_the_model(
    store: Store, tmp_path: Path
) -> None:
    async with FakeAnthropic() as fake:
        r = responder(store, fake)
        await r.knowledge.index_folder(docs(tmp_path))
        unanswerable = RecordingSurface()
        await answer(r, ask("Which Kubernetes ingress annotations tune gRPC keepalive?", "E1"),
                     unanswerable)
        assert fake.requests == []  # no model call for a question the docs cannot answer
        key = ConversationKey(Platform.SLACK, "T1", "C1", "200.1")
        answerable = RecordingSurface()
        await answer(r, ask("how do I rotate a key?", "E2", key), answerable)
        thanks = RecordingSurface()
        await answer(r, ask("thanks!", "E3", key), thanks)  # no search words: not gated
        await r.llm.aclose()  # type: ignore[union-attr]
    assert unanswerable.final.text.startswith("I couldn't find the answer")
    assert TYPING_MARKER not in unanswerable.final.text
    assert len(fake.requests) == 2
    assert "Open Settings > API keys" in fake.requests[0].documentation()
    [(question, reason, confidence, _)] = await store.docs_gaps()
    assert reason == "gate" and "Kubernetes" in question and confidence < 0.2


def test_a_finished_answer_is_read_by_one_rule_for_the_bot_and_eval_answers() -> None:


    def read(text: str) -> str:
        watch = MarkerWatch()
        watch.feed(text)
        watch.flush()
        return marked(watch, text)

    assert read("[[NOT_IN_DOCS]] The docs do not say.") == "declined"
    assert read("Let me check. [[NOT_IN_DOCS]]") == "declined"  # late, still meant
    assert read("[[HANDOFF]]") == "wants_person"
    assert read("Sure, I'll get someone. [[HANDOFF]]") == "wants_person"
    assert read("Press Export [1].") == ""
