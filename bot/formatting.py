"""Making model text safe to post: no mass or role pings, whatever the model writes (pure)."""

from __future__ import annotations

import re

ZERO_WIDTH_SPACE = "\u200b"
# "@everyone" / "@here" / "@channel" as plain words: Discord pings on the first two, and Slack
# does when a message is posted with link_names, so they are broken on every platform.
_BROADCAST_WORD = re.compile(r"@(everyone|here|channel)\b", re.IGNORECASE)
# Discord role mentions <@&123> and user mentions <@123> / <@!123>.
_DISCORD_MENTION = re.compile(r"<@([!&]?)(\d+)>")


def neutralise_mentions(text: str) -> str:
    """Break broadcast words so no platform turns them into a ping; the reader still sees them."""
    return _BROADCAST_WORD.sub(lambda m: f"@{ZERO_WIDTH_SPACE}{m.group(1)}", text)


def escape_slack(text: str) -> str:
    """Escape &, < and > as Slack asks, which also disarms <!channel> and <@U…> syntax."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def neutralise_discord(text: str) -> str:
    """Break @everyone/@here and make role or user mention syntax inert as text."""
    text = neutralise_mentions(text)
    return _DISCORD_MENTION.sub(lambda m: f"<@{ZERO_WIDTH_SPACE}{m.group(1)}{m.group(2)}>", text)
