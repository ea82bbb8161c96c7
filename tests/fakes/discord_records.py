"""What the fake Discord stores (messages, threads, interactions, REST calls) and the values
tests read back; built on the wire formats in discord_payloads.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord_payloads import (
    PRIVATE_THREAD,
    Json,
    Pings,
    iso_now,
    thread_member_json,
    user_json,
)


@dataclass(frozen=True)
class RestCall:
    """One REST request the fake served; `path` is relative to /api/v10, `route` its template."""

    method: str
    path: str
    route: str
    json: Any
    time: float
    status: int
    query: str = ""


@dataclass(frozen=True)
class FakeInteraction:
    """A slash-command interaction the fake dispatched (times are time.monotonic())."""

    id: int
    token: str
    application_id: int
    name: str
    options: Mapping[str, Any]
    channel_id: int
    user_id: int
    guild_id: int | None
    dispatched_at: float
    kind: int = 2  # 2 slash command, 3 message component (a button), 5 modal submit
    custom_id: str = ""  # the button's or the modal's
    message_id: int | None = None  # the message whose button was pressed
    values: Mapping[str, str] = field(default_factory=dict)  # a modal's text inputs


@dataclass(frozen=True)
class FakeMessage:
    """A snapshot of one message as the fake holds it now.

    `pinged` holds labels ("everyone", "here", "user:ID", "role:ID") for the mentions the current
    content reaches under the allowed_mentions sent with the latest write.
    """

    id: int
    channel_id: int
    content: str
    author_id: int
    author_bot: bool
    edits: int
    history: tuple[str, ...]
    allowed_mentions: Json | None
    message_reference: Json | None
    flags: int
    embeds: tuple[Json, ...]
    attachments: tuple[Json, ...]
    pinged: frozenset[str]
    reactions: tuple[str, ...]
    interaction_id: int | None
    created_at: float
    deleted: bool
    components: tuple[Json, ...] = ()

    @property
    def buttons(self) -> list[str]:
        """The custom ids of the buttons the message shows, in order."""
        return [str(c.get("custom_id")) for row in self.components
                for c in row.get("components") or []]


@dataclass(frozen=True)
class FakeThread:
    """A thread the bot created: type 11 (public) or 12 (private)."""

    id: int
    parent_id: int
    name: str
    type: int
    members: frozenset[int]
    owner_id: int
    invitable: bool
    message_id: int | None
    created_at: float


@dataclass
class MessageRecord:
    """The fake's mutable record of a message; `to_json` renders Discord's message object."""

    id: int
    channel_id: int
    guild_id: int | None
    author: Json
    content: str
    created_at: float
    timestamp: str = field(default_factory=iso_now)
    type: int = 0
    flags: int = 0
    embeds: list[Json] = field(default_factory=list)
    attachments: list[Json] = field(default_factory=list)
    allowed_mentions: Json | None = None
    message_reference: Json | None = None
    pings: Pings = field(default_factory=lambda: Pings(frozenset(), frozenset(), frozenset()))
    history: list[str] = field(default_factory=list)
    edited_timestamp: str | None = None
    reactions: list[str] = field(default_factory=list)
    deleted: bool = False
    webhook_id: int | None = None
    interaction: Json | None = None
    interaction_id: int | None = None
    thread: Json | None = None
    components: list[Json] = field(default_factory=list)

    @property
    def author_id(self) -> int:
        """The author's user id."""
        return int(self.author["id"])

    def to_json(self, users: dict[int, Json]) -> Json:
        """Discord's message object; `users` resolves pinged user ids to user objects."""
        data: Json = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": False,
            "mention_everyone": bool(self.pings.everyone),
            "mentions": [users.get(u, user_json(u, f"user{u}")) for u in sorted(self.pings.users)],
            "mention_roles": [str(r) for r in sorted(self.pings.roles)],
            "attachments": self.attachments,
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
        }
        return self._optional_fields(data)

    def _optional_fields(self, data: Json) -> Json:
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        if self.interaction is not None:
            data["interaction_metadata"] = self.interaction
        if self.thread is not None:
            data["thread"] = self.thread
        if self.reactions:
            data["reactions"] = [
                {"emoji": {"id": None, "name": e}, "count": 1, "me": True} for e in self.reactions
            ]
        return data

    def snapshot(self) -> FakeMessage:
        """A frozen copy for tests."""
        return FakeMessage(
            id=self.id,
            channel_id=self.channel_id,
            content=self.content,
            author_id=self.author_id,
            author_bot=bool(self.author.get("bot")),
            edits=len(self.history) - 1,
            history=tuple(self.history),
            allowed_mentions=self.allowed_mentions,
            message_reference=self.message_reference,
            flags=self.flags,
            embeds=tuple(self.embeds),
            attachments=tuple(self.attachments),
            pinged=self.pings.labels(),
            reactions=tuple(self.reactions),
            interaction_id=self.interaction_id,
            created_at=self.created_at,
            components=tuple(self.components),
            deleted=self.deleted,
        )


@dataclass
class ThreadRecord:
    """The fake's mutable record of a thread channel."""

    id: int
    guild_id: int
    parent_id: int
    name: str
    type: int
    owner_id: int
    invitable: bool
    auto_archive_duration: int
    created_at: float
    message_id: int | None = None
    members: set[int] = field(default_factory=set)
    message_count: int = 0
    timestamp: str = field(default_factory=iso_now)

    def to_json(self, me: int | None = None) -> Json:
        """Discord's thread channel object; `me` adds the bot's thread member when it joined."""
        metadata: Json = {
            "archived": False,
            "auto_archive_duration": self.auto_archive_duration,
            "archive_timestamp": self.timestamp,
            "locked": False,
            "create_timestamp": self.timestamp,
        }
        if self.type == PRIVATE_THREAD:
            metadata["invitable"] = self.invitable
        data: Json = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "parent_id": str(self.parent_id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": self.message_count,
            "member_count": min(len(self.members), 50),
            "total_message_sent": self.message_count,
            "flags": 0,
            "thread_metadata": metadata,
        }
        if me is not None and me in self.members:
            data["member"] = thread_member_json(self.id, me, self.timestamp)
        return data

    def snapshot(self) -> FakeThread:
        """A frozen copy for tests."""
        return FakeThread(
            id=self.id,
            parent_id=self.parent_id,
            name=self.name,
            type=self.type,
            members=frozenset(self.members),
            owner_id=self.owner_id,
            invitable=self.invitable,
            message_id=self.message_id,
            created_at=self.created_at,
        )


def hide_content(message: Json) -> Json:
    """The MESSAGE_CREATE a bot without the MESSAGE_CONTENT intent receives: no content fields."""
    hidden = dict(message)
    hidden.update(content="", embeds=[], attachments=[], components=[])
    hidden.pop("poll", None)
    return hidden
