"""The fake Discord server over real sockets, including a real discord.py Client against it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import warnings
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from tests.fakes.discord import FakeDiscord

with warnings.catch_warnings():
    # discord.py imports audioop, deprecated since Python 3.11; pytest turns that into an error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket

TOKEN = "test-discord-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}
REPO = Path(__file__).resolve().parents[1]
ZLIB_SUFFIX = b"\x00\x00\xff\xff"


@contextlib.contextmanager
def pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Aim discord.py's REST base and gateway at the fake, restoring both afterwards."""
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


class Bot(discord.Client):
    """A minimal client recording readiness and incoming messages."""

    def __init__(self, intents: discord.Intents) -> None:
        # A short guild_ready_timeout keeps on_ready from waiting the default 2 s.
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = discord.app_commands.CommandTree(self)
        self.ready = asyncio.Event()
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        if self.user is None or message.author.id != self.user.id:
            self.inbox.put_nowait(message)


@contextlib.asynccontextmanager
async def running(bot: Bot, fake: FakeDiscord) -> AsyncIterator[Bot]:
    """Start `bot` against the fake, wait for on_ready, and close it cleanly afterwards."""
    with pointed_at(fake):
        task = asyncio.create_task(bot.start(TOKEN))
        try:
            await asyncio.wait_for(bot.ready.wait(), 10)
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)


def content_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


async def rest(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any, Any]:
    """One authorised REST call: (status, JSON body or None, headers)."""
    async with session.request(method, url, json=body, headers=AUTH) as response:
        data = await response.json() if response.status != 204 else None
        return response.status, data, response.headers


# --- a real discord.py client --------------------------------------------------------------


async def test_real_client_reaches_ready_and_receives_a_message() -> None:
    async with FakeDiscord() as fake, running(Bot(content_intents()), fake) as bot:
        assert bot.user is not None and bot.user.id == fake.bot_user_id
        guild = bot.get_guild(fake.guild_id)
        assert guild is not None and guild.get_channel(fake.channel_ids[0]) is not None
        await fake.wait_ready(1)
        assert fake.identify is not None and fake.identify["intents"] == content_intents().value

        message_id = await fake.dispatch_message("how do I reset my password?")
        message = await asyncio.wait_for(bot.inbox.get(), 5)

    assert message.id == message_id
    assert message.content == "how do I reset my password?"
    assert message.guild is not None and message.guild.id == fake.guild_id


async def test_real_client_writes_within_the_channel_bucket_without_429() -> None:
    fake = FakeDiscord(channel_bucket_limit=2, channel_bucket_window=0.3)
    async with fake, running(Bot(content_intents()), fake) as bot:
        channel = bot.get_channel(fake.channel_ids[0])
        assert isinstance(channel, discord.TextChannel)
        sent = [await channel.send(f"part {i}") for i in range(4)]
        await sent[0].edit(content="part 0, edited")

    stored = fake.messages(fake.channel_ids[0])
    assert [m.content for m in stored] == ["part 0, edited", "part 1", "part 2", "part 3"]
    assert stored[0].edits == 1 and stored[0].author_id == fake.bot_user_id
    # discord.py read the X-RateLimit headers and waited instead of hitting the limit.
    assert fake.rate_limited == 0


async def test_real_client_syncs_and_answers_a_slash_command() -> None:
    fake = FakeDiscord()
    bot = Bot(content_intents())

    @bot.tree.command(name="ask", description="Ask the support bot")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content=f"answer: {question}")
        await interaction.followup.send("anything else?", ephemeral=True)

    async with fake, running(bot, fake):
        await bot.tree.sync()
        interaction = await fake.dispatch_slash("ask", {"question": "billing?"})

        def answered() -> bool:
            return len(fake.followups(interaction.id)) == 1

        await fake.wait_for(answered, 5)

    assert [c["name"] for c in fake.registered_commands] == ["ask"]
    assert fake.registered_commands[0]["options"][0]["name"] == "question"
    original = fake.interaction_original(interaction.id)
    assert original is not None and original.content == "answer: billing?"
    assert original.history == ("", "answer: billing?")
    callback = fake.interaction_callback(interaction.id)
    assert callback is not None and callback[0] == 5 and callback[1] < 3.0
    assert fake.followups(interaction.id)[0].flags & 64


# --- REST behaviour ------------------------------------------------------------------------


async def test_requests_without_the_bot_token_get_401() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        async with session.get(fake.api_url + "/users/@me") as response:
            assert response.status == 401
            assert await response.json() == {"message": "401: Unauthorized", "code": 0}


