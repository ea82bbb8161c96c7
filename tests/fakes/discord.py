"""A local fake of Discord's REST API v10 and gateway that the real discord.py 2.7 works against.

Point discord.py at it with `discord.http.Route.BASE = fake.api_url` and
`DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`. Run it out of process with
`python -m tests.fakes.discord --port 0`, which prints `READY http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web

from tests.fakes.discord_http import API_PREFIX, Handler, json_response
from tests.fakes.discord_payloads import (
    FLAG_EPHEMERAL,
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    Json,
    mentions_user,
)
from tests.fakes.discord_records import (
    FakeInteraction,
    FakeMessage,
    FakeThread,
    RestCall,
)
from tests.fakes.discord_routing import DiscordRouting
from tests.fakes.discord_state import InteractionState
from tests.fakes.server import LocalServer

__all__ = ["FakeDiscord", "FakeInteraction", "FakeMessage", "FakeThread", "RestCall"]


class FakeDiscord(DiscordRouting):
    """Discord REST v10 + gateway on 127.0.0.1, with the limits and error codes bots run into."""

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:`port` (0 picks a free one); returns "http://127.0.0.1:PORT"."""
        # Discord accepts uploads up to 10 MiB on unboosted guilds; aiohttp's default is 1 MiB.
        app = web.Application(middlewares=[self._middleware], client_max_size=25 * 1024 * 1024)
        for method, path, handler in self._routes():
            app.router.add_route(method, API_PREFIX + path, handler)
        for method, path, handler in self._extra_routes():
            app.router.add_route(method, path, handler)
        self._server = LocalServer(app)
        self.base_url = await self._server.start(port)
        return self.base_url

    async def stop(self) -> None:
        """Close gateway connections and the HTTP server."""
        await self._hub.close_all()
        if self._server is not None:
            await self._server.stop()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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

    def revoke_access(self, channel_id: int) -> None:
        """The bot loses access to a channel: its REST calls there answer 403 50001."""
        self.no_access.add(channel_id)

    def fail_next(self, method: str, *statuses: int, retry_after: float = 1.0) -> None:
        """The next channel message writes with `method` (POST creates, PATCH edits) fail, one
        status each, changing nothing: 429 is a limit the headers did not predict (scope
        "shared", with Retry-After, as Discord answers when a resource is busy), 5xx an error
        from Discord's edge."""
        self.faults.setdefault(method, []).extend(statuses)
        self.fault_retry_after = retry_after

    def delete_as_moderator(self, message_id: int) -> None:
        """A moderator deletes a message: later edits of it answer 404 Unknown Message."""
        self._messages[message_id].deleted = True

    def dm_channel(self, user_id: int | None = None) -> int:
        """The id of the DM channel between the bot and a user (the default user if None)."""
        return self._dm_channel(user_id if user_id is not None else self.default_user_id)

    @property
    def threads(self) -> list[FakeThread]:
        """Threads created so far."""
        return [t.snapshot() for t in self._threads.values()]

    async def drop_gateway(self, code: int = 4000) -> None:
        """The gateway closes the bot's connection with `code`, as Discord does at times."""
        await self._hub.drop(code)

    @property
    def resumes(self) -> int:
        """How many RESUMEs were accepted (missed events replayed)."""
        return self._hub.resumes

    def refuse_resumes(self) -> None:
        """From now on, answer RESUME with op 9: the client must identify a new session."""
        self._hub.resumable = False

    @property
    def identifies(self) -> int:
        """How many times a client identified (the first connection and every new session)."""
        return self._hub.identifies

    @property
    def identify(self) -> Json | None:
        """The last IDENTIFY payload (token, intents, properties...)."""
        return self._hub.last_identify

    @property
    def shards(self) -> list[tuple[int, int]]:
        """[shard id, shard count] of each identified connection open now."""
        return sorted(session.shard for session in self._hub.sessions if session.identify)

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

    def delete_commands(self, guild_id: int | None = None) -> None:
        """Drop the application's commands (global ones, or one guild's), as deleting them in
        the developer portal does."""
        self._commands.pop(guild_id, None)

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
        self._interactions[interaction.id] = InteractionState(interaction)
        self._tokens[interaction.token] = interaction.id
        payload = self._interaction_json(interaction)
        await self._hub.broadcast("INTERACTION_CREATE", lambda _intents: payload)
        return interaction

    async def press(self, message_id: int, custom_id: str, *, user_id: int | None = None
                    ) -> FakeInteraction:
        """A user presses a button the message shows: INTERACTION_CREATE type 3."""
        record = self._messages[message_id]
        buttons = {c.get("custom_id") for row in record.components
                   for c in row.get("components") or []}
        if custom_id not in buttons:
            raise LookupError(f"message {message_id} shows no button {custom_id!r}")
        return await self._interact(3, custom_id, record.channel_id, user_id,
                                    message_id=message_id)

    async def submit_modal(self, opened_by: FakeInteraction, values: Mapping[str, str], *,
                           user_id: int | None = None) -> FakeInteraction:
        """The user fills in the modal that `opened_by`'s callback opened and submits it."""
        modal = self._interactions[opened_by.id].modal
        if modal is None:
            raise LookupError("that interaction opened no modal")
        fields = {c["custom_id"] for row in modal["components"] for c in row["components"]}
        if not set(values) <= fields:
            raise LookupError(f"the modal has no field {sorted(set(values) - fields)}")
        return await self._interact(5, str(modal["custom_id"]), opened_by.channel_id,
                                    user_id, values=dict(values))

    async def react(self, message_id: int, emoji: str, *, user_id: int | None = None) -> None:
        """A user adds a unicode emoji reaction: MESSAGE_REACTION_ADD to those who asked for
        reaction events (GUILD_MESSAGE_REACTIONS, or DIRECT_MESSAGE_REACTIONS in DMs)."""
        record = self._messages[message_id]
        user_id = user_id if user_id is not None else self.default_user_id
        data: Json = {"user_id": str(user_id), "channel_id": str(record.channel_id),
                      "message_id": str(message_id), "emoji": {"id": None, "name": emoji},
                      "message_author_id": str(record.author_id), "burst": False, "type": 0}
        if record.guild_id is not None:
            data["guild_id"] = str(record.guild_id)
        wanted = INTENT_GUILD_MESSAGE_REACTIONS if record.guild_id else (
            INTENT_DIRECT_MESSAGE_REACTIONS)
        await self._hub.broadcast("MESSAGE_REACTION_ADD",
                                  lambda intents: data if intents & wanted else None)

    async def _interact(self, kind: int, custom_id: str, channel_id: int,
                        user_id: int | None, **extra: Any) -> FakeInteraction:
        user_id = user_id if user_id is not None else self.default_user_id
        interaction = FakeInteraction(
            id=self._ids.next(),
            token="aW50ZXJhY3Rpb24" + secrets.token_urlsafe(60),
            application_id=self.application_id,
            name="",
            options={},
            channel_id=channel_id,
            user_id=user_id,
            guild_id=self._guild_of(channel_id),
            dispatched_at=time.monotonic(),
            kind=kind,
            custom_id=custom_id,
            **extra,
        )
        self._interactions[interaction.id] = InteractionState(interaction)
        self._tokens[interaction.token] = interaction.id
        payload = self._interaction_json(interaction)
        await self._hub.broadcast("INTERACTION_CREATE", lambda _intents: payload)
        return interaction

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
        return json_response(
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
        return json_response(200, {"calls": calls, "next": len(self.calls)})

    async def _fake_messages(self, request: web.Request) -> web.Response:
        channel = int(request.query.get("channel") or self.channel_ids[0])
        return json_response(200, [_plain(m) for m in self.messages(channel)])

    async def _fake_interaction(self, request: web.Request) -> web.Response:
        interaction_id = int(request.match_info["interaction_id"])
        original = self.interaction_original(interaction_id)
        return json_response(
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
        return json_response(200, {"id": str(message_id)})

    async def _fake_slash(self, request: web.Request) -> web.Response:
        body = await request.json()
        interaction = await self.dispatch_slash(
            str(body["name"]),
            body.get("options") or {},
            channel_id=_optional_int(body.get("channel_id")),
            user_id=_optional_int(body.get("user_id")),
            guild=bool(body.get("guild", True)),
        )
        return json_response(200, _plain(interaction))


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
