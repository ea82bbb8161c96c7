"""Discord Surfaces: a reply streamed into channel messages, or into an interaction's response.

Each reply is a list of pages (Discord messages of at most 2,000 characters) that a
PageWriter (pages.py) keeps showing the newest text within the bucket's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import discord

from bot.adapters.discord.buttons import reply_view
from bot.adapters.discord.pacing import Clock, WriteBudget
from bot.adapters.discord.pages import (
    NOTE_CONTINUED,
    SLOW_WRITE,
    ChannelPages,
    Interaction,
    InteractionPages,
    PageWriter,
)
from bot.conversation import PageRef, Place
from bot.formatting import neutralise_discord
from bot.surface import Ahead, Snapshot

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
TYPING_RENEWALS = 90  # at most 12 minutes of "typing…" before any text
TOKEN_ERRORS = frozenset({10015, 50027})  # Unknown Webhook, Invalid Webhook Token
CHANNEL_PLACE = "discord-channel"
INTERACTION_PLACE = "discord-interaction"
Continuation = Callable[[], Awaitable[tuple[discord.abc.Messageable, WriteBudget]]]


def safe_mentions(asker_id: int | None) -> discord.AllowedMentions:
    """Never @everyone, @here or roles; only the asker may be pinged (and a reply's author)."""
    users: list[discord.abc.Snowflake] | bool = (
        [discord.Object(asker_id)] if asker_id is not None else False
    )
    return discord.AllowedMentions(everyone=False, roles=False, users=users, replied_user=True)


def channel_id(channel: discord.abc.Messageable) -> int:
    """The id of a channel, thread, DM or partial messageable."""
    ident = getattr(channel, "id", None)
    if not isinstance(ident, int):
        raise TypeError("a Discord channel without an id")
    return ident


def partial_message(channel: discord.abc.Messageable, message_id: int) -> discord.PartialMessage:
    """A message known only by its id, which can still be edited and deleted."""
    return discord.PartialMessage(channel=channel, id=message_id)  # type: ignore[arg-type]


def is_token_error(error: Exception) -> bool:
    """The interaction token is gone (expired or unknown): only channel messages remain."""
    return isinstance(error, discord.HTTPException) and error.code in TOKEN_ERRORS


class _DiscordText:
    """What both Discord surfaces share: the message limit, pacing from their writer's
    budget, and mention-safe text counted in characters."""

    limit = MESSAGE_LIMIT
    writer: PageWriter

    def interval(self) -> float:
        return self.writer.budget.interval()

    def render(self, markdown: str) -> str:
        return neutralise_discord(markdown)

    def size(self, text: str) -> int:
        return len(text)


class ChannelTyping:
    """The bot's "typing…" in one channel. One trigger shows it to everyone there for about
    10 s, so every reply in the channel shares it instead of each posting its own (the typing
    route has its own rate limit)."""

    def __init__(
        self, channel: discord.abc.Messageable, every: float, clock: Clock = time.monotonic
    ) -> None:
        self.channel = channel
        self.every = every
        self.clock = clock
        self.shown_at = -math.inf

    async def show(self) -> None:
        """Trigger typing unless a reply here triggered it less than `every` seconds ago."""
        now = self.clock()
        if now - self.shown_at < self.every:
            return
        self.shown_at = now
        await self.channel.typing()


class MessageSurface(_DiscordText):
    """A reply as channel messages: typing indicator first, then paced edits in place.

    While nothing is shown yet (the model may think for longer than typing lasts) the
    channel's typing indicator is kept alive.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        budget: WriteBudget,
        typing: ChannelTyping,
        asker_id: int | None,
        reply_to: discord.MessageReference | None = None,
        slow_write: float = SLOW_WRITE,
    ) -> None:
        self.channel = channel
        self.asker_id = asker_id
        pages = ChannelPages(channel, safe_mentions(asker_id), reply_to)
        self.writer = PageWriter(pages, budget, slow=slow_write)
        self.typing = typing
        self._renewal: asyncio.Task[None] | None = None
        self._started = False
        self._left = False

    def where(self) -> Place:
        reply_to = self.writer.target.reply_to if isinstance(self.writer.target, ChannelPages) \
            else None
        return Place.of(CHANNEL_PLACE, channel=str(channel_id(self.channel)),
                        asker=str(self.asker_id or ""),
                        reply_to=str(reply_to.message_id or "") if reply_to else "")

    def pages(self) -> tuple[PageRef, ...]:
        assert isinstance(self.writer.target, ChannelPages)
        messages = self.writer.target.messages
        return tuple(PageRef(str(message.id), text)
                     for message, text in zip(messages, self.writer.shown, strict=False))

    def adopt(self, pages: tuple[PageRef, ...]) -> None:
        """Continue in messages that already exist (a reply a restart cut off)."""
        assert isinstance(self.writer.target, ChannelPages)
        target = self.writer.target
        target.messages = [partial_message(self.channel, int(page.id)) for page in pages]
        self.writer.shown = [page.text for page in pages]

    async def start(self) -> None:
        """Show typing (later calls do nothing), and count this reply in the channel."""
        if self._started:
            return
        self._started = True
        self.writer.budget.join()
        await self.typing.show()
        self._renewal = asyncio.create_task(self._keep_typing())

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool:
        shown = await self.writer.partial(snapshot.pages, ahead)
        if self.writer.shown:  # text is visible: "typing…" has done its job
            self._stop_typing()
        return shown

    async def finish(self, snapshot: Snapshot) -> None:
        try:  # "typing…" goes on while a reply with nothing shown yet waits for its turn
            await self.writer.final(snapshot.pages, reply_view(snapshot.reply_id))
        finally:
            self.discard()

    def discard(self) -> None:
        """This reply no longer streams (finished, or never submitted)."""
        self._stop_typing()
        if self._started and not self._left:
            self._left = True
            self.writer.budget.leave()

    async def _keep_typing(self) -> None:
        for _ in range(TYPING_RENEWALS):
            await asyncio.sleep(self.typing.every)
            try:
                await self.typing.show()
            except Exception as error:  # a lost "typing…" never matters enough to stop for
                log.info("could not renew typing: %s", type(error).__name__)

    def _stop_typing(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None


class AskSurface(_DiscordText):
    """An /ask reply: deferred at once, then the original response and followups edited.

    Near the end of the interaction token's 15 minutes the rest of the answer continues as
    channel messages (in a DM when the answer was private).
    """

    def __init__(
        self,
        interaction: Interaction,
        private: bool,
        budget: WriteBudget,
        continuation: Continuation,
        handoff_after: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.interaction = interaction
        self.private = private
        self.mentions = safe_mentions(interaction.user.id)
        pages = InteractionPages(interaction, private, self.mentions)
        self.writer = PageWriter(pages, budget, shown=[""])  # the deferred response is page 0
        self.continuation = continuation
        self.clock = clock
        self.handoff_at = clock() + handoff_after
        self.deferred_at = time.time()  # the interaction token lives 15 minutes from here
        self.offset = 0  # pages before this stay in the interaction; the rest go to the channel
        self._budgets: list[WriteBudget] = []
        self._handed_over = False

    def awaits_reply(self) -> bool:
        return True  # deferred at once: "thinking…" stays until the response is edited

    def where(self) -> Place:
        interaction = self.interaction
        return Place.of(
            INTERACTION_PLACE, application=str(interaction.application_id),
            token=interaction.token, private="1" if self.private else "",
            channel=str(interaction.channel_id or ""), guild=str(interaction.guild_id or ""),
            user=str(interaction.user.id), deferred_at=f"{self.deferred_at:.0f}",
        )

    def pages(self) -> tuple[PageRef, ...]:
        target = self.writer.target
        if isinstance(target, InteractionPages):
            ids = target.ids()
        else:  # handed over: the pages in the interaction are done; the channel ones stream
            assert isinstance(target, ChannelPages)
            ids = [str(message.id) for message in target.messages]
        return tuple(PageRef(i, text) for i, text in zip(ids, self.writer.shown, strict=False))

    async def start(self) -> None:
        """Defer (ephemeral when private): Discord shows "thinking…" well within its 3 s."""
        if self._budgets:
            return
        self._join(self.writer.budget)
        await self.interaction.response.defer(ephemeral=self.private, thinking=True)

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool:
        if self._hand_over_due():  # a write of its own: `ahead` goes before it
            if ahead is not None:
                go, ahead = await ahead(), None
                if not go:
                    return True
            await self._hand_over()
        try:
            return await self.writer.partial(snapshot.pages[self.offset :], ahead)
        except discord.HTTPException as error:
            if not is_token_error(error):
                raise
            await self._hand_over()
            return True

    async def finish(self, snapshot: Snapshot) -> None:
        try:
            await self._hand_over_if_due()
            view = reply_view(snapshot.reply_id)
            try:
                await self.writer.final(self._pages(snapshot), view)
            except discord.HTTPException as error:
                if not is_token_error(error) or self._handed_over:
                    raise
                await self._hand_over()
                await self.writer.final(self._pages(snapshot), view)
        finally:
            self.discard()

    def discard(self) -> None:
        budgets, self._budgets = self._budgets, []
        for budget in budgets:
            budget.leave()

    def _pages(self, snapshot: Snapshot) -> Sequence[str]:
        return snapshot.pages[min(self.offset, len(snapshot.pages) - 1) :]

    def _join(self, budget: WriteBudget) -> None:
        budget.join()
        self._budgets.append(budget)

    def _hand_over_due(self) -> bool:
        return not self._handed_over and self.clock() >= self.handoff_at

    async def _hand_over_if_due(self) -> None:
        if self._hand_over_due():
            await self._hand_over()

    async def _hand_over(self) -> None:
        """Leave a pointer in the page being streamed and continue from it in the channel."""
        self._handed_over = True
        self.offset = max(len(self.writer.shown) - 1, 0)
        with contextlib.suppress(discord.HTTPException):
            await self.writer.replace(self.offset, NOTE_CONTINUED)
        channel, budget = await self.continuation()
        self._join(budget)
        self.writer = PageWriter(ChannelPages(channel, self.mentions), budget)
        log.info("interaction token near expiry; the answer continues as channel messages")