async def test_content_over_2000_characters_is_rejected_with_50035() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        url = f"{fake.api_url}/channels/{fake.channel_ids[0]}/messages"
        status, body, _ = await rest(session, "POST", url, {"content": "x" * 2001})
        ok_status, _, _ = await rest(session, "POST", url, {"content": "x" * 2000})

    assert status == 400
    assert body == {
        "code": 50035,
        "errors": {
            "content": {
                "_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
                ]
            }
        },
        "message": "Invalid Form Body",
    }
    assert ok_status == 200
    assert len(fake.messages(fake.channel_ids[0])) == 1


async def test_spent_channel_bucket_answers_429_with_headers_and_changes_nothing() -> None:
    fake = FakeDiscord(channel_bucket_limit=3, channel_bucket_window=0.5)
    async with fake, aiohttp.ClientSession() as session:
        url = f"{fake.api_url}/channels/{fake.channel_ids[0]}/messages"
        results = [await rest(session, "POST", url, {"content": f"m{i}"}) for i in range(4)]
        await asyncio.sleep(0.55)
        after_reset, _, _ = await rest(session, "POST", url, {"content": "later"})

    remaining = [headers["X-RateLimit-Remaining"] for _, _, headers in results[:3]]
    assert remaining == ["2", "1", "0"]
    status, body, headers = results[3]
    assert status == 429
    assert body["message"] == "You are being rate limited."
    assert body["global"] is False and 0 < body["retry_after"] <= 0.5
    assert headers["X-RateLimit-Limit"] == "3" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Scope"] == "user" and int(headers["Retry-After"]) >= 1
    assert headers["X-RateLimit-Bucket"] == results[0][2]["X-RateLimit-Bucket"]
    assert float(headers["X-RateLimit-Reset-After"]) > 0 and "X-RateLimit-Reset" in headers
    assert fake.rate_limited == 1 and after_reset == 200
    assert [m.content for m in fake.messages(fake.channel_ids[0])] == ["m0", "m1", "m2", "later"]


async def test_channel_buckets_slide_one_request_free_per_step() -> None:
    # Discord's route limits are sliding windows since 2022 (discord-api-docs#7680).
    fake = FakeDiscord(channel_bucket_limit=4, channel_bucket_window=0.4)
    async with fake, aiohttp.ClientSession() as session:
        url = f"{fake.api_url}/channels/{fake.channel_ids[0]}/messages"
        burst = [await rest(session, "POST", url, {"content": f"m{i}"}) for i in range(5)]
        await asyncio.sleep(0.12)  # one step (0.1 s) frees one request, not the whole window
        one_more, _, headers = await rest(session, "POST", url, {"content": "one more"})
        refused, body, _ = await rest(session, "POST", url, {"content": "too soon"})

    assert [status for status, _, _ in burst] == [200, 200, 200, 200, 429]
    resets = [float(h["X-RateLimit-Reset-After"]) for _, _, h in burst[:4]]
    assert resets == sorted(resets) and resets[-1] > 0.3  # the reset moves out with each write
    assert 0 < burst[4][1]["retry_after"] <= 0.11  # the next free request, not the whole window
    assert one_more == 200 and headers["X-RateLimit-Remaining"] == "0"
    assert refused == 429 and body["retry_after"] <= 0.11


async def test_creates_and_edits_share_a_bucket_hash_but_count_apart() -> None:
    # discord-api-docs#8073: one X-RateLimit-Bucket, separate counters per method.
    fake = FakeDiscord(channel_bucket_limit=2, channel_bucket_window=5.0)
    async with fake, aiohttp.ClientSession() as session:
        url = f"{fake.api_url}/channels/{fake.channel_ids[0]}/messages"
        posts = [await rest(session, "POST", url, {"content": f"m{i}"}) for i in range(3)]
        message = posts[0][1]["id"]
        edits = [await rest(session, "PATCH", f"{url}/{message}", {"content": f"e{i}"})
                 for i in range(3)]
        deleted, _, deletion = await rest(session, "DELETE", f"{url}/{posts[1][1]['id']}")

    assert [p[0] for p in posts] == [200, 200, 429] and [e[0] for e in edits] == [200, 200, 429]
    assert posts[0][2]["X-RateLimit-Bucket"] == edits[0][2]["X-RateLimit-Bucket"]
    assert edits[0][2]["X-RateLimit-Remaining"] == "1"  # the creates did not spend the edits
    assert deleted == 204 and deletion["X-RateLimit-Bucket"] != posts[0][2]["X-RateLimit-Bucket"]


