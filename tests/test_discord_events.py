"""The pure Discord rules: routing, keys, mentions, attachments, sessions, invite, commands."""

from __future__ import annotations

from typing import Any

import pytest

from bot.adapters.discord.events import (
    IMAGE_LIMIT,
    AttachmentFacts,
    MessageFacts,
    Route,
    ask_key,
    attachment_note,
    commands_differ,
    dm_key,
    dm_session,
    guild_key,
    invite_permissions,
    invite_url,
    mentions_me,
    route_message,
    strip_mentions,
    thread_name,
)
from bot.conversation import Platform

ME = 1_100_000_000_000_000_001


def facts(**changes: bool) -> MessageFacts:
    base = {"from_bot": False, "system": False, "in_guild": True, "in_thread": False,
            "mentions_me": False, "content_intent": True}
    return MessageFacts(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "route"),
    [
        ({"from_bot": True, "mentions_me": True}, Route.IGNORE),
        ({"from_bot": True, "in_guild": False}, Route.IGNORE),
        ({"system": True, "in_thread": True}, Route.IGNORE),  # e.g. "pinned a message"
        ({"in_guild": False}, Route.DM),
        ({"mentions_me": True}, Route.MENTION),
        ({"mentions_me": True, "in_thread": True}, Route.MENTION),
        ({"in_thread": True}, Route.THREAD),
        ({"in_thread": True, "content_intent": False}, Route.IGNORE),
        ({}, Route.IGNORE),  # plain channel chatter
    ],
)
def test_route_message(changes: dict[str, bool], route: Route) -> None:
    assert route_message(facts(**changes)) is route


def test_mentions_me_counts_the_bot_and_its_role_but_not_others() -> None:
    assert mentions_me([ME], [], ME, None)
    assert mentions_me([], [77], ME, 77)
    assert not mentions_me([5], [78], ME, 77)
    assert not mentions_me([], [77], ME, None)


def test_strip_mentions_removes_only_the_bots_own() -> None:
    text = f"<@{ME}> how do I add <@42>?\nthanks <@!{ME}> <@&77>"
    assert strip_mentions(text, ME) == "how do I add <@42>?\nthanks <@&77>"
    assert strip_mentions(text, ME, 77) == "how do I add <@42>?\nthanks"


def test_keys_put_a_thread_follow_up_in_its_mentions_conversation() -> None:
    mention = guild_key(1, 2, 3)  # channel 2, message 3 (the thread made from it is 3)
    follow_up = guild_key(1, 2, 3)  # thread 3 whose parent is 2
    assert mention == follow_up and mention.platform is Platform.DISCORD
    assert dm_key(9, 1) != dm_key(9, 2)
    assert ask_key(None, 9, 5).workspace == "@dm"
    assert ask_key(1, 2, 5) != ask_key(1, 2, 6)


def test_dm_session_moves_on_only_after_the_idle_gap() -> None:
    hour = 3600.0
    assert dm_session(3, None, 10 * hour, 24) == 3  # never used yet
    assert dm_session(3, 0.0, 23 * hour, 24) == 3
    assert dm_session(3, 0.0, 25 * hour, 24) == 4


def test_attachment_note_for_unreadable_and_oversized_files() -> None:
    assert attachment_note(AttachmentFacts("a.png", "image/png", 1000)) is None
    assert attachment_note(AttachmentFacts("a.webp", "image/webp; q=1", 10)) is None
    assert attachment_note(AttachmentFacts("r.pdf", "application/pdf", 10)) == (
        "r.pdf was attached but I can't read that type of file"
    )
    assert attachment_note(AttachmentFacts("x", None, 10)) is not None
    too_big = attachment_note(AttachmentFacts("b.png", "image/png", IMAGE_LIMIT + 1))
    assert too_big is not None and too_big.startswith("b.png was attached but is over 3.75 MB")
    assert attachment_note(AttachmentFacts("b.png", "image/png", IMAGE_LIMIT)) is None


def test_image_limit_keeps_the_base64_text_within_the_apis_5_mb() -> None:
    assert len(bytes(IMAGE_LIMIT)) * 4 / 3 <= 5 * 1024 * 1024


def test_thread_name_is_the_first_line_within_100_characters() -> None:
    assert thread_name("  How do I\texport?\nmore detail") == "How do I export?"
    assert thread_name("   ") == "Support"
    long = thread_name("word " * 50)
    assert len(long) == 100 and long.endswith("…")


def test_invite_permission_integer() -> None:
    bits = {
        "add_reactions": 6,
        "view_channel": 10,
        "send_messages": 11,
        "embed_links": 14,
        "attach_files": 15,
        "read_message_history": 16,
        "create_public_threads": 35,
        "create_private_threads": 36,
        "send_messages_in_threads": 38,
    }
    assert invite_permissions() == sum(1 << bit for bit in bits.values()) == 377957239872


def test_invite_url_has_both_scopes_and_the_permissions() -> None:
    assert invite_url(123, 456) == (
        "https://discord.com/oauth2/authorize?client_id=123"
        "&scope=bot%20applications.commands&permissions=456"
    )


# What discord.py sends for /ask, and the same command as a GET may answer it: with ids and a
# version, and defaults spelled out or left out.
Payload = list[dict[str, Any]]
WANTED: Payload = [{
    "name": "ask", "description": "Ask", "type": 1, "nsfw": False, "dm_permission": True,
    "default_member_permissions": None, "contexts": None, "integration_types": None,
    "options": [{"type": 3, "name": "question", "description": "Q", "required": True},
                {"type": 5, "name": "private", "description": "P", "required": False}],
}]
HELD: Payload = [{
    "id": "1", "application_id": "2", "version": "3", "name": "ask", "description": "Ask",
    "type": 1, "nsfw": False, "dm_permission": True, "default_member_permissions": None,
    "integration_types": [0], "name_localizations": {}, "description_localizations": {},
    "options": [{"type": 3, "name": "question", "description": "Q", "required": True},
                {"type": 5, "name": "private", "description": "P"}],
}]


def test_commands_as_discord_holds_them_are_no_difference() -> None:
    assert not commands_differ(WANTED, HELD, in_guild=False)
    assert not commands_differ(WANTED, [{**HELD[0], "guild_id": "4", "contexts": [0, 1]}],
                               in_guild=True)  # contexts only matter for global commands


def test_a_missing_or_changed_command_is_a_difference() -> None:
    assert commands_differ(WANTED, [], in_guild=False)  # deleted in the developer portal
    assert commands_differ(WANTED, [{**HELD[0], "description": "Ask us"}], in_guild=False)
    assert commands_differ(WANTED, [*HELD, {**HELD[0], "name": "old"}], in_guild=False)
    question, private = HELD[0]["options"]
    options = [question, {**private, "required": True}]
    assert commands_differ(WANTED, [{**HELD[0], "options": options}], in_guild=False)
    admins_only = {**HELD[0], "default_member_permissions": "0"}
    assert commands_differ(WANTED, [admins_only], in_guild=False)
