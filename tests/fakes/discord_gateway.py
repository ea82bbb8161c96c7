"""The fake Discord gateway: a websocket speaking Discord's v10 JSON protocol.

It answers HELLO / HEARTBEAT / IDENTIFY / RESUME / REQUEST_GUILD_MEMBERS, and sends dispatches
with sequence numbers. Frames are zlib-stream compressed when the client asks for it (discord.py
always does), and plain text otherwise.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import (
    API_VERSION,
    Json,
    member_json,
    role_json,
)
from tests.fakes.discord_records import (
    FakeInteraction,
)

HEARTBEAT_INTERVAL_MS = 41_250
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # bytes, for guilds without boosts
MAX_FRAMES = 100_000  # per connection; a bound on the receive loop, far above any test's needs

# Gateway opcodes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE = 3
OP_VOICE_STATE = 4
OP_RESUME = 6
OP_REQUEST_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Close codes.
RESUME_BACKLOG = 1000  # dispatches a session keeps for a RESUME
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTH_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_SESSION_TIMED_OUT = 4009
CLOSE_INVALID_SHARD = 4010
CLOSE_INVALID_VERSION = 4012
CLOSE_INVALID_INTENTS = 4013

Event = tuple[str, Json]
OnIdentify = Callable[["GatewaySession", Json], list[Event]]
OnMembers = Callable[[Json], Json]


class GatewaySession:
    """One client connection: its compression, sequence counter and identify state."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.session_id = secrets.token_hex(16)
        self.sequence = 0
        self.identify: Json | None = None
        # What was dispatched, for a RESUME after a drop (Discord keeps a session a while).
        self.sent: list[tuple[int, str, Json]] = []
        self._lock = asyncio.Lock()
        # zlib-stream shares one compression context across the whole connection.
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None

    @property
    def intents(self) -> int:
        """The intents sent in IDENTIFY (0 before it)."""
        return int((self.identify or {}).get("intents") or 0)

    async def send(self, payload: Json) -> None:
        """Send one gateway payload, compressed if the connection asked for zlib-stream."""
        text = json.dumps(payload, separators=(",", ":"))
        # The lock keeps compression order and frame order identical under concurrent sends.
        async with self._lock:
            if self.ws.closed:
                return
            if self._zlib is None:
                await self.ws.send_str(text)
                return
            frame = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(frame)

    async def dispatch(self, event: str, data: Json) -> None:
        """Send an op 0 dispatch with the next sequence number (kept for a RESUME; a session
        whose connection dropped only keeps it)."""
        self.sequence += 1
        self.sent = [*self.sent[-(RESUME_BACKLOG - 1):], (self.sequence, event, data)]
        await self.send({"op": OP_DISPATCH, "t": event, "s": self.sequence, "d": data})

    @property
    def shard(self) -> tuple[int, int]:
        """[shard id, shard count] from IDENTIFY ([0, 1] when none was sent)."""
        given = (self.identify or {}).get("shard") or [0, 1]
        return int(given[0]), int(given[1])

    def receives(self, data: Json) -> bool:
        """Discord sends a guild's events to the shard (guild_id >> 22) % count, and DMs (no
        guild_id) to shard 0 only."""
        shard_id, count = self.shard
        guild = data.get("guild_id") if isinstance(data, dict) else None
        return shard_id == (shard_of(int(guild), count) if guild else 0)

    def take_over(self, old: GatewaySession) -> None:
        """Continue a dropped session on this connection (a RESUME)."""
        self.session_id, self.identify = old.session_id, old.identify
        self.sequence, self.sent = old.sequence, old.sent


