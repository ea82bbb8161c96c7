"""The fake Discord's state: users, channels, threads, messages, interactions, commands.

Also the helpers that create and change messages, and the gateway payloads built from state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord_gateway import (
    Event,
    GatewayHub,
    GatewaySession,
    GuildView,
    InteractionContext,
    guild_create_payload,
    interaction_create_payload,
    members_chunk_payload,
    ready_payload,
    shard_of,
)
from tests.fakes.discord_http import API_PREFIX, unknown
from tests.fakes.discord_payloads import (
    BOT_PERMISSIONS,
    CREATE_PRIVATE_THREADS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    Bucket,
    Json,
    Snowflakes,
    dm_channel_json,
    iso_now,
    member_json,
    resolve_pings,
    text_channel_json,
    user_json,
)
from tests.fakes.discord_records import (
    FakeInteraction,
    MessageRecord,
    RestCall,
    ThreadRecord,
    hide_content,
)
from tests.fakes.server import LocalServer


@dataclass
class InteractionState:
    """What happened to an interaction after dispatch."""

    public: FakeInteraction
    callback_type: int | None = None
    acked_at: float | None = None
    original: int | None = None
    followups: list[int] = field(default_factory=list)
    modal: Json | None = None  # the modal a type 9 callback opened


class DiscordState:
    """Everything the fake remembers, and the helpers every route shares."""

    def __init__(
        self,
        *,
        token: str = "test-discord-token",
        application_id: int = 1_100_000_000_000_000_001,
        bot_user_id: int | None = None,
        guild_id: int = 1_100_000_000_000_000_100,
        channel_ids: Sequence[int] = (1_100_000_000_000_000_200, 1_100_000_000_000_000_201),
        channel_bucket_limit: int = 5,
        channel_bucket_window: float = 5.0,
        webhook_bucket_limit: int = 5,
        webhook_bucket_window: float = 2.0,
        interaction_deadline: float = 3.0,
        interaction_token_ttl: float = 900.0,
        private_threads_allowed: bool = True,
        global_limit: int = 50,
    ) -> None:
        self.token = token
        self.application_id = application_id
        # Apps created since 2019 share one id between the application and its bot user.
        self.bot_user_id = bot_user_id if bot_user_id is not None else application_id
        self.guild_id = guild_id
        self.channel_ids = tuple(channel_ids)
        self.default_user_id = 1_100_000_000_000_000_300
        self.support_role_id = guild_id + 1
        self.channel_limit = (channel_bucket_limit, channel_bucket_window)
        self.webhook_limit = (webhook_bucket_limit, webhook_bucket_window)
        self.interaction_deadline = interaction_deadline
        self.interaction_token_ttl = interaction_token_ttl
        self.private_threads_allowed = private_threads_allowed
        self.no_access: set[int] = set()  # channels whose REST calls answer 403 50001
        self.recommended_shards = 1  # what GET /gateway/bot recommends
        # Injected failures of channel message writes: (method, statuses in turn), see fail_next.
        self.faults: dict[str, list[int]] = {}
        self.fault_retry_after = 1.0
        self.attachment_delay = 0.0  # seconds before an attachment download answers
        # Seconds before a channel message create or edit answers; the write itself applies
        # at once, as when Discord's answer is slow to come back.
        self.write_delay = 0.0
        self.calls: list[RestCall] = []
        self.rate_limited = 0
        self.typing: list[tuple[int, float]] = []
        self.base_url = ""
        self._ids = Snowflakes()
        self._joined_at = iso_now()
        self._users: dict[int, Json] = {}
        self._channels: dict[int, Json] = {}
        self._dms: dict[int, int] = {}  # recipient id -> DM channel id
        self._threads: dict[int, ThreadRecord] = {}
        self._messages: dict[int, MessageRecord] = {}
        self._interactions: dict[int, InteractionState] = {}
        self._tokens: dict[str, int] = {}
        self._commands: dict[int | None, list[Json]] = {}
        self._files: dict[int, tuple[str, str, bytes]] = {}
        self._buckets: dict[tuple[str, str, str], Bucket] = {}
        self._global_bucket = Bucket("global", global_limit, 1.0)
        self._hub = GatewayHub(token, self._on_identify, self._on_request_members)
        self._server: LocalServer | None = None
        self._seed()

    def _seed(self) -> None:
        self._users[self.bot_user_id] = user_json(self.bot_user_id, "supportbot", bot=True)
        self._users[self.default_user_id] = user_json(self.default_user_id, "asker")
        for position, channel_id in enumerate(self.channel_ids):
            name = f"support-{position}" if position else "support"
            self._channels[channel_id] = text_channel_json(
                channel_id, self.guild_id, name, position
            )

    @property
    def api_url(self) -> str:
        """The REST base, what DISCORD_API_URL / discord.http.Route.BASE are set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The gateway URL, what DISCORD_GATEWAY_URL / DiscordWebSocket.DEFAULT_GATEWAY are."""
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    def add_attachment(self, filename: str, content_type: str, data: bytes) -> Json:
        """Store a file served at /attachments/ID/NAME; returns Discord's attachment object."""
        if not self.base_url:
            raise RuntimeError("start the fake before adding attachments")
        attachment_id = self._ids.next()
        self._files[attachment_id] = (filename, content_type, data)
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "content_type": content_type,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }

    # --- state helpers --------------------------------------------------------------------

    def _user(self, user_id: int, *, bot: bool = False) -> Json:
        if user_id not in self._users:
            self._users[user_id] = user_json(user_id, f"user{user_id}", bot=bot)
        return self._users[user_id]

    def _dm_channel(self, recipient_id: int) -> int:
        # Since API v8 bots get no CHANNEL_CREATE for DMs; the channel just starts existing.
        if recipient_id not in self._dms:
            channel_id = self._ids.next()
            self._dms[recipient_id] = channel_id
            self._channels[channel_id] = dm_channel_json(channel_id, self._user(recipient_id))
        return self._dms[recipient_id]

    def _guild_of(self, channel_id: int) -> int | None:
        if channel_id in self._threads:
            return self.guild_id
        return self.guild_id if "guild_id" in self._channels.get(channel_id, {}) else None

    def _channel_json(self, channel_id: int) -> Json:
        thread = self._threads.get(channel_id)
        if thread is not None:
            return thread.to_json(self.bot_user_id)
        if channel_id in self._channels:
            return self._channels[channel_id]
        raise unknown("Channel", 10003)

    def _pings_for(self, record: MessageRecord) -> None:
        reference = record.message_reference or {}
        replied = self._messages.get(int(reference.get("message_id") or 0))
        reply_author = (
            replied.author_id if replied and replied.author_id != record.author_id else None
        )
        record.pings = resolve_pings(
            record.content,
            record.allowed_mentions,
            reply_author=reply_author,
            roles=frozenset({self.support_role_id}),
        )

    def _new_message(
        self, channel_id: int, author: Json, body: Json, **extra: Any
    ) -> MessageRecord:
        record = MessageRecord(
            id=self._ids.next(),
            channel_id=channel_id,
            guild_id=self._guild_of(channel_id),
            author=author,
            content=body.get("content") or "",
            created_at=time.monotonic(),
            embeds=list(body.get("embeds") or []),
            attachments=list(body.get("attachments") or []),
            allowed_mentions=body.get("allowed_mentions"),
            message_reference=body.get("message_reference"),
            components=list(body.get("components") or []),
            **extra,
        )
        record.history.append(record.content)
        self._pings_for(record)
        self._messages[record.id] = record
        if channel_id in self._threads:
            self._threads[channel_id].message_count += 1
        return record

    def _apply_edit(self, record: MessageRecord, body: Json) -> None:
        if "content" in body:
            record.content = body["content"] or ""
        if "embeds" in body:
            record.embeds = list(body["embeds"] or [])
        if "components" in body:
            record.components = list(body["components"] or [])
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            record.attachments = [a for a in record.attachments if a["id"] in keep]
        # Editing a deferred response replaces the "thinking…" placeholder.
        record.flags &= ~FLAG_LOADING
        record.allowed_mentions = body.get("allowed_mentions")
        record.edited_timestamp = iso_now()
        record.history.append(record.content)
        self._pings_for(record)

    def _content_visible(self, record: MessageRecord) -> bool:
        # Without MESSAGE_CONTENT Discord still sends content for DMs, mentions and own messages.
        return (
            record.guild_id is None
            or record.author_id == self.bot_user_id
            or self.bot_user_id in record.pings.users
        )

    async def _broadcast_message(self, event: str, record: MessageRecord) -> None:
        if record.flags & FLAG_EPHEMERAL:
            return
        data = record.to_json(self._users)
        if record.guild_id is not None and record.webhook_id is None:
            data["member"] = member_json(None, [], self._joined_at)
        needed = INTENT_GUILD_MESSAGES if record.guild_id is not None else INTENT_DIRECT_MESSAGES
        visible = self._content_visible(record)

        def build(intents: int) -> Json | None:
            if not intents & needed:
                return None
            return data if visible or intents & INTENT_MESSAGE_CONTENT else hide_content(data)

        await self._hub.broadcast(event, build)

    async def _broadcast_delete(self, record: MessageRecord) -> None:
        if record.flags & FLAG_EPHEMERAL:
            return
        data: Json = {"id": str(record.id), "channel_id": str(record.channel_id)}
        if record.guild_id is not None:
            data["guild_id"] = str(record.guild_id)
        needed = INTENT_GUILD_MESSAGES if record.guild_id is not None else INTENT_DIRECT_MESSAGES
        await self._hub.broadcast("MESSAGE_DELETE", lambda i: data if i & needed else None)

    # --- gateway payloads -----------------------------------------------------------------

    def _guild_view(self) -> GuildView:
        return GuildView(
            guild_id=self.guild_id,
            owner_id=self.default_user_id,
            application_id=self.application_id,
            bot_user=self._users[self.bot_user_id],
            permissions=self._permissions(),
            support_role_id=self.support_role_id,
            joined_at=self._joined_at,
            channels=tuple(c for c in self._channels.values() if "guild_id" in c),
            threads=tuple(t.to_json(self.bot_user_id) for t in self._threads.values()),
            gateway_url=self.gateway_url,
        )

    def _on_identify(self, session: GatewaySession, data: Json) -> list[Event]:
        view = self._guild_view()
        events: list[Event] = [("READY", ready_payload(view, session.session_id, data))]
        shard_id, count = data.get("shard") or [0, 1]
        ours = shard_of(view.guild_id, int(count)) == int(shard_id)
        if ours and int(data.get("intents") or 0) & INTENT_GUILDS:
            events.append(("GUILD_CREATE", guild_create_payload(view)))
        return events

    def _on_request_members(self, data: Json) -> Json:
        return members_chunk_payload(self._guild_view(), data)

    def _permissions(self) -> int:
        extra = CREATE_PRIVATE_THREADS if self.private_threads_allowed else 0
        return BOT_PERMISSIONS | extra

    def _find_command(self, name: str) -> Json | None:
        for scope in (self.guild_id, None):
            for command in self._commands.get(scope, []):
                if command["name"] == name:
                    return command
        return None

    def _interaction_json(self, interaction: FakeInteraction) -> Json:
        command = self._find_command(interaction.name)
        context = InteractionContext(
            command=command,
            command_id=(command or {}).get("id") or str(self._ids.next()),
            channel=self._channel_json(interaction.channel_id),
            user=self._user(interaction.user_id),
            permissions=self._permissions(),
            joined_at=self._joined_at,
        )
        message = self._messages.get(interaction.message_id or 0)
        return interaction_create_payload(
            interaction, context, message.to_json(self._users) if message else None)
