"""A local fake of Discord's REST API v10 and gateway that the real discord.py 2.7 works against.

Point discord.py at it with `discord.http.Route.BASE = fake.api_url` and
`DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`. Run it out of process with
`python -m tests.fakes.discord --port 0`, which prints `READY http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

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
)
from tests.fakes.discord_payloads import (
    BOT_PERMISSIONS,
    CREATE_PRIVATE_THREADS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    Bucket,
    FakeInteraction,
    FakeMessage,
    FakeThread,
    Json,
    MessageRecord,
    RateVerdict,
    RestCall,
    Snowflakes,
    ThreadRecord,
    dm_channel_json,
    error_body,
    form_error,
    hide_content,
    is_empty_message,
    iso_now,
    member_json,
    mentions_user,
    message_body_error,
    rate_limit_body,
    resolve_pings,
    text_channel_json,
    user_json,
)

__all__ = ["FakeDiscord", "FakeInteraction", "FakeMessage", "FakeThread", "RestCall"]

API_PREFIX = "/api/v10"
WRITES = frozenset({"POST", "PATCH", "DELETE"})
CHANNEL_MESSAGE_ROUTES = frozenset(
    {"/channels/{channel_id}/messages", "/channels/{channel_id}/messages/{message_id}"}
)
DEFAULT_ROUTE_LIMIT = (50, 1.0)  # other routes: roughly Discord's global 50 requests/second
# Flags a bot may set on a new message: ephemeral, suppress embeds, suppress notifications.
KEPT_CREATE_FLAGS = FLAG_EPHEMERAL | (1 << 2) | (1 << 12)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _InteractionState:
    """What happened to an interaction after dispatch."""

    public: FakeInteraction
    callback_type: int | None = None
    acked_at: float | None = None
    original: int | None = None
    followups: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Body:
    """A request body: JSON (or a multipart's payload_json) plus uploaded files."""

    json: Any
    files: tuple[tuple[str, str, bytes], ...] = ()


class DiscordError(Exception):
    """Raised by a handler to answer with Discord's JSON error body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


BODY = web.RequestKey("discord_body", _Body)


def _json(status: int, data: Any) -> web.Response:
    # Exactly "application/json", no charset: discord.py parses JSON only on that exact header.
    body = json.dumps(data).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def _no_content() -> web.Response:
    return web.Response(status=204)


def _fail(status: int, code: int, message: str) -> DiscordError:
    return DiscordError(status, error_body(code, message))


def _invalid(path: tuple[str, ...], code: str, message: str) -> DiscordError:
    """A 400 Invalid Form Body (50035) pointing at the offending field."""
    return DiscordError(400, form_error(path, code, message))


def _unknown(kind: str, code: int) -> DiscordError:
    return _fail(404, code, f"Unknown {kind}")


async def _read_body(request: web.Request) -> _Body:
    """Parse JSON or multipart/form-data (payload_json + files[n]) the way Discord accepts it."""
    if request.content_type == "multipart/form-data":
        payload: Any = None
        files: list[tuple[str, str, bytes]] = []
        for name, part in (await request.post()).items():
            if isinstance(part, web.FileField):
                files.append((name, part.filename, part.file.read()))
            elif name == "payload_json":
                payload = json.loads(str(part))
        return _Body(payload, tuple(files))
    if not request.can_read_body:
        return _Body(None)
    try:
        return _Body(await request.json())
    except ValueError as exc:
        raise _fail(400, 50109, "The request body contains invalid JSON.") from exc


def _snowflake(value: str, kind: str, code: int) -> int:
    if not value.isdigit():
        raise _unknown(kind, code)
    return int(value)


class FakeDiscord:
    """Discord REST v10 + gateway on 127.0.0.1, with the limits and error codes bots run into."""

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
        self.attachment_delay = 0.0  # seconds before an attachment download answers
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
        self._interactions: dict[int, _InteractionState] = {}
        self._tokens: dict[str, int] = {}
        self._commands: dict[int | None, list[Json]] = {}
        self._files: dict[int, tuple[str, str, bytes]] = {}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._hub = GatewayHub(token, self._on_identify, self._on_request_members)
        self._runner: web.AppRunner | None = None
        self._seed()

    def _seed(self) -> None:
        self._users[self.bot_user_id] = user_json(self.bot_user_id, "supportbot", bot=True)
        self._users[self.default_user_id] = user_json(self.default_user_id, "asker")
        for position, channel_id in enumerate(self.channel_ids):
            name = f"support-{position}" if position else "support"
            self._channels[channel_id] = text_channel_json(
                channel_id, self.guild_id, name, position
            )

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:`port` (0 picks a free one); returns "http://127.0.0.1:PORT"."""
        # Discord accepts uploads up to 10 MiB on unboosted guilds; aiohttp's default is 1 MiB.
        app = web.Application(middlewares=[self._middleware], client_max_size=25 * 1024 * 1024)
        for method, path, handler in self._routes():
            app.router.add_route(method, API_PREFIX + path, handler)
        for method, path, handler in self._extra_routes():
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        """Close gateway connections and the HTTP server."""
        await self._hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """The REST base, what DISCORD_API_URL / discord.http.Route.BASE are set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The gateway URL, what DISCORD_GATEWAY_URL / DiscordWebSocket.DEFAULT_GATEWAY are."""
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    # --- what tests read ------------------------------------------------------------------

    def messages(self, channel_id: int, *, include_deleted: bool = False) -> list[FakeMessage]:
        """Messages in a channel (thread or DM too), oldest first, as they are now."""
        return [
            m.snapshot()
            for m in self._messages.values()
            if m.channel_id == channel_id
            and (include_deleted or not m.deleted)
            and not m.flags & FLAG_EPHEMERAL
        ]

    def interaction_original(self, interaction_id: int) -> FakeMessage | None:
        """The interaction's original response (type 4 message or type 5 placeholder)."""
        state = self._interactions.get(interaction_id)
        if state is None or state.original is None:
            return None
        return self._messages[state.original].snapshot()

    def followups(self, interaction_id: int) -> list[FakeMessage]:
        """Followup messages sent through the interaction's webhook."""
        state = self._interactions.get(interaction_id)
        ids = state.followups if state else []
        return [self._messages[i].snapshot() for i in ids]

    def interaction_callback(self, interaction_id: int) -> tuple[int, float] | None:
        """(callback type, seconds after dispatch) once the interaction was acknowledged."""
        state = self._interactions.get(interaction_id)
        if state is None or state.callback_type is None or state.acked_at is None:
            return None
        return state.callback_type, state.acked_at - state.public.dispatched_at

    def dm_channel(self, user_id: int | None = None) -> int:
        """The id of the DM channel between the bot and a user (the default user if None)."""
        return self._dm_channel(user_id if user_id is not None else self.default_user_id)

    @property
    def threads(self) -> list[FakeThread]:
        """Threads created so far."""
        return [t.snapshot() for t in self._threads.values()]

    @property
    def identify(self) -> Json | None:
        """The last IDENTIFY payload (token, intents, properties...)."""
        return self._hub.last_identify

    @property
    def registered_commands(self) -> list[Json]:
        """Application commands as stored: global ones first, guild ones carry "guild_id"."""
        scopes = sorted(self._commands, key=lambda s: (s is not None, s or 0))
        return [command for scope in scopes for command in self._commands[scope]]

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a client identified and READY was sent."""
        await asyncio.wait_for(self._hub.ready.wait(), timeout)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Poll `predicate` every 10 ms until it holds; TimeoutError after `timeout` seconds."""
        for _ in range(max(1, math.ceil(timeout / 0.01))):
            if predicate():
                return
            await asyncio.sleep(0.01)
        if not predicate():
            raise TimeoutError(f"condition not met within {timeout}s")

    # --- what tests drive -----------------------------------------------------------------

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

    async def dispatch_message(
        self,
        content: str,
        *,
        channel_id: int | None = None,
        author_id: int | None = None,
        author_bot: bool = False,
        mentions_bot: bool = False,
        attachments: Sequence[Json] = (),
        guild: bool = True,
    ) -> int:
        """A user posts a message: stored, then sent as MESSAGE_CREATE; returns its id."""
        author_id = author_id if author_id is not None else self.default_user_id
        author = self._user(author_id, bot=author_bot)
        if mentions_bot and not mentions_user(content, self.bot_user_id):
            content = f"<@{self.bot_user_id}> {content}"
        if guild:
            channel_id = channel_id if channel_id is not None else self.channel_ids[0]
        else:
            channel_id = self._dm_channel(author_id)
        body: Json = {"content": content, "attachments": list(attachments)}
        record = self._new_message(channel_id, author, body)
        await self._broadcast_message("MESSAGE_CREATE", record)
        return record.id

    async def dispatch_slash(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        channel_id: int | None = None,
        user_id: int | None = None,
        guild: bool = True,
    ) -> FakeInteraction:
        """A user runs /`name`: INTERACTION_CREATE type 2; the 3 s clock starts now."""
        user_id = user_id if user_id is not None else self.default_user_id
        if guild:
            channel_id = channel_id if channel_id is not None else self.channel_ids[0]
        else:
            channel_id = self._dm_channel(user_id)
        interaction = FakeInteraction(
            id=self._ids.next(),
            token="aW50ZXJhY3Rpb24" + secrets.token_urlsafe(60),
            application_id=self.application_id,
            name=name,
            options=dict(options),
            channel_id=channel_id,
            user_id=user_id,
            guild_id=self.guild_id if guild else None,
            dispatched_at=time.monotonic(),
        )
        self._interactions[interaction.id] = _InteractionState(interaction)
        self._tokens[interaction.token] = interaction.id
        payload = self._interaction_json(interaction)
        await self._hub.broadcast("INTERACTION_CREATE", lambda _intents: payload)
        return interaction

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
        raise _unknown("Channel", 10003)

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
        if int(data.get("intents") or 0) & INTENT_GUILDS:
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
        return interaction_create_payload(interaction, context)

    # --- HTTP plumbing --------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        started = time.monotonic()
        route = self._route_name(request)
        response, verdict = await self._guarded(request, handler, route, started)
        if verdict is not None:
            response.headers.update(verdict.headers())
        # discord.py treats a 429 without a Via header as a Cloudflare ban, so send it always.
        response.headers["Via"] = "1.1 google"
        body = request.get(BODY)
        self.calls.append(
            RestCall(
                method=request.method,
                path=request.path[len(API_PREFIX) :],
                route=route,
                json=body.json if body else None,
                time=started,
                status=response.status,
                query=request.query_string,
            )
        )
        return response

    async def _guarded(
        self, request: web.Request, handler: Handler, route: str, now: float
    ) -> tuple[web.StreamResponse, RateVerdict | None]:
        missing = request.match_info.http_exception
        if missing is not None:
            return _json(missing.status, error_body(0, f"{missing.status}: {missing.reason}")), None
        if not self._authorized(request, route):
            return _json(401, error_body(0, "401: Unauthorized")), None
        verdict = self._bucket(request, route).take(now)
        if not verdict.allowed:
            # A refused call changes nothing: the handler never runs.
            self.rate_limited += 1
            return _json(429, rate_limit_body(verdict.reset_after)), verdict
        try:
            request[BODY] = await _read_body(request)
            return await handler(request), verdict
        except DiscordError as exc:
            return _json(exc.status, exc.body), verdict

    def _route_name(self, request: web.Request) -> str:
        resource = request.match_info.route.resource
        template = resource.canonical[len(API_PREFIX) :] if resource else request.path
        return f"{request.method} {template}"

    def _authorized(self, request: web.Request, route: str) -> bool:
        # Interaction callbacks and webhook calls are authorised by the token in the path.
        path = route.split(" ", 1)[1]
        if path.startswith(("/webhooks/", "/interactions/")):
            return True
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _bucket(self, request: web.Request, route: str) -> Bucket:
        method, path = route.split(" ", 1)
        info = request.match_info
        if method in WRITES and path in CHANNEL_MESSAGE_ROUTES:
            name, major, (limit, window) = (
                "channel-messages",
                info["channel_id"],
                self.channel_limit,
            )
        elif method in WRITES and path.startswith("/webhooks/{application_id}/{token}"):
            name, major, (limit, window) = "interaction-webhook", info["token"], self.webhook_limit
        else:
            major = info.get("channel_id") or info.get("guild_id") or info.get("token") or ""
            name, (limit, window) = route, DEFAULT_ROUTE_LIMIT
        key = (name, major)
        if key not in self._buckets:
            self._buckets[key] = Bucket(name, limit, window)
        return self._buckets[key]

    def _routes(self) -> list[tuple[str, str, Handler]]:
        app, guild = "/applications/{application_id}", "/guilds/{guild_id}"
        message = "/channels/{channel_id}/messages/{message_id}"
        hook = "/webhooks/{application_id}/{token}"
        return [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway),
            ("GET", "/users/@me", self._get_me),
            ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", app + "/commands", self._get_commands),
            ("PUT", app + "/commands", self._put_commands),
            ("POST", app + "/commands", self._post_command),
            ("GET", app + guild + "/commands", self._get_commands),
            ("PUT", app + guild + "/commands", self._put_commands),
            ("POST", app + guild + "/commands", self._post_command),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("GET", message, self._get_message),
            ("PATCH", message, self._patch_message),
            ("DELETE", message, self._delete_message),
            ("PUT", message + "/reactions/{emoji}/@me", self._put_reaction),
            ("POST", message + "/threads", self._post_message_thread),
            ("POST", "/channels/{channel_id}/typing", self._post_typing),
            ("POST", "/channels/{channel_id}/threads", self._post_thread),
            ("PUT", "/channels/{channel_id}/thread-members/{user_id}", self._put_thread_member),
            ("POST", "/users/@me/channels", self._post_dm),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._post_callback),
            ("POST", hook, self._post_followup),
            ("GET", hook + "/messages/{message_id}", self._get_webhook_message),
            ("PATCH", hook + "/messages/{message_id}", self._patch_webhook_message),
            ("DELETE", hook + "/messages/{message_id}", self._delete_webhook_message),
        ]

    def _extra_routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/gateway", self._hub.handle),
            ("GET", "/attachments/{attachment_id}/{filename}", self._get_attachment),
            ("GET", "/_fake/stats", self._fake_stats),
            ("GET", "/_fake/calls", self._fake_calls),
            ("GET", "/_fake/messages", self._fake_messages),
            ("GET", "/_fake/interactions/{interaction_id}", self._fake_interaction),
            ("POST", "/_fake/message", self._fake_message),
            ("POST", "/_fake/slash", self._fake_slash),
        ]

    # --- REST: identity, gateway, commands -------------------------------------------------

    async def _get_gateway(self, request: web.Request) -> web.Response:
        data: Json = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            data["shards"] = 1
            data["session_start_limit"] = {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            }
        return _json(200, data)

    async def _get_me(self, request: web.Request) -> web.Response:
        me = {**self._users[self.bot_user_id], "verified": True, "mfa_enabled": False}
        return _json(200, me)

    def _known_user(self, request: web.Request) -> Json:
        user_id = _snowflake(request.match_info["user_id"], "User", 10013)
        if user_id not in self._users:
            raise _unknown("User", 10013)
        return self._users[user_id]

    async def _get_user(self, request: web.Request) -> web.Response:
        return _json(200, self._known_user(request))

    async def _get_member(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(self.guild_id):
            raise _unknown("Guild", 10004)
        return _json(200, member_json(self._known_user(request), [], self._joined_at))

    async def _get_application(self, request: web.Request) -> web.Response:
        return _json(
            200,
            {
                "id": str(self.application_id),
                "name": "supportbot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self._users[self.default_user_id],
                "verify_key": "0" * 64,
                "team": None,
                "flags": 1 << 19,
                "bot": self._users[self.bot_user_id],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
            },
        )

    def _command_scope(self, request: web.Request) -> int | None:
        if request.match_info["application_id"] != str(self.application_id):
            raise _unknown("Application", 10002)
        guild = request.match_info.get("guild_id")
        if guild is not None and guild != str(self.guild_id):
            raise _fail(403, 50001, "Missing Access")
        return int(guild) if guild is not None else None

    def _command_json(self, body: Any, scope: int | None, index: str | None) -> Json:
        path = (index,) if index is not None else ()
        if not isinstance(body, dict):
            raise _invalid(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        name, kind = str(body.get("name", "")), int(body.get("type", 1))
        if not re.fullmatch(r"[-_'\w]{1,32}", name) or (kind == 1 and name != name.lower()):
            raise _invalid(
                (*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if kind == 1 and not 1 <= len(str(body.get("description", ""))) <= 100:
            raise _invalid(
                (*path, "description"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        existing = {c["name"]: c["id"] for c in self._commands.get(scope, [])}
        command = {
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "description": "",
            "options": [],
            **body,
            "id": existing.get(name) or str(self._ids.next()),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "type": kind,
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(200, self._commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = request[BODY].json
        if not isinstance(body, list):
            raise _invalid((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        commands = [self._command_json(item, scope, str(i)) for i, item in enumerate(body)]
        self._commands[scope] = commands
        return _json(200, commands)

    async def _post_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        command = self._command_json(request[BODY].json, scope, None)
        existing = self._commands.setdefault(scope, [])
        is_new = all(c["id"] != command["id"] for c in existing)
        existing[:] = [c for c in existing if c["id"] != command["id"]] + [command]
        return _json(201 if is_new else 200, command)

    # --- REST: channels and messages --------------------------------------------------------

    def _channel_id(self, request: web.Request) -> int:
        channel_id = _snowflake(request.match_info["channel_id"], "Channel", 10003)
        self._channel_json(channel_id)
        return channel_id

    def _message(self, request: web.Request, channel_id: int) -> MessageRecord:
        message_id = _snowflake(request.match_info["message_id"], "Message", 10008)
        record = self._messages.get(message_id)
        if record is None or record.deleted or record.channel_id != channel_id:
            raise _unknown("Message", 10008)
        return record

    def _check_message(self, body: Any, prefix: tuple[str, ...] = ()) -> Json:
        if not isinstance(body, dict):
            raise _invalid(
                prefix, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
        problem = message_body_error(body, prefix)
        if problem is not None:
            raise DiscordError(400, problem)
        return body

    def _check_reference(self, channel_id: int, body: Json) -> None:
        reference = body.get("message_reference")
        if not isinstance(reference, dict):
            return
        target_id = str(reference.get("message_id") or "")
        target = self._messages.get(int(target_id)) if target_id.isdigit() else None
        if target is None or target.deleted:
            if reference.get("fail_if_not_exists", True):
                raise _invalid(
                    ("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            body.pop("message_reference")
            return
        body["message_reference"] = {
            "type": 0,
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
            **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
        }

    def _store_uploads(self, body: Json, files: Sequence[tuple[str, str, bytes]]) -> None:
        # discord.py names uploads files[N] and describes them in payload_json "attachments".
        described = {str(a.get("id")): a for a in body.get("attachments") or []}
        stored = []
        for field_name, filename, data in files:
            index = field_name.removeprefix("files[").removesuffix("]")
            name = described.get(index, {}).get("filename") or filename
            stored.append(self.add_attachment(name, "application/octet-stream", data))
        body["attachments"] = stored

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(200, self._channel_json(self._channel_id(request)))

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel_id(request)
        body = self._check_message(request[BODY].json)
        files = request[BODY].files
        if is_empty_message(body, len(files)):
            raise _fail(400, 50006, "Cannot send an empty message")
        self._check_reference(channel_id, body)
        self._store_uploads(body, files)
        record = self._new_message(
            channel_id,
            self._users[self.bot_user_id],
            body,
            type=19 if "message_reference" in body else 0,
            flags=int(body.get("flags") or 0) & KEPT_CREATE_FLAGS & ~FLAG_EPHEMERAL,
        )
        await self._broadcast_message("MESSAGE_CREATE", record)
        return _json(200, record.to_json(self._users))

    async def _get_message(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        return _json(200, record.to_json(self._users))

    async def _patch_message(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        body = self._check_message(request[BODY].json)
        if record.author_id != self.bot_user_id:
            raise _fail(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(record, body)
        await self._broadcast_message("MESSAGE_UPDATE", record)
        return _json(200, record.to_json(self._users))

    async def _delete_message(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        record.deleted = True
        await self._broadcast_delete(record)
        return _no_content()

    async def _put_reaction(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        emoji = request.match_info["emoji"]
        if emoji not in record.reactions:
            record.reactions.append(emoji)
        return _no_content()

    async def _post_typing(self, request: web.Request) -> web.Response:
        self.typing.append((self._channel_id(request), time.monotonic()))
        return _no_content()

    async def _post_dm(self, request: web.Request) -> web.Response:
        body = request[BODY].json or {}
        recipient = str(body.get("recipient_id", ""))
        if not recipient.isdigit():
            raise _invalid(("recipient_id",), "BASE_TYPE_REQUIRED", "This field is required")
        return _json(200, self._channels[self._dm_channel(int(recipient))])

    # --- REST: threads ----------------------------------------------------------------------

    def _thread_name(self, body: Any) -> str:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise _invalid(
                ("name",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        return name

    def _thread_parent(self, request: web.Request) -> int:
        channel_id = self._channel_id(request)
        if self._channels.get(channel_id, {}).get("type") != 0:
            raise _fail(400, 50024, "Cannot execute action on this channel type")
        return channel_id

    async def _new_thread(
        self, parent: int, body: Json, thread_type: int, thread_id: int
    ) -> web.Response:
        thread = ThreadRecord(
            id=thread_id,
            guild_id=self.guild_id,
            parent_id=parent,
            name=self._thread_name(body),
            type=thread_type,
            owner_id=self.bot_user_id,
            invitable=bool(body.get("invitable", True)),
            auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
            created_at=time.monotonic(),
            members={self.bot_user_id},
        )
        self._threads[thread.id] = thread
        event = {**thread.to_json(self.bot_user_id), "newly_created": True}
        await self._hub.broadcast("THREAD_CREATE", lambda i: event if i & INTENT_GUILDS else None)
        return _json(201, thread.to_json(self.bot_user_id))

    async def _post_thread(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(request)
        body = request[BODY].json or {}
        # Without "type" Discord still creates a private thread, for historical reasons.
        thread_type = int(body.get("type", PRIVATE_THREAD))
        if thread_type not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise _invalid(("type",), "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        if thread_type == PRIVATE_THREAD and not self.private_threads_allowed:
            raise _fail(403, 50013, "Missing Permissions")
        return await self._new_thread(parent, body, thread_type, self._ids.next())

    async def _post_message_thread(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(request)
        record = self._message(request, parent)
        if record.id in self._threads:
            raise _fail(400, 160004, "A thread has already been created for this message")
        # A thread started from a message takes the message's id.
        response = await self._new_thread(
            parent, request[BODY].json or {}, PUBLIC_THREAD, record.id
        )
        record.thread = self._threads[record.id].to_json()
        return response

    async def _put_thread_member(self, request: web.Request) -> web.Response:
        thread = self._threads.get(_snowflake(request.match_info["channel_id"], "Channel", 10003))
        if thread is None:
            raise _unknown("Channel", 10003)
        user = request.match_info["user_id"]
        user_id = self.bot_user_id if user == "@me" else _snowflake(user, "User", 10013)
        thread.members.add(user_id)
        return _no_content()

    # --- REST: interactions and their webhooks ---------------------------------------------

    async def _post_callback(self, request: web.Request) -> web.Response:
        interaction_id = _snowflake(request.match_info["interaction_id"], "interaction", 10062)
        state = self._interactions.get(interaction_id)
        if state is None or state.public.token != request.match_info["token"]:
            raise _unknown("interaction", 10062)
        if state.callback_type is not None:
            raise _fail(400, 40060, "Interaction has already been acknowledged.")
        now = time.monotonic()
        if now - state.public.dispatched_at > self.interaction_deadline:
            raise _unknown("interaction", 10062)
        body = self._check_message(request[BODY].json)
        kind = body.get("type")
        if kind not in (4, 5, 9):
            # 1 (PONG) answers PINGs; 6/7 need a component interaction; 8 autocomplete.
            raise _invalid(("type",), "BASE_TYPE_CHOICES", "Value must be one of {4, 5, 9}.")
        data = self._check_message(body.get("data") or {}, ("data",))
        if kind == 4 and is_empty_message(data, 0):
            raise _fail(400, 50006, "Cannot send an empty message")
        if kind in (4, 5):
            state.original = (await self._interaction_message(state, data, kind)).id
        state.callback_type, state.acked_at = kind, now
        if request.query.get("with_response") in ("1", "true", "True"):
            return _json(200, self._callback_response(state, kind))
        return _no_content()

    async def _interaction_message(
        self, state: _InteractionState, data: Json, kind: int
    ) -> MessageRecord:
        interaction = state.public
        flags = int(data.get("flags") or 0) & KEPT_CREATE_FLAGS
        if kind == 5:
            data, flags = {}, (flags & FLAG_EPHEMERAL) | FLAG_LOADING
        record = self._new_message(
            interaction.channel_id,
            self._users[self.bot_user_id],
            data,
            type=20,
            flags=flags,
            webhook_id=self.application_id,
            interaction_id=interaction.id,
            interaction={
                "id": str(interaction.id),
                "type": 2,
                "name": interaction.name,
                "user": self._user(interaction.user_id),
                "authorizing_integration_owners": {"0": str(interaction.guild_id or 0)},
            },
        )
        await self._broadcast_message("MESSAGE_CREATE", record)
        return record

    def _callback_response(self, state: _InteractionState, kind: int) -> Json:
        summary: Json = {"id": str(state.public.id), "type": 2}
        resource: Json = {"type": kind}
        if state.original is not None:
            original = self._messages[state.original]
            summary["response_message_id"] = str(original.id)
            summary["response_message_loading"] = bool(original.flags & FLAG_LOADING)
            summary["response_message_ephemeral"] = bool(original.flags & FLAG_EPHEMERAL)
            resource["message"] = original.to_json(self._users)
        return {"interaction": summary, "resource": resource}

    def _webhook_state(self, request: web.Request) -> _InteractionState:
        if request.match_info["application_id"] != str(self.application_id):
            raise _unknown("Webhook", 10015)
        interaction_id = self._tokens.get(request.match_info["token"])
        if interaction_id is None:
            raise _fail(401, 50027, "Invalid Webhook Token")
        state = self._interactions[interaction_id]
        age = time.monotonic() - state.public.dispatched_at
        # Tokens die after 15 minutes, or at the deadline if the interaction was never answered.
        if age > self.interaction_token_ttl or (
            state.callback_type is None and age > self.interaction_deadline
        ):
            raise _fail(401, 50027, "Invalid Webhook Token")
        if state.callback_type is None:
            raise _unknown("Webhook", 10015)
        return state

    def _webhook_message(self, request: web.Request, state: _InteractionState) -> MessageRecord:
        raw = request.match_info["message_id"]
        message_id = state.original if raw == "@original" else _snowflake(raw, "Message", 10008)
        owned = {state.original, *state.followups}
        record = self._messages.get(message_id) if message_id in owned and message_id else None
        if record is None or record.deleted:
            raise _unknown("Message", 10008)
        return record

    async def _post_followup(self, request: web.Request) -> web.Response:
        state = self._webhook_state(request)
        body = self._check_message(request[BODY].json)
        files = request[BODY].files
        if is_empty_message(body, len(files)):
            raise _fail(400, 50006, "Cannot send an empty message")
        self._store_uploads(body, files)
        record = self._new_message(
            state.public.channel_id,
            self._users[self.bot_user_id],
            body,
            flags=int(body.get("flags") or 0) & KEPT_CREATE_FLAGS,
            webhook_id=self.application_id,
            interaction_id=state.public.id,
        )
        state.followups.append(record.id)
        await self._broadcast_message("MESSAGE_CREATE", record)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(200, record.to_json(self._users))
        return _no_content()

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_message(request, self._webhook_state(request))
        return _json(200, record.to_json(self._users))

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_message(request, self._webhook_state(request))
        body = self._check_message(request[BODY].json)
        if request[BODY].files:
            self._store_uploads(body, request[BODY].files)
        self._apply_edit(record, body)
        await self._broadcast_message("MESSAGE_UPDATE", record)
        return _json(200, record.to_json(self._users))

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_message(request, self._webhook_state(request))
        record.deleted = True
        await self._broadcast_delete(record)
        return _no_content()

    # --- out-of-process control (/_fake/...) and the CDN -----------------------------------

    async def _get_attachment(self, request: web.Request) -> web.Response:
        raw_id = request.match_info["attachment_id"]
        stored = self._files.get(int(raw_id)) if raw_id.isdigit() else None
        if stored is None or stored[0] != request.match_info["filename"]:
            raise web.HTTPNotFound()
        await asyncio.sleep(self.attachment_delay)  # a slow CDN, for ordering tests
        return web.Response(body=stored[2], content_type=stored[1])

    async def _fake_stats(self, request: web.Request) -> web.Response:
        statuses = Counter(str(c.status) for c in self.calls)
        return _json(
            200,
            {
                "calls": dict(Counter(c.route for c in self.calls)),
                "statuses": dict(statuses),
                "rate_limited": self.rate_limited,
                "identified": self.identify is not None,
            },
        )

    async def _fake_calls(self, request: web.Request) -> web.Response:
        """REST calls served so far (from index `since`), for out-of-process timing studies."""
        since = int(request.query.get("since") or 0)
        calls = [_plain(c) for c in self.calls[since:]]
        return _json(200, {"calls": calls, "next": len(self.calls)})

    async def _fake_messages(self, request: web.Request) -> web.Response:
        channel = int(request.query.get("channel") or self.channel_ids[0])
        return _json(200, [_plain(m) for m in self.messages(channel)])

    async def _fake_interaction(self, request: web.Request) -> web.Response:
        interaction_id = int(request.match_info["interaction_id"])
        original = self.interaction_original(interaction_id)
        return _json(
            200,
            {
                "original": _plain(original) if original else None,
                "followups": [_plain(m) for m in self.followups(interaction_id)],
                "callback": self.interaction_callback(interaction_id),
            },
        )

    async def _fake_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        message_id = await self.dispatch_message(
            str(body["content"]),
            channel_id=_optional_int(body.get("channel_id")),
            author_id=_optional_int(body.get("author_id")),
            author_bot=bool(body.get("author_bot", False)),
            mentions_bot=bool(body.get("mentions_bot", False)),
            guild=bool(body.get("guild", True)),
        )
        return _json(200, {"id": str(message_id)})

    async def _fake_slash(self, request: web.Request) -> web.Response:
        body = await request.json()
        interaction = await self.dispatch_slash(
            str(body["name"]),
            body.get("options") or {},
            channel_id=_optional_int(body.get("channel_id")),
            user_id=_optional_int(body.get("user_id")),
            guild=bool(body.get("guild", True)),
        )
        return _json(200, _plain(interaction))


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _plain(value: Any) -> Json:
    """A dataclass as JSON-ready data: ids become strings, sets sorted lists."""
    data = asdict(value)
    for key, item in data.items():
        if isinstance(item, frozenset):
            data[key] = sorted(item)
        elif isinstance(item, tuple):
            data[key] = list(item)
        elif key.endswith("id") and isinstance(item, int):
            data[key] = str(item)
    return data


async def _serve(port: int, token: str, lifetime: float) -> None:
    fake = FakeDiscord(token=token)
    base = await fake.start(port)
    print(f"READY {base}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        pass  # the lifetime bound keeps a forgotten server from running forever
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: serve the fake until SIGTERM/SIGINT (or --lifetime seconds)."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.discord")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="test-discord-token")
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.token, args.lifetime))


if __name__ == "__main__":
    main()