class GatewayHub:
    """All gateway connections of one fake server, and the websocket handler that feeds them."""

    def __init__(self, token: str, on_identify: OnIdentify, on_members: OnMembers) -> None:
        self.token = token
        self.sessions: list[GatewaySession] = []
        self.last_identify: Json | None = None
        self.identifies = 0  # IDENTIFY payloads accepted (a reconnect adds one)
        self.resumes = 0  # RESUMEs accepted, their missed events replayed
        self.resumable = True  # False: answer every RESUME with "start a new session"
        self._dropped: dict[str, GatewaySession] = {}  # identified sessions without a socket
        self.ready = asyncio.Event()
        self._on_identify = on_identify
        self._on_members = on_members

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The /gateway websocket endpoint."""
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=0)
        await ws.prepare(request)
        if request.query.get("v", str(API_VERSION)) != str(API_VERSION):
            await ws.close(code=CLOSE_INVALID_VERSION, message=b"Invalid API version")
            return ws
        session = GatewaySession(ws, request.query.get("compress"))
        self.sessions.append(session)
        try:
            await session.send({"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            await self._serve(session)
        finally:
            self.sessions.remove(session)
            if session.identify is not None:  # resumable for a while, as on Discord
                self._dropped[session.session_id] = session
            await ws.close()
        return ws

    async def _serve(self, session: GatewaySession) -> None:
        # A client that stops heartbeating is dropped, as Discord does with zombie connections.
        idle_limit = HEARTBEAT_INTERVAL_MS / 1000 * 1.5
        for _ in range(MAX_FRAMES):
            try:
                msg = await session.ws.receive(timeout=idle_limit)
            except TimeoutError:
                await session.ws.close(code=CLOSE_SESSION_TIMED_OUT, message=b"Session timed out")
                return
            if msg.type != WSMsgType.TEXT:
                return
            try:
                payload = json.loads(msg.data)
            except ValueError:
                await session.ws.close(code=CLOSE_DECODE_ERROR, message=b"Decode error")
                return
            if not await self._on_payload(session, payload):
                return

    async def _on_payload(self, session: GatewaySession, payload: Any) -> bool:
        """Handle one client payload; False once the connection has been closed."""
        op = payload.get("op") if isinstance(payload, dict) else None
        data = payload.get("d") if isinstance(payload, dict) else None
        if op == OP_HEARTBEAT:
            await session.send({"op": OP_HEARTBEAT_ACK})
            return True
        if op == OP_IDENTIFY:
            return await self._identify(session, data if isinstance(data, dict) else {})
        if op == OP_RESUME:
            return await self._resume(session, data if isinstance(data, dict) else {})
        if session.identify is None:
            await session.ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated")
            return False
        if op == OP_REQUEST_MEMBERS:
            await session.dispatch("GUILD_MEMBERS_CHUNK", self._on_members(data or {}))
            return True
        if op in (OP_PRESENCE, OP_VOICE_STATE):
            return True
        await session.ws.close(code=CLOSE_UNKNOWN_OPCODE, message=b"Unknown opcode")
        return False

    async def _identify(self, session: GatewaySession, data: Json) -> bool:
        token = str(data.get("token", "")).removeprefix("Bot ")
        if session.identify is not None:
            await session.ws.close(
                code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated"
            )
            return False
        if token != self.token:
            await session.ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed")
            return False
        if not isinstance(data.get("intents"), int):
            await session.ws.close(code=CLOSE_INVALID_INTENTS, message=b"Invalid intent(s)")
            return False
        shard = data.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2
                and all(isinstance(n, int) for n in shard) and 0 <= shard[0] < shard[1]):
            await session.ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard")
            return False
        session.identify = data
        self.last_identify = data
        self.identifies += 1
        for event, event_data in self._on_identify(session, data):
            await session.dispatch(event, event_data)
        self.ready.set()
        return True

    async def _resume(self, session: GatewaySession, data: Json) -> bool:
        """RESUME: replay what the dropped session missed after `seq`, then RESUMED; a session
        it does not know (or a fake told not to) gets op 9 "start a new session"."""
        old = self._dropped.pop(str(data.get("session_id", "")), None)
        token = str(data.get("token", "")).removeprefix("Bot ")
        if old is None or not self.resumable or token != self.token:
            await session.send({"op": OP_INVALID_SESSION, "d": False})
            return True
        session.take_over(old)
        after = int(data.get("seq") or 0)
        for sequence, event, payload in old.sent:
            if sequence > after:
                await session.send({"op": OP_DISPATCH, "t": event, "s": sequence, "d": payload})
        await session.dispatch("RESUMED", {})
        self.resumes += 1
        return True

    async def broadcast(self, event: str, build: Callable[[int], Json | None]) -> None:
        """Dispatch to every identified session (one whose connection dropped keeps it for a
        RESUME); `build(intents)` returns None to skip one."""
        for session in [*self.sessions, *self._dropped.values()]:
            if session.identify is None:
                continue
            data = build(session.intents)
            if data is not None and session.receives(data):
                await session.dispatch(event, data)

    async def drop(self, code: int, reason: bytes = b"Unknown error") -> None:
        """Close every connection with `code` (4000 "unknown error": the client reconnects and
        tries to RESUME; this fake then asks for a new session)."""
        for session in list(self.sessions):
            await session.ws.close(code=code, message=reason)

    async def close_all(self) -> None:
        """Close every connection (1001 going away), e.g. when the fake stops."""
        for session in list(self.sessions):
            await session.ws.close(code=1001, message=b"Server shutting down")


# --- payloads built from the fake's guild -----------------------------------------------------


@dataclass(frozen=True)
class GuildView:
    """What READY and GUILD_CREATE describe: the one guild the bot is in, seen by the bot."""

    guild_id: int
    owner_id: int
    application_id: int
    bot_user: Json
    permissions: int
    support_role_id: int
    joined_at: str
    channels: tuple[Json, ...]
    threads: tuple[Json, ...]
    gateway_url: str


def shard_of(guild_id: int, count: int) -> int:
    return (guild_id >> 22) % count


def ready_payload(view: GuildView, session_id: str, identify: Json) -> Json:
    """READY: the bot user, its guild (unavailable until GUILD_CREATE) if this shard has it,
    and the session."""
    shard_id, count = (identify.get("shard") or [0, 1])
    ours = shard_of(view.guild_id, int(count)) == int(shard_id)
    ready: Json = {
        "v": API_VERSION,
        "user": {**view.bot_user, "verified": True, "mfa_enabled": False},
        "guilds": [{"id": str(view.guild_id), "unavailable": True}] if ours else [],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": view.gateway_url,
        "application": {"id": str(view.application_id), "flags": 1 << 19},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": [],
        "user_settings": {},
        "_trace": ['["fake-discord"]'],
    }
    if "shard" in identify:
        ready["shard"] = identify["shard"]
    return ready


def _bot_member(view: GuildView) -> Json:
    return member_json(view.bot_user, [], view.joined_at)


def guild_create_payload(view: GuildView) -> Json:
    """GUILD_CREATE: channels, @everyone carrying the bot's permissions, and the bot member."""
    members = [_bot_member(view)]
    return {
        "id": str(view.guild_id),
        "name": "Fake Support Guild",
        "icon": None,
        "owner_id": str(view.owner_id),
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": [
            role_json(view.guild_id, "@everyone", view.permissions, 0),
            role_json(view.support_role_id, "support", 0, 1),
        ],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "system_channel_id": None,
        "joined_at": view.joined_at,
        "large": False,
        "unavailable": False,
        # member_count == len(members) makes discord.py see the guild as chunked already.
        "member_count": len(members),
        "members": members,
        "voice_states": [],
        "channels": list(view.channels),
        "threads": list(view.threads),
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
    }


