"""Pure Discord translation: which messages to answer, conversation keys, attachments, invites.

No I/O here: the adapter extracts plain facts from discord.py objects and these functions
decide, so every rule can be tested with plain values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import discord

from bot.conversation import IMAGE_MEDIA_TYPES, MAX_IMAGE_BYTES, ConversationKey, Platform

DM_WORKSPACE = "@dm"
THREAD_NAME_LIMIT = 100  # Discord rejects longer thread names (50035)
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"
# The API's 5 MB image limit counts the base64 text, so raw bytes get three quarters of it.
IMAGE_LIMIT = MAX_IMAGE_BYTES

# The permissions the bot asks for in its invite, by name (discord.Permissions attributes).
INVITE_PERMISSIONS = (
    "view_channel",
    "send_messages",
    "send_messages_in_threads",
    "create_public_threads",
    "create_private_threads",
    "read_message_history",
    "add_reactions",
    "embed_links",
    "attach_files",
)


class Route(StrEnum):
    """What to do with a message the gateway delivered."""

    IGNORE = "ignore"
    DM = "dm"
    MENTION = "mention"
    THREAD = "thread"  # a thread message without a mention: answer if the thread is ours


@dataclass(frozen=True)
class MessageFacts:
    """What the routing decision needs to know about one gateway message."""

    from_bot: bool  # bots, webhooks and this bot itself
    system: bool  # pins, joins and other notices Discord posts in a person's name
    in_guild: bool
    in_thread: bool
    mentions_me: bool
    content_intent: bool


def route_message(facts: MessageFacts) -> Route:
    """Bots are ignored; DMs and mentions answered; thread follow-ups need the content intent."""
    if facts.from_bot or facts.system:
        return Route.IGNORE
    if not facts.in_guild:
        return Route.DM
    if facts.mentions_me:
        return Route.MENTION
    if facts.in_thread and facts.content_intent:
        return Route.THREAD
    return Route.IGNORE


def mentions_me(
    mentioned_users: Sequence[int], role_mentions: Sequence[int], me: int, my_role: int | None
) -> bool:
    """True when the bot or its own managed role is mentioned (not for @everyone)."""
    return me in mentioned_users or (my_role is not None and my_role in role_mentions)


def strip_mentions(content: str, me: int, my_role: int | None = None) -> str:
    """The question without the bot's own mention(s)."""
    pattern = rf"<@!?{me}>"
    if my_role is not None:
        pattern += rf"|<@&{my_role}>"
    return re.sub(rf"[ \t]*(?:{pattern})[ \t]*", " ", content).strip()


def guild_key(guild_id: int, channel_id: int, thread_id: int) -> ConversationKey:
    """A guild conversation: the channel, and the thread (or would-be thread) it lives in."""
    return ConversationKey(Platform.DISCORD, str(guild_id), str(channel_id), str(thread_id))


def dm_key(channel_id: int, session: int) -> ConversationKey:
    """A DM conversation: the DM channel and the user's current session number."""
    return ConversationKey(Platform.DISCORD, DM_WORKSPACE, str(channel_id), str(session))


def ask_key(guild_id: int | None, channel_id: int, interaction_id: int) -> ConversationKey:
    """An /ask question is its own one-question conversation."""
    workspace = str(guild_id) if guild_id is not None else DM_WORKSPACE
    return ConversationKey(Platform.DISCORD, workspace, str(channel_id), f"ask-{interaction_id}")


def dm_session(current: int, updated_at: float | None, now: float, idle_hours: float) -> int:
    """The session number to use: the next one once the conversation sat idle too long."""
    if updated_at is not None and now - updated_at > idle_hours * 3600:
        return current + 1
    return current


@dataclass(frozen=True)
class AttachmentFacts:
    filename: str
    content_type: str | None
    size: int


def attachment_note(facts: AttachmentFacts) -> str | None:
    """None when the attachment is an image the model can read; else a note for the model."""
    if media_type(facts.content_type) not in IMAGE_MEDIA_TYPES:
        return f"{facts.filename} was attached but I can't read that type of file"
    if facts.size > IMAGE_LIMIT:
        size_mb = IMAGE_LIMIT / (1024 * 1024)
        return f"{facts.filename} was attached but is over {size_mb:.2f} MB, too large to look at"
    return None


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type value ("image/png; x=y" → "image/png")."""
    return (content_type or "").split(";")[0].strip().lower()


def thread_name(text: str, fallback: str = "Support") -> str:
    """A thread name from a question: its first line, whitespace collapsed, within 100 chars."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if not line:
        return fallback
    if len(line) <= THREAD_NAME_LIMIT:
        return line
    return line[: THREAD_NAME_LIMIT - 1].rstrip() + "…"


def invite_permissions() -> int:
    """The permission integer of INVITE_PERMISSIONS, from discord.py's named bits."""
    return discord.Permissions(**dict.fromkeys(INVITE_PERMISSIONS, True)).value


def invite_url(application_id: int, permissions: int) -> str:
    """The OAuth2 URL that adds the bot with slash commands and the given permissions."""
    scope = "bot%20applications.commands"
    return f"{AUTHORIZE_URL}?client_id={application_id}&scope={scope}&permissions={permissions}"


def commands_fingerprint(application_id: int, guild_id: int | None, payload: list[Any]) -> str:
    """A stable hash of the command definitions and where they are registered."""
    scope = {"application": application_id, "guild": guild_id, "commands": payload}
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()
