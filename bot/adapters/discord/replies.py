"""What every Discord reply needs besides its trigger: a paced surface, an owned task, the DM
session it belongs to, and the attachments it carries."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import aiohttp
import discord

from bot.adapters.discord.events import (
    AttachmentFacts,
    attachment_note,
    dm_key,
    dm_session,
)
from bot.adapters.discord.pacing import ChannelBudgets, WriteBudget
from bot.adapters.discord.pages import SLOW_WRITE, Interaction
from bot.adapters.discord.surface import AskSurface, ChannelTyping, MessageSurface
from bot.conversation import ConversationKey, Image, Incoming, Platform, checked_image
from bot.inbound import Prepare, Prepared
from bot.ports import Ports
from bot.surface import Surface

log = logging.getLogger(__name__)
TYPING_IDLE = 60.0  # seconds after which a channel's typing indicator is forgotten


@dataclass(frozen=True)
class DiscordTiming:
    """Discord's limits as the bot plans for them (tests shrink them)."""

    channel_writes: int = 5  # message writes per channel...
    channel_window: float = 5.0  # ...per this many seconds
    webhook_writes: int = 5  # interaction webhook writes per token...
    webhook_window: float = 2.0  # ...per this many seconds
    handoff_after: float = 14 * 60.0  # interaction tokens live 15 minutes
    typing_every: float = 8.0  # "typing…" lasts about 10 s per trigger
    close_timeout: float = 10.0
    slow_write: float = SLOW_WRITE  # a page write still out after this is logged


class DiscordSurface(Surface, Protocol):
    def discard(self) -> None:
        """Stop counting this reply as streaming (it finished or was never submitted)."""
        ...


class Replies:
    """Builds surfaces on shared budgets and owns the reply tasks until they end."""

    def __init__(self, ports: Ports, timing: DiscordTiming) -> None:
        self.ports = ports
        self.timing = timing
        self.channels = ChannelBudgets(timing.channel_writes, timing.channel_window)
        self._typings: dict[int, ChannelTyping] = {}
        self._typings_pruned = time.monotonic()

    def message_surface(
        self,
        channel: discord.abc.Messageable,
        channel_id: int,
        asker_id: int,
        reply_to: discord.MessageReference | None = None,
    ) -> MessageSurface:
        """A reply as messages in `channel`, sharing the channel's write budget."""
        typing = self._typing(channel, channel_id)
        return MessageSurface(channel, self.channels(channel_id), typing, asker_id, reply_to,
                              slow_write=self.timing.slow_write)

    def _typing(self, channel: discord.abc.Messageable, channel_id: int) -> ChannelTyping:
        """The channel's shared typing indicator; ones idle for a minute are dropped (looked
        for once a minute: every support thread is a channel of its own, hundreds at once)."""
        now = time.monotonic()
        if now - self._typings_pruned > TYPING_IDLE:
            self._typings_pruned = now
            for stale in [c for c, t in self._typings.items() if now - t.shown_at > TYPING_IDLE]:
                del self._typings[stale]
        if channel_id not in self._typings:
            self._typings[channel_id] = ChannelTyping(channel, self.timing.typing_every)
        return self._typings[channel_id]

    def ask_surface(self, interaction: Interaction, private: bool) -> AskSurface:
        """A reply in the interaction's response, with its own webhook budget."""
        timing = self.timing
        budget = WriteBudget(timing.webhook_writes, timing.webhook_window,
                             name=f"interaction {interaction.id}")

        async def continuation() -> tuple[discord.abc.Messageable, WriteBudget]:
            channel_id = interaction.channel_id
            if private or channel_id is None:
                dm = await interaction.user.create_dm()
                return dm, self.channels(dm.id)
            channel = interaction.client.get_partial_messageable(
                channel_id, guild_id=interaction.guild_id
            )
            return channel, self.channels(channel_id)

        return AskSurface(interaction, private, budget, continuation, timing.handoff_after)

    async def first_sign(self, surface: DiscordSurface) -> bool:
        """Show the first visible sign; False (nothing more to do) when Discord refused it."""
        try:
            await surface.start()
            return True
        except discord.HTTPException as error:
            # 10062: the interaction expired; 40060: another delivery already answered it.
            log.warning("no first sign (HTTP %s, code %s)", error.status, error.code)
            surface.discard()
            return False

    def take_in(self, event_id: str, queue: str, prepare: Prepare, costly: bool) -> None:
        """Hand one event to the one way in (dedupe, arrival order within `queue`, owned
        task); its reply, if any, goes on in the background."""
        self.ports.inbound.accept(Platform.DISCORD, event_id, queue, prepare, costly)

    async def prepared(
        self, surface: DiscordSurface, question: Callable[[], Awaitable[Incoming]]
    ) -> Prepared | None:
        """The first visible sign, then the question (threads, downloads); None when Discord
        refused the sign. The surface stops counting as streaming if no reply comes of it."""
        if not await self.first_sign(surface):
            return None
        try:
            incoming = await question()
        except BaseException:
            surface.discard()
            raise
        return Prepared(incoming, surface, on_refused=surface.discard)

    async def aclose(self) -> None:
        """Let events being taken in reach the journal, then interrupt replies still
        streaming; each ends with a note while Discord is reachable."""
        await self.ports.inbound.aclose()
        await self.ports.finish_replies(self.timing.close_timeout)

    async def dm_conversation(self, user_id: int, channel_id: int) -> ConversationKey:
        """The DM conversation to continue, or a new one after the idle gap."""
        state, name = self.ports.state, _session_name(user_id)
        current = int(await state.get(name) or "1")
        updated = await self.ports.last_asked(dm_key(channel_id, current))
        idle_hours = self.ports.settings.session_idle_hours
        session = dm_session(current, updated, time.time(), idle_hours)
        if session != current:
            await state.set(name, str(session))
        return dm_key(channel_id, session)

    async def reset_dm(self, user_id: int) -> None:
        """Start a fresh DM conversation for this user (their next DM begins it)."""
        state, name = self.ports.state, _session_name(user_id)
        current = int(await state.get(name) or "1")
        await state.set(name, str(current + 1))

    async def read_attachments(
        self, attachments: Sequence[discord.Attachment]
    ) -> tuple[tuple[Image, ...], tuple[str, ...]]:
        """Images the model can see, and notes naming the attachments it cannot."""
        read = [await _read(attachment) for attachment in attachments]
        images = tuple(item for item in read if isinstance(item, Image))
        return images, tuple(item for item in read if isinstance(item, str))


async def _read(attachment: discord.Attachment) -> Image | str:
    """The attachment as an image block, or a note saying why the model will not see it."""
    facts = AttachmentFacts(attachment.filename, attachment.content_type, attachment.size)
    note = attachment_note(facts)
    if note:
        return note
    try:
        data = await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
        log.warning("could not download an attachment: %s", type(error).__name__)
        return f"{attachment.filename} was attached but could not be downloaded"
    # The declared size was checked before downloading; the bytes themselves decide.
    return attachment_note(replace(facts, size=len(data))) or checked_image(
        attachment.filename, data)


def _session_name(user_id: int) -> str:
    return f"dm_session:{user_id}"  # stored as discord:dm_session:… (see PlatformState)