def members_chunk_payload(view: GuildView, request: Json) -> Json:
    """GUILD_MEMBERS_CHUNK answering op 8 in a single chunk, so chunking never waits."""
    chunk: Json = {
        "guild_id": str(view.guild_id),
        "members": [_bot_member(view)],
        "chunk_index": 0,
        "chunk_count": 1,
        "not_found": [],
    }
    if request.get("presences"):
        chunk["presences"] = []
    if request.get("nonce") is not None:
        chunk["nonce"] = request["nonce"]
    return chunk


@dataclass(frozen=True)
class InteractionContext:
    """What an INTERACTION_CREATE carries besides the interaction: command, channel, user."""

    command: Json | None
    command_id: str
    channel: Json
    user: Json
    permissions: int
    joined_at: str


def _option_type(value: Any) -> int:
    """Discord's option type for a Python value: BOOLEAN 5, INTEGER 4, NUMBER 10, STRING 3."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def _options(options: Mapping[str, Any], command: Json | None) -> tuple[list[Json], Json]:
    """Option list typed from the registered command when known; attachments go to resolved."""
    declared = {o["name"]: o for o in (command or {}).get("options") or []}
    result: list[Json] = []
    attachments: Json = {}
    for name, value in options.items():
        if isinstance(value, dict) and "url" in value:
            result.append({"name": name, "type": 11, "value": value["id"]})
            attachments[value["id"]] = value
            continue
        kind = declared.get(name, {}).get("type") or _option_type(value)
        result.append({"name": name, "type": kind, "value": value})
    return result, ({"attachments": attachments} if attachments else {})


def interaction_create_payload(
    interaction: FakeInteraction, context: InteractionContext, message: Json | None = None
) -> Json:
    """INTERACTION_CREATE as Discord sends it to the bot: a slash command (type 2), a button
    pressed on `message` (type 3) or a modal submitted (type 5)."""
    data: Json
    if interaction.kind == 3:
        data = {"custom_id": interaction.custom_id, "component_type": 2}
    elif interaction.kind == 5:
        data = {"custom_id": interaction.custom_id, "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": field, "value": value}]}
            for field, value in interaction.values.items()]}
    else:
        options, resolved = _options(interaction.options, context.command)
        data = {"id": context.command_id, "name": interaction.name, "type": 1,
                "options": options}
        if resolved:
            data["resolved"] = resolved
        if context.command and "guild_id" in context.command:
            data["guild_id"] = context.command["guild_id"]
    payload: Json = {
        "id": str(interaction.id),
        "application_id": str(interaction.application_id),
        "type": interaction.kind,
        "data": data,
        "token": interaction.token,
        "version": 1,
        "channel_id": str(interaction.channel_id),
        "channel": context.channel,
        "app_permissions": str(context.permissions),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
    }
    if message is not None:
        payload["message"] = message
    return _with_invoker(payload, interaction, context)


def _with_invoker(payload: Json, interaction: FakeInteraction, context: InteractionContext) -> Json:
    """Guild interactions carry `member` (with permissions); DM ones carry `user`."""
    if interaction.guild_id is None:
        payload.update(user=context.user, context=1, authorizing_integration_owners={"0": "0"})
        return payload
    member = member_json(context.user, [], context.joined_at)
    member["permissions"] = str(context.permissions)
    guild_id = str(interaction.guild_id)
    payload.update(
        guild_id=guild_id,
        guild={"id": guild_id, "locale": "en-US", "features": []},
        guild_locale="en-US",
        member=member,
        context=0,
        authorizing_integration_owners={"0": guild_id},
    )
    return payload