async def test_the_global_limit_counts_every_route_but_interaction_endpoints() -> None:
    fake = FakeDiscord(global_limit=3)
    async with fake, aiohttp.ClientSession() as session:
        me = [await rest(session, "GET", f"{fake.api_url}/users/@me") for _ in range(2)]
        typing = f"{fake.api_url}/channels/{fake.channel_ids[0]}/typing"
        statuses = [(await rest(session, "POST", typing))[0] for _ in range(2)]
        async with session.post(typing, headers=AUTH) as response:
            refused, body, headers = response.status, await response.json(), response.headers
        interaction = await fake.dispatch_slash("ask", {})
        callback = f"{fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
        exempt, _, _ = await rest(session, "POST", callback, {"type": 5})

    assert [status for status, _, _ in me] == [200, 200] and statuses == [204, 429]
    assert refused == 429 and body["global"] is True
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert "X-RateLimit-Bucket" not in headers and int(headers["Retry-After"]) >= 1
    assert exempt == 204  # interaction endpoints are not bound by the global limit


async def test_allowed_mentions_are_recorded_and_respected() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        url = f"{fake.api_url}/channels/{fake.channel_ids[0]}/messages"
        text = f"@everyone see <@{fake.default_user_id}> and <@&{fake.support_role_id}>"
        quiet = {"content": text, "allowed_mentions": {"parse": []}}
        await rest(session, "POST", url, quiet)
        await rest(session, "POST", url, {"content": text})

    silent, loud = fake.messages(fake.channel_ids[0])
    assert silent.allowed_mentions == {"parse": []} and silent.pinged == frozenset()
    assert loud.allowed_mentions is None
    assert loud.pinged == {
        "everyone",
        f"user:{fake.default_user_id}",
        f"role:{fake.support_role_id}",
    }


async def test_private_threads_can_be_refused_and_message_threads_take_the_message_id() -> None:
    fake = FakeDiscord(private_threads_allowed=False)
    async with fake, aiohttp.ClientSession() as session:
        base = f"{fake.api_url}/channels/{fake.channel_ids[0]}"
        private = await rest(session, "POST", base + "/threads", {"name": "help", "type": 12})
        question = await fake.dispatch_message("help please")
        public = await rest(session, "POST", f"{base}/messages/{question}/threads", {"name": "q"})
        again = await rest(session, "POST", f"{base}/messages/{question}/threads", {"name": "q"})
        join = await rest(session, "PUT", f"{fake.api_url}/channels/{question}/thread-members/42")

    assert private[:2] == (403, {"message": "Missing Permissions", "code": 50013})
    assert public[0] == 201 and public[1]["id"] == str(question) and public[1]["type"] == 11
    assert again[0] == 400 and again[1]["code"] == 160004
    assert join[0] == 204
    (thread,) = fake.threads
    assert thread.id == question and thread.members == {fake.bot_user_id, 42}


# --- interactions --------------------------------------------------------------------------


async def test_callback_after_the_deadline_is_unknown_interaction() -> None:
    async with FakeDiscord(interaction_deadline=0.1) as fake, aiohttp.ClientSession() as session:
        interaction = await fake.dispatch_slash("ask", {"question": "slow?"})
        await asyncio.sleep(0.15)
        url = f"{fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
        status, body, _ = await rest(session, "POST", url, {"type": 5})

    assert (status, body) == (404, {"message": "Unknown interaction", "code": 10062})
    assert fake.interaction_original(interaction.id) is None


async def test_second_callback_is_already_acknowledged() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        interaction = await fake.dispatch_slash("ask", {"question": "twice?"})
        url = f"{fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
        first = await rest(session, "POST", url + "?with_response=true", {"type": 5})
        second = await rest(session, "POST", url, {"type": 4, "data": {"content": "hi"}})

    assert first[0] == 200 and first[1]["interaction"]["response_message_loading"] is True
    assert second[:2] == (
        400,
        {"message": "Interaction has already been acknowledged.", "code": 40060},
    )


async def test_interaction_webhook_token_expires() -> None:
    fake = FakeDiscord(interaction_token_ttl=0.2)
    async with fake, aiohttp.ClientSession() as session:
        interaction = await fake.dispatch_slash("ask", {"question": "later?"})
        callback = f"{fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
        original = f"{fake.api_url}/webhooks/{fake.application_id}/{interaction.token}"
        original += "/messages/@original"
        await rest(session, "POST", callback, {"type": 5, "data": {"flags": 64}})
        edited = await rest(session, "PATCH", original, {"content": "partial"})
        await asyncio.sleep(0.25)
        expired = await rest(session, "PATCH", original, {"content": "final"})

    assert edited[0] == 200 and edited[1]["content"] == "partial"
    assert expired[:2] == (401, {"message": "Invalid Webhook Token", "code": 50027})
    stored = fake.interaction_original(interaction.id)
    assert stored is not None and stored.content == "partial" and stored.flags == 64


