"""Discord wire formats for the fake: JSON objects, error bodies, mentions, rate-limit buckets.

Pure helpers with no I/O, shared by the fake's REST side (tests/fakes/discord.py) and its
gateway side (tests/fakes/discord_gateway.py).
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

API_VERSION = 10
MAX_CONTENT = 2000
DISCORD_EPOCH_MS = 1_420_070_400_000

# Gateway intents (bit positions from Discord's gateway documentation).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12

# Permission bits the bot needs; CREATE_PRIVATE_THREADS is granted only when allowed.
CREATE_PRIVATE_THREADS = 1 << 36
BOT_PERMISSIONS = (
    (1 << 6)  # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 13)  # MANAGE_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 17)  # MENTION_EVERYONE: makes allowed_mentions the only thing preventing pings
    | (1 << 31)  # USE_APPLICATION_COMMANDS
    | (1 << 34)  # MANAGE_THREADS
    | (1 << 35)  # CREATE_PUBLIC_THREADS
    | (1 << 38)  # SEND_MESSAGES_IN_THREADS
)

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE_MENTION = re.compile(r"@(everyone|here)")


class Snowflakes:
    """Issues unique, increasing snowflake ids built from the current time like Discord's."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """Return a fresh snowflake id."""
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = now_ms << 22
        # Several ids in one millisecond must still be distinct and ordered.
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_now() -> str:
    """Current UTC time in the ISO 8601 form Discord uses for timestamps."""
    return datetime.datetime.now(datetime.UTC).isoformat()


# --- errors -------------------------------------------------------------------------------


def error_body(code: int, message: str) -> Json:
    """A plain JSON error body: {"message": ..., "code": ...}."""
    return {"message": message, "code": code}


def form_error(path: tuple[str, ...], code: str, message: str) -> Json:
    """A 50035 Invalid Form Body error whose nested `errors` point at `path`."""
    errors: Json = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return {"code": 50035, "errors": errors, "message": "Invalid Form Body"}


def message_body_error(body: Json, prefix: tuple[str, ...] = ()) -> Json | None:
    """Validate a message create/edit body as Discord does; None when it is acceptable."""
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        return form_error((*prefix, "content"), "STRING_TYPE_CONVERT", "Could not interpret value.")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        return form_error(
            (*prefix, "content"), "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
        )
    embeds = body.get("embeds")
    if isinstance(embeds, list) and len(embeds) > 10:
        return form_error(
            (*prefix, "embeds"), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."
        )
    problem = components_error(body.get("components"), prefix)
    if problem is not None:
        return problem
    return allowed_mentions_error(body.get("allowed_mentions"), prefix)


