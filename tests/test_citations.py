"""Citations: the model cites [n], the code keeps only passages it gave and lists them."""

from __future__ import annotations

from pathlib import Path

from bot.citations import cited, sources_line
from bot.conversation import ConversationKey, Passage, Platform
from bot.formatting import neutralise_discord
from bot.mrkdwn import to_mrkdwn
from bot.store import Store
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.surfaces import RecordingSurface
from tests.test_responder import answer, ask, responder

KEYS = Passage("keys.md", "API keys › Rotating a key", "Press Rotate.",
               url="https://docs.acme.test/keys#rotate")
SSO = Passage("sso.md", "Guide › Security › Single sign-on", "Admin > Security.")


def test_citations_to_passages_not_given_are_removed() -> None:
    text, used = cited("Press Rotate [2]. Then wait [9][1]. See [0] and [2].", 2)
    assert text == "Press Rotate [2]. Then wait[1]. See and [2]."
    assert used == [2, 1]
    assert cited("No citations here.", 3) == ("No citations here.", [])


def test_sources_line_per_platform() -> None:
    passages = [KEYS, SSO]
    slack = to_mrkdwn(sources_line(passages, [1, 2], Platform.SLACK))
    assert slack == ("*Sources:* [1] <https://docs.acme.test/keys#rotate|API keys › Rotating a "
                     "key> · [2] Security › Single sign-on (sso.md)")
    discord = neutralise_discord(sources_line(passages, [1], Platform.DISCORD))
    # angle brackets: a masked link whose preview embed is suppressed
    assert discord == ("**Sources:** [1] [API keys › Rotating a key]"
                       "(<https://docs.acme.test/keys#rotate>)")
    console = sources_line(passages, [2, 1], Platform.CONSOLE)
    assert console == ("Sources: [2] Security › Single sign-on (sso.md) · [1] API keys › "
                       "Rotating a key — https://docs.acme.test/keys#rotate")
    assert sources_line(passages, [], Platform.SLACK) == ""


async def test_the_final_answer_keeps_valid_citations_and_lists_its_sources(
    store: Store, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keys.md").write_text("---\nurl: https://docs.acme.test/keys\n---\n\n# API keys\n\n"
                                  "## Rotating a key {#rotate}\n\nOpen Settings and press "
                                  "Rotate.\n")
    async with FakeAnthropic(delta_interval=0.005) as fake:
        fake.script(Reply(text="Open Settings and press Rotate [1]. It is instant [4]."))
        r = responder(store, fake)
        await r.knowledge.index_folder(docs)
        key = ConversationKey(Platform.DISCORD, "G1", "C1", "T1")
        surface = RecordingSurface()
        await answer(r, ask("how do I rotate a key?", "E1", key), surface)
        await r.llm.aclose()  # type: ignore[union-attr]
    context = fake.requests[-1].documentation()
    assert '<passage index="1" source="keys.md"' in context
    assert surface.final.text == (
        "Open Settings and press Rotate [1]. It is instant.\n\n**Sources:** [1] "
        "[API keys › Rotating a key](<https://docs.acme.test/keys#rotate>)"
    )
