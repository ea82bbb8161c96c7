"""Handovers without a platform: the words after "I couldn't find this", the summary's
truthfulness, silence while a person handles a thread, giving it back; and where the bot
answers at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.conversation import Answer, Arrival, ConversationKey, Incoming, Platform, Usage
from bot.handoff import ALREADY_HANDLED, GIVEN_BACK, NOT_YOURS, HandoffSummary
from bot.handovers import Handovers, key_of
from bot.policy import ReplyPolicy
from bot.store import Store
from bot.surface import Posted
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.surfaces import RecordingSurface
from tests.test_dont_know import docs
from tests.test_responder import answer, ask, responder

KEY = ConversationKey(Platform.SLACK, "T1", "C1", "100.1")


class FakeEscalation:
    def __init__(self, lands: bool = True) -> None:
        self.lands = lands
        self.posted: list[HandoffSummary] = []
        self.said: list[tuple[ConversationKey, str]] = []
        self.marked: list[tuple[str, str]] = []

    @property
    def configured(self) -> bool:
        return True

    async def post(self, summary: HandoffSummary) -> Posted | None:
        self.posted.append(summary)
        return Posted('{"channel": "C0ESC", "ts": "1.0"}', "https://chat.test/t/1") if (
            self.lands) else None

    async def say(self, key: ConversationKey, text: str) -> None:
        self.said.append((key, text))

    def is_private(self, key: ConversationKey) -> bool:
        return key.channel.startswith("D")

    async def mark_resolved(self, summary_place: str, resolver: str) -> None:
        self.marked.append((summary_place, resolver))


@pytest.fixture
def store(any_store: Store) -> Store:
    """Every test here that takes `store` runs on SQLite and on PostgreSQL."""
    return any_store


def said(text: str, event: str, author: str) -> Incoming:
    return Incoming(key=KEY, author_id=author, text=text, event_id=event,
                    arrival=Arrival.FOLLOW_UP)


async def test_yes_after_i_could_not_find_it_reaches_the_model_which_hands_over(
    store: Store, tmp_path: Path
) -> None:
    async with FakeAnthropic() as fake:
        fake.script(Reply(text="[[HANDOFF]]"))
        r = responder(store, fake)
        await r.knowledge.index_folder(docs(tmp_path))
        first = RecordingSurface()
        await answer(r, ask("Which Kubernetes ingress annotations tune gRPC keepalive?", "E1"),
                     first)
        assert first.final.text.startswith("I couldn't find the answer")
        assert fake.requests == []  # the gate answered
        reply = RecordingSurface()
        await answer(r, ask("oui, une personne s'il vous plaît", "E2"), reply)
        await r.llm.aclose()  # type: ignore[union-attr]
    [request] = fake.requests  # the follow-up went to the model, with no passages
    assert "No passage of the team's documentation matched" in request.documentation()
    assert reply.final.text == ("A person from the team can help with this. "
                                "Please contact the team directly.")
    assert not reply.final.reply_id  # no buttons under a handover note


async def test_a_summary_that_did_not_land_is_never_called_a_notification(store: Store) -> None:
    handovers = Handovers(store)
    handovers.escalations[Platform.SLACK] = FakeEscalation(lands=False)
    told = await handovers.hand_over(KEY, "UASK", "Ada", "button")
    assert told.startswith("I tried to reach the team but couldn't just now.")
    assert await handovers.rows.open_for(KEY) is None  # nobody told: the bot stays on


async def test_while_a_person_handles_it_messages_are_kept_quietly_then_it_is_given_back(
    store: Store,
) -> None:
    escalation = FakeEscalation()
    handovers = Handovers(store)
    handovers.escalations[Platform.SLACK] = escalation
    told = await handovers.hand_over(KEY, "UASK", "Ada", "words")
    assert told.startswith("I've asked a person from the team to take over")
    assert await handovers.hand_over(KEY, "UASK", "Ada", "button") == ALREADY_HANDLED
    assert len(escalation.posted) == 1
    assert await handovers.kept_quiet(said("Sent today.", "E1", "UAGENT"))
    assert await handovers.kept_quiet(said("thanks", "E2", "UASK"))
    assert await handovers.kept_quiet(said("thanks", "E2", "UASK"))  # a redelivery: kept once
    rows = (await store.engine.execute("SELECT role, text FROM messages ORDER BY id")).rows
    assert rows == [("agent", "Sent today."), ("user", "thanks")]
    assert await handovers.give_back_summary('{"channel": "C0ESC", "ts": "1.0"}', "UAGENT") == KEY
    assert escalation.said == [(KEY, GIVEN_BACK)]
    assert escalation.marked == [('{"channel": "C0ESC", "ts": "1.0"}', "UAGENT")]
    assert not await handovers.kept_quiet(said("more?", "E3", "UASK"))
    assert not await handovers.give_back(KEY)  # a second ✅ does nothing


def test_a_conversation_id_gives_its_key_back() -> None:
    assert key_of(KEY.id) == KEY
    with pytest.raises(ValueError):
        key_of("slack:T1")


@pytest.mark.parametrize(
    ("key", "arrival", "allowed"),
    [
        (ConversationKey(Platform.SLACK, "T1", "C1", "1"), Arrival.MENTION, True),
        (ConversationKey(Platform.SLACK, "T1", "C9", "1"), Arrival.MENTION, False),
        (ConversationKey(Platform.SLACK, "T1", "D9", "1"), Arrival.DM, True),  # DMs: team rule
        (ConversationKey(Platform.SLACK, "T9", "D9", "1"), Arrival.DM, False),
        (ConversationKey(Platform.DISCORD, "@dm", "55", "1"), Arrival.DM, True),  # no server
        (ConversationKey(Platform.DISCORD, "G9", "C1", "1"), Arrival.MENTION, False),
        (ConversationKey(Platform.CONSOLE, "local", "you", "1"), Arrival.DM, True),
    ],
)
def test_where_the_bot_answers(key: ConversationKey, arrival: Arrival, allowed: bool) -> None:
    policy = ReplyPolicy("claude-haiku-5-5", 1024, 1000, 4,
                         allowed_channels=frozenset({"C1"}),
                         allowed_workspaces=frozenset({"T1", "G1"}))
    incoming = Incoming(key=key, author_id="U1", text="q", event_id="E", arrival=arrival)
    assert policy.answers_in(incoming) is allowed


async def test_a_vote_before_the_reply_is_recorded_is_kept_and_learns_the_model(
    store: Store,
) -> None:
    question = await store.record_question(ask("how do I export?", "E1"), 5)
    assert question is not None
    assert await store.handoffs.vote(question.message_id, "slack:U1", -1)  # a quick click
    assert not await store.handoffs.vote(999, "slack:U1", 1)  # no such reply
    await store.record_answer(ask("how do I export?", "E1").key, question, Answer(
        "Use Export.", "claude-haiku-5-5", "end_turn", Usage(), 0.0,
        sources=(("Exports", "https://docs.test/export"),)), 5, 100.0)
    rows = (await store.engine.execute("SELECT vote, model, sources FROM feedback")).rows
    assert rows == [(-1, "claude-haiku-5-5", '[["Exports", "https://docs.test/export"]]')]


async def test_a_marker_a_model_puts_late_is_never_left_in_the_final_text(store: Store) -> None:
    async with FakeAnthropic() as fake:
        fake.script(Reply(text="Let me check that for you. [[HANDOFF]]"),
                    Reply(text="Here it is. [[NOT_IN_DOCS]]"))
        r = responder(store, fake)
        late_handoff, late_marker = RecordingSurface(), RecordingSurface()
        await answer(r, ask("I need a human", "E1"), late_handoff)
        key = ConversationKey(Platform.SLACK, "T1", "C1", "300.1")
        await answer(r, ask("what is the plan?", "E2", key), late_marker)
        await r.llm.aclose()  # type: ignore[union-attr]
    assert late_handoff.final.text == ("A person from the team can help with this. "
                                       "Please contact the team directly.")
    assert late_marker.final.text.startswith("I couldn't find the answer")
    assert "[[" not in late_marker.final.text


async def test_a_question_waiting_behind_a_handover_is_not_answered(store: Store) -> None:
    async with FakeAnthropic() as fake:
        fake.script(Reply(text="[[HANDOFF]]", first_token_delay=0.3), Reply(text="An answer."))
        r = responder(store, fake)
        r.handovers.escalations[Platform.SLACK] = FakeEscalation()
        first, second = RecordingSurface(), RecordingSurface()
        key = ConversationKey(Platform.SLACK, "T1", "C1", "400.1")
        one = await r.submit(ask("a human please", "E1", key), first)
        two = await r.submit(ask("and my invoice?", "E2", key), second)  # queued behind it
        assert one is not None and two is not None
        await asyncio.wait_for(asyncio.gather(one, two), 10)
        await r.llm.aclose()  # type: ignore[union-attr]
    assert first.final.text.startswith("I've asked a person from the team to take over")
    assert second.final.text == ALREADY_HANDLED
    assert len(fake.requests) == 1


async def test_only_the_person_who_started_a_thread_can_hand_it_over(store: Store) -> None:
    handovers = Handovers(store)
    handovers.escalations[Platform.SLACK] = FakeEscalation()
    question = await store.record_question(ask("where is my refund?", "E1"), 5)
    assert question is not None
    key = ask("x", "E0").key
    assert await handovers.hand_over(key, "UBYSTANDER", "Bo", "words") == NOT_YOURS
    assert await handovers.rows.open_for(key) is None
    told = await handovers.hand_over(key, "U1", "Ada", "words")  # ask() writes as U1
    assert told.startswith("I've asked a person")


async def test_a_late_not_in_docs_marker_gives_the_honest_reply(store: Store) -> None:
    async with FakeAnthropic() as fake:
        fake.script(Reply(text="Hmm, not sure. [[NOT_IN_DOCS]]"))
        r = responder(store, fake)
        surface = RecordingSurface()
        await answer(r, ask("what is the plan?", "E1"), surface)
        await r.llm.aclose()  # type: ignore[union-attr]
    assert surface.final.text.startswith("I couldn't find the answer to this in our docs")
    [(_, reason, _, _)] = await store.docs_gaps()
    assert reason == "model"


def test_a_marker_cut_off_at_the_end_is_not_shown() -> None:
    from bot.citations import Grounding

    grounding = Grounding([], [], Platform.SLACK)
    assert grounding.closing("All done. [[HAND")[0] == "All done."
    assert grounding.closing("Use [[links]] here.")[0] == "Use [[links]] here."