def components_error(rows: Any, prefix: tuple[str, ...] = ()) -> Json | None:
    """Action rows (≤ 5) of buttons (≤ 5 each): custom_id ≤ 100 and label ≤ 80 characters."""
    if rows is None:
        return None
    where = (*prefix, "components")
    if not isinstance(rows, list) or len(rows) > 5:
        return form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    for row in rows:
        items = row.get("components") if isinstance(row, dict) else None
        if row.get("type") != 1 or not isinstance(items, list) or not 0 < len(items) <= 5:
            return form_error(where, "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                              "The specified component exceeds the maximum width")
        for item in items:
            if len(str(item.get("custom_id") or "")) > 100 or len(
                    str(item.get("label") or "")) > 80:
                return form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
            if item.get("type") == 2 and item.get("style") != 5 and not item.get("custom_id"):
                return form_error(where, "COMPONENT_CUSTOM_ID_REQUIRED",
                                  "A custom id is required")
    return None


def allowed_mentions_error(allowed: Any, prefix: tuple[str, ...] = ()) -> Json | None:
    """Discord rejects a `parse` type combined with an explicit id list of the same kind."""
    if not isinstance(allowed, dict):
        return None
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            message = f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'
            return form_error(
                (*prefix, "allowed_mentions"), "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", message
            )
    return None


def is_empty_message(body: Json, files: int) -> bool:
    """True when a new message would carry nothing visible (Discord answers 50006)."""
    return (
        not body.get("content")
        and not body.get("embeds")
        and not files
        and not body.get("sticker_ids")
        and not body.get("components")
        and not body.get("poll")
    )


# --- mentions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pings:
    """Who a message's mentions reach: users, roles and @everyone/@here, after allowed_mentions."""

    users: frozenset[int]
    roles: frozenset[int]
    everyone: frozenset[str]

    def labels(self) -> frozenset[str]:
        """Flat labels such as "everyone", "here", "user:1", "role:2" for easy assertions."""
        return self.everyone | {f"user:{u}" for u in self.users} | {f"role:{r}" for r in self.roles}


def resolve_pings(
    content: str, allowed: Json | None, *, reply_author: int | None, roles: frozenset[int]
) -> Pings:
    """Apply Discord's allowed_mentions rules to the mentions written in `content`."""
    if allowed is None:
        # No allowed_mentions means Discord parses every mention, and a reply pings its author.
        parse, ok_users, ok_roles, replied = {"users", "roles", "everyone"}, set(), set(), True
    else:
        parse = set(allowed.get("parse") or [])
        ok_users = {int(u) for u in allowed.get("users") or []}
        ok_roles = {int(r) for r in allowed.get("roles") or []}
        replied = bool(allowed.get("replied_user", False))
    users = {int(u) for u in _USER_MENTION.findall(content)}
    users = {u for u in users if "users" in parse or u in ok_users}
    if reply_author is not None and replied:
        users.add(reply_author)
    found_roles = {int(r) for r in _ROLE_MENTION.findall(content)} & roles
    pinged_roles = {r for r in found_roles if "roles" in parse or r in ok_roles}
    everyone = set(_EVERYONE_MENTION.findall(content)) if "everyone" in parse else set()
    return Pings(frozenset(users), frozenset(pinged_roles), frozenset(everyone))


def mentions_user(content: str, user_id: int) -> bool:
    """True when `content` contains a <@id> or <@!id> mention of `user_id`."""
    return str(user_id) in _USER_MENTION.findall(content)


# --- objects ------------------------------------------------------------------------------


def user_json(user_id: int, name: str, *, bot: bool = False) -> Json:
    """A user object (new-style usernames, so the discriminator is "0")."""
    return {
        "id": str(user_id),
        "username": name,
        "global_name": None if bot else name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
    }


def member_json(user: Json | None, roles: list[int], joined_at: str) -> Json:
    """A guild member object; `user` is omitted where Discord omits it (MESSAGE_CREATE)."""
    member: Json = {
        "roles": [str(r) for r in roles],
        "joined_at": joined_at,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "nick": None,
        "avatar": None,
        "premium_since": None,
        "pending": False,
        "communication_disabled_until": None,
    }
    if user is not None:
        member["user"] = user
    return member


def role_json(role_id: int, name: str, permissions: int, position: int) -> Json:
    """A role object; permissions are a decimal string as in API v8+."""
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": False,
        "mentionable": True,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def text_channel_json(channel_id: int, guild_id: int, name: str, position: int) -> Json:
    """A guild text channel with no permission overwrites."""
    return {
        "id": str(channel_id),
        "type": GUILD_TEXT,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "parent_id": None,
        "topic": None,
        "nsfw": False,
        "rate_limit_per_user": 0,
        "last_message_id": None,
        "flags": 0,
    }


def dm_channel_json(channel_id: int, recipient: Json) -> Json:
    """A DM channel object as returned by POST /users/@me/channels."""
    return {
        "id": str(channel_id),
        "type": DM,
        "last_message_id": None,
        "flags": 0,
        "recipients": [recipient],
    }


def thread_member_json(thread_id: int, user_id: int, joined_at: str) -> Json:
    """A thread member object."""
    return {
        "id": str(thread_id),
        "user_id": str(user_id),
        "join_timestamp": joined_at,
        "flags": 0,
    }


def ceil_ms(seconds: float) -> float:
    """Round up to whole milliseconds, so a client waiting that long is never early."""
    return math.ceil(seconds * 1000) / 1000


def rate_limit_body(retry_after: float, is_global: bool = False) -> Json:
    """The 429 body Discord sends: retry_after is the wait until one more request is allowed."""
    return {
        "message": "You are being rate limited.",
        "retry_after": ceil_ms(retry_after),
        "global": is_global,
    }


# --- rate limits --------------------------------------------------------------------------
#
# Since 2022 Discord's route limits are sliding windows (a leaky bucket), not fixed windows:
# X-RateLimit-Reset-After "is now a moving timestamp" (the time until the bucket is whole
# again, pushed out by every request) and Retry-After "is the next time that you'll have 1
# resource available" (Discord's announcement, quoted in discord/discord-api-docs#7680;
# hikari-py/hikari#2427 dates the rollout to 2022-11-02). A bucket of `limit` per `window`
# frees one request every window/limit seconds.


@dataclass(frozen=True)
class RateVerdict:
    """The outcome of one request against a bucket, with everything the headers need."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # until the bucket is whole again
    bucket_hash: str
    retry_after: float = 0.0  # when refused: until one request is allowed again

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* headers (plus Retry-After/Scope on a 429), as Discord sends them."""
        reset_after = max(ceil_ms(self.reset_after), 0.001)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket_hash,
        }
        if not self.allowed:
            headers["Retry-After"] = str(math.ceil(self.retry_after))
            headers["X-RateLimit-Scope"] = "user"
        return headers


class Bucket:
    """A sliding-window limit: `limit` requests per `window` seconds, one freed every
    window/limit seconds (see above). Several buckets may share one `name` (and so one
    X-RateLimit-Bucket hash) while counting apart."""

    def __init__(self, name: str, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # The hash names the route family, not the resource, as Discord's bucket header does.
        self.hash = hashlib.sha1(name.encode()).hexdigest()[:32]
        self._step = window / limit
        self._whole_at = -math.inf  # when every request spent so far has been freed again

    def take(self, now: float) -> RateVerdict:
        """Spend one request if one is free; a refused request spends nothing."""
        whole_at = max(self._whole_at, now)
        if whole_at + self._step - now > self.window + 1e-9:
            retry_after = whole_at + self._step - self.window - now
            return RateVerdict(False, self.limit, 0, whole_at - now, self.hash, retry_after)
        self._whole_at = whole_at + self._step
        reset_after = self._whole_at - now
        remaining = max(0, math.floor((self.window - reset_after) / self._step + 1e-9))
        return RateVerdict(True, self.limit, remaining, reset_after, self.hash)
