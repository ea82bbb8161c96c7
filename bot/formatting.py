"""Making model text safe to post: no mass or role pings and no links that hide where they go,
whatever the model writes (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable

ZERO_WIDTH_SPACE = "\u200b"
# "@everyone" / "@here" / "@channel" as plain words: Discord pings on the first two, and Slack
# does when a message is posted with link_names, so they are broken on every platform.
_BROADCAST_WORD = re.compile(r"@(everyone|here|channel)\b", re.IGNORECASE)
# Discord role mentions <@&123> and user mentions <@123> / <@!123>.
_DISCORD_MENTION = re.compile(r"<@([!&]?)(\d+)>")


def neutralise_mentions(text: str) -> str:
    """Break broadcast words so no platform turns them into a ping; the reader still sees them."""
    if "@" not in text:  # most text: no regex pass over it
        return text
    return _BROADCAST_WORD.sub(lambda m: f"@{ZERO_WIDTH_SPACE}{m.group(1)}", text)


def escape_slack(text: str) -> str:
    """Escape &, < and > as Slack asks, which also disarms <!channel> and <@U…> syntax."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def neutralise_discord(text: str) -> str:
    """Break @everyone/@here and make role or user mention syntax inert as text."""
    text = neutralise_mentions(text)
    if "<@" not in text:
        return text
    return _DISCORD_MENTION.sub(lambda m: f"<@{ZERO_WIDTH_SPACE}{m.group(1)}{m.group(2)}>", text)


# [label](url) (and ![alt](url)), with an optional <url> and "title": the same shapes the
# Slack converter (mrkdwn.py) turns into links, so nothing it links escapes this check.
_MASKED_LINK = re.compile(
    r"!?\[([^\]\n]*)\]\(\s*<?((?:[^()\s<>]|\([^()\s<>]*\))+)>?(?:\s+\"[^\"\n]*\")?\s*\)"
)
_URL = re.compile(r"https?://[^\s<>()\[\]\"'`|]+")


# Characters a reader cannot see, which change what the text does without changing how it
# looks, are dropped from questions, documents and the model's text:
# - bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): the text
#   shows in another order than it is written ("\u202egnp.exe" shows as "exe.png");
# - zero-width and invisible format characters (U+200B, U+2060-U+2064, U+FEFF, the soft hyphen
#   U+00AD, U+180E, U+206A-U+206F, U+FFF9-U+FFFB): "pass\u200bword" reads as "password" but
#   matches nothing in the docs, and "@\u2060everyone" looks like a ping that is not one;
# - tag characters (U+E0000-U+E007F): invisible ASCII, a known way to hide instructions to a
#   model in text a person approves. The tags that spell a subdivision flag (the flag of
#   England: black flag, tag letters, cancel tag) stay.
# The joiners U+200C/U+200D (Persian, Indic scripts, emoji sequences) and the marks U+200E/U+200F
# that right-to-left languages use stay.
_FLAG_TAGS = "\U0001F3F4[\U000E0020-\U000E007E]{1,7}\U000E007F"
_HIDDEN = re.compile(
    f"({_FLAG_TAGS})|[\u00ad\u180e\u200b\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\U000E0000-\U000E007F]"
)


def visible_text(text: str) -> str:
    """The text without characters that are not seen but change what it does or how it reads."""
    if text.isascii():  # every such character is outside ASCII; most answers are within it
        return text
    return _HIDDEN.sub(lambda m: m.group(1) or "", text)


def shown_safely(text: str, trusted: frozenset[str]) -> str:
    """Model text as a reader may see it: displayed in the order it is written, and no label
    over an address the docs did not give."""
    return unmask_links(visible_text(text), trusted)


def doc_urls(texts: Iterable[str]) -> frozenset[str]:
    """The URLs the docs gave this reply (page links and links inside the passages), without
    their #fragment and trailing punctuation, for `unmask_links`."""
    found: set[str] = set()
    for text in texts:
        for url in [text] if _URL.fullmatch(text) else _URL.findall(text):
            found.add(_bare(url))
    return frozenset(found)


def unmask_links(text: str, trusted: frozenset[str]) -> str:
    """Every masked link [label](url) whose URL the docs did not give becomes "label (url)":
    a model talked into "[support portal](https://evil.example)" cannot hide the address
    behind the bot's own words. Links to the docs' own pages keep their label."""

    def shown(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        if _bare(url) in trusted or label.strip() == url:
            return match.group(0)
        return f"{label.strip()} ({url})".lstrip()

    if "](" not in text:  # no masked link: nothing to check
        return text
    for _ in range(5):  # unmasking one link cannot make a new one, but be sure
        before, text = text, _MASKED_LINK.sub(shown, text)
        if text == before:
            break
    return text


def _bare(url: str) -> str:
    return url.split("#", 1)[0].rstrip(".,;:!?/")
