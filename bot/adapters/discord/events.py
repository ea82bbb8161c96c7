"""Pure Discord translation: which messages to answer, conversation keys, attachments, invites.

No I/O here: the adapter extracts plain facts from discord.py objects and these functions
decide, so every rule can be tested with plain values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import discord

from bot.conversation import (
    DM_WORKSPACE,
    IMAGE_MEDIA_TYPES,
    MAX_IMAGE_BYTES,
    ConversationKey,
    Platform,
)

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


# How Discord spells a field it was not given; a value equal to its default is no difference.
# integration_types defaults to GUILD_INSTALL ([0]) (discord-api-docs, application-commands.mdx,
# "Application Command Object"); the other defaults are the documented ones or discord.py's.
_COMMAND_DEFAULTS: dict[str, Any] = {
    "type": 1,
    "description": "",
    "options": [],
    "nsfw": False,
    "dm_permission": True,
    "default_member_permissions": None,
    "contexts": None,
    "integration_types": [0],
    "name_localizations": {},
    "description_localizations": {},
}
_GLOBAL_ONLY = ("dm_permission", "contexts", "integration_types")  # ignored on guild commands
_OPTION_DEFAULTS: dict[str, Any] = {
    "description": "",
    "required": False,
    "autocomplete": False,
    "choices": [],
    "channel_types": [],
    "options": [],
    "min_value": None,
    "max_value": None,
    "min_length": None,
    "max_length": None,
    "name_localizations": {},
    "description_localizations": {},
}


def commands_differ(
    desired: Sequence[Mapping[str, Any]], registered: Sequence[Mapping[str, Any]], in_guild: bool
) -> bool:
    """True when the registered commands are not the desired ones, in what users see of them.

    Fields Discord adds (id, version, application_id, guild_id) and defaults spelled out on
    one side only are no difference; order of the commands is none either.
    """
    def shapes(commands: Sequence[Mapping[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
        shaped = [_command_shape(command, in_guild) for command in commands]
        return {(shape["type"], shape["name"]): shape for shape in shaped}

    return len(desired) != len(registered) or shapes(desired) != shapes(registered)


def _command_shape(command: Mapping[str, Any], in_guild: bool) -> dict[str, Any]:
    shape = _with_defaults(command, _COMMAND_DEFAULTS, "name")
    if shape["default_member_permissions"] is not None:
        shape["default_member_permissions"] = str(shape["default_member_permissions"])
    for field in _GLOBAL_ONLY if in_guild else ():
        del shape[field]
    shape["options"] = [_option_shape(option) for option in shape["options"]]
    return shape


def _option_shape(option: Mapping[str, Any]) -> dict[str, Any]:
    shape = _with_defaults(option, _OPTION_DEFAULTS, "name", "type")
    shape["channel_types"] = sorted(shape["channel_types"])
    shape["choices"] = [_with_defaults(c, {"name_localizations": {}}, "name", "value")
                        for c in shape["choices"]]
    shape["options"] = [_option_shape(sub) for sub in shape["options"]]
    return shape


def _with_defaults(
    data: Mapping[str, Any], defaults: Mapping[str, Any], *required: str
) -> dict[str, Any]:
    """The fields in `defaults` and `required` only; a missing or null one takes its default."""
    shaped = {name: data.get(name) for name in required}
    for name, default in defaults.items():
        value = data.get(name)
        shaped[name] = default if value is None else value
    return shaped
