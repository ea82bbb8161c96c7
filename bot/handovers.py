"""Handovers and feedback, joined to the store and each platform's escalation channel.

The responder asks here whether a conversation is with a person (then it stays quiet and the
message is kept as a turn), and hands a conversation over when the model recognises the
request; adapters call `hand_over`, `give_back` and `vote` for buttons, commands and ✅.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.conversation import ConversationKey, Incoming, Platform
from bot.handoff import (
    ALREADY_HANDLED,
    DEFAULT_CONTACT,
    GIVEN_BACK,
    NOT_YOURS,
    HandoffSummary,
    offer,
    told_asker,
)
from bot.handoff_rows import HandoffRows
from bot.store import Store
from bot.surface import Escalation

log = logging.getLogger(__name__)


@dataclass
class Handovers:
    store: Store
    contact: str = DEFAULT_CONTACT
    escalations: dict[Platform, Escalation] = field(default_factory=dict)

    @property
    def rows(self) -> HandoffRows:
        return self.store.handoffs

    def ready(self, platform: Platform) -> bool:
        """Whether this platform has an escalation channel to post summaries to."""
        escalation = self.escalations.get(platform)
        return escalation is not None and escalation.configured

    def offer(self, platform: Platform) -> str:
        return offer(self.ready(platform), self.contact)

    async def kept_quiet(self, incoming: Incoming, tokens: int = 0) -> bool:
        """True when a person handles this conversation: the message is kept, not answered.

        The asker's messages are kept as questions, everyone else's as the team's turns;
        neither counts against the hourly cap.
        """
        handoff = await self.rows.open_for(incoming.key)
        if handoff is None:
            return False
        role = "user" if incoming.author_id == handoff.asker_id else "agent"
        if await self.store.record_question(incoming, tokens, role=role, counted=False):
            log.info("kept a message from the %s in %s (a person handles it)",
                     "asker" if role == "user" else "team", incoming.key.id)
        return True

    async def hand_over(self, key: ConversationKey, asker_id: str, asker_name: str,
                        reason: str, request: str = "", question_id: int = 0) -> str:
        """Open the handover, post the summary, and return what the asker should read.

        `request` is the message that asked for a person (words); `question_id` the question
        whose answer carried the button that was pressed.
        """
        # The thread is its asker's (whoever started it): only they hand it over, and while a
        # person handles it their messages stay theirs and everyone else's are the team's.
        started_by = await self.rows.first_asker(key)
        if started_by and started_by != asker_id:
            return NOT_YOURS
        handoff_id = await self.rows.start(key, asker_id, reason)
        if handoff_id is None:
            return ALREADY_HANDLED
        _, question, answer, sources = await self.rows.last_exchange(key, question_id)
        if not question:  # the very first message asked for a person
            question, request = request, ""
        escalation = self.escalations.get(key.platform)
        private = escalation is not None and escalation.is_private(key)
        summary = HandoffSummary(key, asker_id, asker_name, question, answer,
                                 tuple((str(s[0]), str(s[1])) for s in sources), reason,
                                 request, private)
        where = None
        try:
            if escalation is not None and escalation.configured:
                try:
                    where = await escalation.post(summary)
                except Exception as error:  # the asker is told the truth either way
                    log.warning("could not post the handover summary: %s",
                                type(error).__name__)
        finally:  # even when cancelled: a thread silenced with no summary stays silent
            if where is not None:
                await asyncio.shield(self.rows.posted(handoff_id, where.place,
                                                      where.thread_link))
            else:  # nobody was told, so nobody would give the thread back: the bot stays on
                await asyncio.shield(self.rows.not_posted(handoff_id))
        log.info("handed %s to a person (%s; summary %s)", key.id, reason,
                 "posted" if where is not None else "not posted")
        configured = escalation is not None and escalation.configured
        return told_asker(where is not None, configured, self.contact, private)

    async def hand_over_reply(self, reply_id: int, clicker_id: str, clicker_name: str) -> str:
        """"Talk to a person" pressed under an answer: the thread goes to the team if the
        person who asked pressed it."""
        conversation = await self.rows.conversation_of(reply_id)
        if conversation is None:
            return NOT_YOURS
        return await self.hand_over(key_of(conversation), clicker_id, clicker_name, "button",
                                    question_id=reply_id)

    async def give_back(self, key: ConversationKey, resolver: str = "") -> bool:
        """A person resolved the conversation: the bot answers there again, says so, and
        the summary shows who resolved it."""
        handoff = await self.rows.open_for(key)
        if handoff is None or not await self.rows.close(handoff.id, "person"):
            return False
        escalation = self.escalations.get(key.platform)
        if escalation is not None:
            try:
                await escalation.say(key, GIVEN_BACK)
                if handoff.summary_place:
                    await escalation.mark_resolved(handoff.summary_place, resolver)
            except Exception as error:
                log.warning("could not say the thread is given back: %s", type(error).__name__)
        return True

    async def give_back_summary(self, summary_place: str, resolver: str = ""
                                ) -> ConversationKey | None:
        """A ✅ on the summary in the escalation channel: the conversation it gave back."""
        conversation = await self.rows.by_summary(summary_place)
        if conversation is None:
            return None
        key = key_of(conversation)
        return key if await self.give_back(key, resolver) else None


def key_of(conversation_id: str) -> ConversationKey:
    """The key back from its id ("slack:T1:C1:1700000000.000100")."""
    platform, workspace, channel, thread = conversation_id.split(":", 3)
    return ConversationKey(Platform(platform), workspace, channel, thread)
