"""Finding a Discord reply again after a restart (see Responder.resume).

A channel message, thread message or DM reply continues in the messages it had. An /ask
reply continues as a message in its channel (in a DM when it was private): while the
interaction token lives (15 minutes) its response is pointed there and its followups are
removed, so the asker sees one answer; after that only the channel message can be written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import cast

import discord

from bot.adapters.discord.pages import NOTE_CONTINUED
from bot.adapters.discord.replies import Replies
from bot.adapters.discord.surface import (
    CHANNEL_PLACE,
    INTERACTION_PLACE,
    MessageSurface,
    channel_id,
)
from bot.conversation import PageRef, Place
from bot.surface import Surface

log = logging.getLogger(__name__)

TOKEN_LIFE = 15 * 60.0  # seconds an interaction token can edit its response
TOKEN_MARGIN = 30.0  # leave this much of it unused: a write near the end may be refused
ORIGINAL = "@original"


async def restore(
    client: discord.Client, replies: Replies, place: Place, pages: tuple[PageRef, ...]
) -> Surface | None:
    """A surface that finishes a journaled reply, or None when it is not a Discord one."""
    if place.kind == CHANNEL_PLACE:
        channel = client.get_partial_messageable(int(place.get("channel")))
        return _in_channel(replies, channel, place.get("asker"), pages)
    if place.kind == INTERACTION_PLACE:
        return await _after_interaction(client, replies, place, pages)
    return None


def _in_channel(
    replies: Replies, channel: discord.abc.Messageable, asker: str, pages: tuple[PageRef, ...]
) -> MessageSurface:
    surface = replies.message_surface(channel, channel_id(channel), int(asker or 0))
    surface.adopt(pages)
    return surface


async def _after_interaction(
    client: discord.Client, replies: Replies, place: Place, pages: tuple[PageRef, ...]
) -> Surface:
    # No pages: deferred ("thinking…") but nothing shown yet, or journaled during a stop.
    in_interaction = not pages or pages[0].id == ORIGINAL
    if in_interaction and time.time() - float(place.get("deferred_at") or 0) < (
        TOKEN_LIFE - TOKEN_MARGIN
    ):
        await _point_elsewhere(client, place, pages)
    channel = await _continuation_channel(client, place)
    # Pages already handed over to the channel are continued; interaction pages are not.
    return _in_channel(replies, channel, place.get("user"), () if in_interaction else pages)


async def _point_elsewhere(
    client: discord.Client, place: Place, pages: tuple[PageRef, ...]
) -> None:
    """Leave a pointer in the interaction's response and remove its followups (best effort)."""
    webhook = discord.Webhook.partial(int(place.get("application")), place.get("token"),
                                      client=client)
    with contextlib.suppress(discord.HTTPException):
        # "@original" addresses the interaction's response, as Discord's API documents.
        await webhook.edit_message(cast(int, ORIGINAL), content=NOTE_CONTINUED)
        for page in pages[1:]:
            await webhook.delete_message(int(page.id))


async def _continuation_channel(client: discord.Client, place: Place) -> discord.abc.Messageable:
    if place.get("private") or not place.get("channel"):
        user = await client.fetch_user(int(place.get("user")))
        return await user.create_dm()
    guild = place.get("guild")
    return client.get_partial_messageable(int(place.get("channel")),
                                          guild_id=int(guild) if guild else None)
