"""Slack event payloads → plain values: who asked what, where, and whether to answer (pure).

The message's own identity (team, channel, ts) is the event id, so an app_mention and the
message.channels event for the same message, and every redelivery of either, dedupe in the
store's unique key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.conversation import Arrival, ConversationKey, Platform

# Subtypes that are still a person writing; every other subtype (edits, deletes, joins,
# bot posts, channel topic changes…) is not a question.
PERSON_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
MAX_CONTEXT_MESSAGES = 50
MAX_CONTEXT_CHARS = 6_000
MAX_CONTEXT_LINE = 500
_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
SIGNATURE_MAX_AGE = 300  # Slack's advice: refuse requests older than five minutes (replays)


@dataclass(frozen=True)
class Identity:
    """Who the bot is in its workspace, from auth.test."""

    team_id: str
    team_name: str
    user_id: str
    bot_id: str
    user_name: str


@dataclass(frozen=True)
class SlackFile:
    """A file shared with a message, as far as the bot needs it."""

    name: str
    mimetype: str
    size: int
    url: str


@dataclass(frozen=True)
class SlackMessage:
    """A message from a person that the bot may answer."""

    team: str
    channel: str
    ts: str
    thread_ts: str | None
    user: str
    text: str
    arrival: Arrival
    files: tuple[SlackFile, ...] = ()

    @property
    def key(self) -> ConversationKey:
        """Every reply goes in the thread under the message, or in the thread it is part of."""
        return ConversationKey(Platform.SLACK, self.team, self.channel, self.thread_ts or self.ts)

    @property
    def event_id(self) -> str:
        return f"{self.team}:{self.channel}:{self.ts}"

    @property
    def joins_thread(self) -> bool:
        """A mention inside a thread that started before it (the bot may not have seen it)."""
        return self.arrival is Arrival.MENTION and self.thread_ts not in (None, self.ts)


def person_message(body: Mapping[str, Any], me: Identity) -> SlackMessage | None:
    """The message a person wrote to the bot, or None when the event is nothing to answer."""
    event = body.get("event")
    if not isinstance(event, Mapping) or not _from_a_person(event, me):
        return None
    arrival = _arrival(event, me)
    if arrival is None:
        return None
    thread_ts = event.get("thread_ts")
    return SlackMessage(
        team=str(body.get("team_id") or event.get("team") or me.team_id),
        channel=str(event["channel"]),
        ts=str(event["ts"]),
        thread_ts=str(thread_ts) if thread_ts else None,
        user=str(event["user"]),
        text=question_text(str(event.get("text") or ""), me),
        arrival=arrival,
        files=files_of(event.get("files")),
    )


def _from_a_person(event: Mapping[str, Any], me: Identity) -> bool:
    if event.get("type") not in ("app_mention", "message"):
        return False
    if event.get("hidden") or event.get("bot_id") or event.get("bot_profile"):
        return False
    subtype = event.get("subtype")
    if subtype is not None and subtype not in PERSON_SUBTYPES:
        return False
    user = event.get("user")
    return bool(user) and user != me.user_id and bool(event.get("channel") and event.get("ts"))


def _arrival(event: Mapping[str, Any], me: Identity) -> Arrival | None:
    if event.get("channel_type") == "im":
        return Arrival.DM
    text = str(event.get("text") or "")
    if event.get("type") == "app_mention" or f"<@{me.user_id}" in text:
        return Arrival.MENTION
    if event.get("thread_ts"):
        return Arrival.FOLLOW_UP  # answered only if the bot already holds this conversation
    return None


def question_text(text: str, me: Identity) -> str:
    """The question without the leading @bot, with Slack's markup turned back into plain text."""
    mention = re.compile(rf"^\s*<@{re.escape(me.user_id)}(?:\|[^>]*)?>[\s,:]*")
    text = mention.sub("", text)
    text = text.replace(f"<@{me.user_id}>", f"@{me.user_name}")
    return plain_text(text).strip()


def plain_text(mrkdwn: str) -> str:
    """Slack's <…> links and mentions as readable text, and &amp; &lt; &gt; unescaped."""

    def readable(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return target if not label or label == target else f"{label} ({target})"

    text = _SLACK_LINK.sub(readable, mrkdwn)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def files_of(raw: Any) -> tuple[SlackFile, ...]:
    """The shared files Slack lists on a message (those without a private URL are skipped)."""
    if not isinstance(raw, Sequence):
        return ()
    found = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        url = item.get("url_private_download") or item.get("url_private") or ""
        name = str(item.get("name") or item.get("title") or "a file")
        size = item.get("size")
        mimetype = str(item.get("mimetype") or "application/octet-stream")
        found.append(SlackFile(name, mimetype, int(size) if isinstance(size, int) else 0, url))
    return tuple(found)


def thread_context(messages: Sequence[Mapping[str, Any]], before_ts: str, me: Identity) -> str:
    """Earlier messages of a thread (from conversations.replies) as a quoted block, or ""."""
    lines: list[str] = []
    for msg in messages[:MAX_CONTEXT_MESSAGES]:
        if _ts_key(str(msg.get("ts", ""))) >= _ts_key(before_ts):
            continue
        text = plain_text(str(msg.get("text") or "")).strip()
        if not text:
            continue
        if len(text) > MAX_CONTEXT_LINE:
            text = text[:MAX_CONTEXT_LINE] + "…"
        lines.append(f"> {_author(msg, me)}: " + text.replace("\n", "\n> "))
    if not lines:
        return ""
    block = "\n".join(lines)
    if len(block) > MAX_CONTEXT_CHARS:
        block = "…" + block[-MAX_CONTEXT_CHARS:]  # the newest messages matter most
    return f"Earlier in this Slack thread (before I was mentioned):\n{block}\n\n"


def _author(msg: Mapping[str, Any], me: Identity) -> str:
    if msg.get("user") == me.user_id:
        return "you (supportbot)"
    if msg.get("bot_id"):
        return "another bot"
    return f"@{msg.get('user') or 'someone'}"


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    try:
        return int(seconds or 0), int(micros or 0)
    except ValueError:
        return 0, 0


def request_problem(
    body: bytes, timestamp: str | None, signature: str | None, secret: str, now: float
) -> str | None:
    """Why an Events API request must be refused (None: signed by Slack, recent, UTF-8).

    The signature covers the raw bytes, so it is checked before anything is decoded.
    """
    if not timestamp or not signature:
        return "unsigned request"
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        return "malformed signature timestamp"
    if age > SIGNATURE_MAX_AGE:
        return "stale signature timestamp"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII text, which any sender may put there.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "bad signature"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    return None