async def test_each_interaction_webhook_has_its_own_bucket() -> None:
    fake = FakeDiscord(webhook_bucket_limit=2, webhook_bucket_window=0.5)
    async with fake, aiohttp.ClientSession() as session:
        statuses = []
        for interaction in [await fake.dispatch_slash("ask", {}) for _ in range(2)]:
            callback = f"{fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
            await rest(session, "POST", callback, {"type": 5})
            hook = f"{fake.api_url}/webhooks/{fake.application_id}/{interaction.token}"
            for text in ("a", "b", "c"):
                status, _, _ = await rest(
                    session, "PATCH", hook + "/messages/@original", {"content": text}
                )
                statuses.append(status)
            original = fake.interaction_original(interaction.id)
            assert original is not None and original.content == "b"

    assert statuses == [200, 200, 429, 200, 200, 429]


# --- the gateway, spoken raw ---------------------------------------------------------------


class RawGateway:
    """A bare gateway client that inflates zlib-stream frames like discord.py does."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._inflate = zlib.decompressobj()
        self._buffer = bytearray()

    async def receive(self) -> dict[str, Any]:
        for _ in range(100):
            frame = await self.ws.receive(timeout=5)
            if frame.type == aiohttp.WSMsgType.TEXT:
                return dict(json.loads(frame.data))
            assert frame.type == aiohttp.WSMsgType.BINARY, frame
            self._buffer.extend(frame.data)
            if bytes(self._buffer).endswith(ZLIB_SUFFIX):
                text = self._inflate.decompress(bytes(self._buffer))
                self._buffer.clear()
                return dict(json.loads(text))
        raise AssertionError("no complete gateway payload")

    async def dispatch(self, event: str) -> dict[str, Any]:
        for _ in range(20):
            payload = await self.receive()
            if payload.get("t") == event:
                return dict(payload["d"])
        raise AssertionError(f"no {event}")


async def identify(session: aiohttp.ClientSession, fake: FakeDiscord, intents: int) -> RawGateway:
    ws = await session.ws_connect(fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream")
    gateway = RawGateway(ws)
    hello = await gateway.receive()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
    await ws.send_json({"op": 1, "d": None})
    assert (await gateway.receive())["op"] == 11
    await ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": intents, "properties": {}}})
    return gateway


async def test_message_content_intent_hides_content_except_mentions_and_dms() -> None:
    no_content = (1 << 0) | (1 << 9) | (1 << 12)
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        gateway = await identify(session, fake, no_content)
        ready = await gateway.dispatch("READY")
        await gateway.dispatch("GUILD_CREATE")
        await fake.dispatch_message("plain words")
        plain = await gateway.dispatch("MESSAGE_CREATE")
        await fake.dispatch_message("hello bot", mentions_bot=True)
        mention = await gateway.dispatch("MESSAGE_CREATE")
        await fake.dispatch_message("in private", guild=False)
        direct = await gateway.dispatch("MESSAGE_CREATE")
        await gateway.ws.close()

    assert ready["user"]["id"] == str(fake.bot_user_id) and ready["v"] == 10
    assert plain["content"] == "" and plain["guild_id"] == str(fake.guild_id)
    assert mention["content"] == f"<@{fake.bot_user_id}> hello bot"
    assert direct["content"] == "in private" and "guild_id" not in direct
    assert fake.messages(fake.channel_ids[0])[0].content == "plain words"


async def test_gateway_closes_4004_on_a_bad_token() -> None:
    async with FakeDiscord(token="right") as fake, aiohttp.ClientSession() as session:
        gateway = await identify(session, fake, 1)
        frame = await gateway.ws.receive(timeout=5)

    assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 4004
    assert fake.identify is None


# --- out of process ------------------------------------------------------------------------


async def test_cli_prints_ready_serves_control_routes_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.discord",
        "--port",
        "0",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert line.startswith("READY http://127.0.0.1:")
        base = line.split(" ", 1)[1]
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/_fake/message", json={"content": "hi"}) as response:
                assert response.status == 200
            async with session.get(base + "/_fake/messages") as response:
                assert [m["content"] for m in await response.json()] == ["hi"]
            async with session.get(base + "/_fake/stats") as response:
                assert (await response.json())["rate_limited"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0
