"""The Discord adapter: slash commands, mentions, thread follow-ups and DMs, on discord.py.

It translates gateway events into Incoming values and hands them to the responder with a
Surface that streams the answer within Discord's limits (see surface.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.adapters.discord.commands import build_tree, sync_if_changed
from bot.adapters.discord.events import (
    MessageFacts,
    Route,
    guild_key,
    invite_permissions,
    invite_url,
    mentions_me,
    route_message,
    strip_mentions,
    thread_name,
)
from bot.adapters.discord.global_pace import GlobalPace, paced
from bot.adapters.discord.handoff import DiscordControls, DiscordEscalation
from bot.adapters.discord.replies import DiscordTiming, Replies
from bot.adapters.discord.resume import restore
from bot.config import Settings
from bot.conversation import Arrival, ConversationKey, Incoming, PageRef, Place, Platform
from bot.inbound import Prepared
from bot.ports import Ports
from bot.surface import Surface

log = logging.getLogger(__name__)

CONTENT_INTENT_HELP = (
    "Discord refused the MESSAGE_CONTENT intent: enable 'Message Content Intent' on the bot's "
    "page in the Discord developer portal, or set DISCORD_MESSAGE_CONTENT=false"
)


@contextlib.contextmanager
def local_endpoints(settings: Settings) -> Iterator[None]:
    """Aim discord.py's REST base and gateway at the configured URLs while inside."""
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    # A plain Client dials DEFAULT_GATEWAY directly; only AutoShardedClient asks /gateway/bot.
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


def quiet_voice() -> None:
    """supportbot never joins voice, so discord.py's missing-voice-library warnings are noise."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


def intents_for(settings: Settings) -> discord.Intents:
    """Guilds, guild and DM messages; message content only when the portal allows it."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.guild_reactions = True  # a ✅ on a handover summary gives the thread back
    intents.message_content = settings.discord_message_content
    return intents


class SupportClient(discord.Client):
    """discord.Client wired to the responder: one handler per kind of event."""

    def __init__(self, ports: Ports, timing: DiscordTiming | None = None, **options: Any) -> None:
        quiet_voice()
        super().__init__(
            intents=intents_for(ports.settings),
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.ports = ports
        bot = hashlib.sha256(ports.settings.discord_bot_token.value.encode()).hexdigest()[:12]
        paced(self, GlobalPace(ports.shared, bot=bot))  # 50 a second, all instances together
        self.replies = Replies(ports, timing or DiscordTiming())
        self.controls = DiscordControls(ports.handovers, self.replies.dm_conversation,
                                        ports.known)
        ports.handovers.escalations[Platform.DISCORD] = DiscordEscalation(self, ports.settings)
        self.tree = build_tree(self, self.replies, self.controls)

    async def setup_hook(self) -> None:
        await sync_if_changed(self.tree, self.ports.state, self.ports.settings.discord_guild_id)
        # Logged in, so REST works: finish what a stop cut off before new questions come.
        await self.ports.resume(self._restore)

    async def _restore(self, place: Place, pages: tuple[PageRef, ...]) -> Surface | None:
        return await restore(self, self.replies, place, pages)

    async def on_interaction(self, interaction: discord.Interaction[discord.Client]) -> None:
        """Our buttons and the 👎 form (slash commands go through the command tree)."""
        await self.controls.on_interaction(interaction)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.controls.on_reaction(payload)

    async def on_ready(self) -> None:
        shards = f" (shards {self.ports.settings.discord_shards})" if (
            self.ports.settings.discord_shards) else ""
        log.info("connected to Discord as %s in %d servers%s", self.user, len(self.guilds),
                 shards)
        self.ports.connected()

    async def on_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None:
            return
        route = route_message(self._facts(message, me.id))
        if route is Route.IGNORE:
            return
        # Messages of one channel reach the responder in arrival order, whatever each one
        # waits for first (store look-ups, typing, attachment downloads). Attachments are
        # costly, so a redelivery is looked up before downloading them.
        self.replies.take_in(str(message.id), str(message.channel.id),
                             lambda: self._prepared(message, route, me.id),
                             costly=bool(message.attachments))

    async def _prepared(self, message: discord.Message, route: Route, me: int) -> Prepared | None:
        key = await self._conversation(message, route)
        if key is None:
            return None
        channel, mention = message.channel, route is Route.MENTION
        reply_to = message.to_reference(fail_if_not_exists=False) if mention else None
        surface = self.replies.message_surface(channel, channel.id, message.author.id, reply_to)
        try:
            if await self.ports.handovers.rows.open_for(key) is not None:
                # A person handles this thread: the message is kept, and no "typing…"
                # promises an answer that will not come.
                return Prepared(await self._question(message, route, key, me), surface,
                                on_refused=surface.discard)
            # Typing is the first visible sign, so it goes before threads and downloads.
            return await self.replies.prepared(
                surface, lambda: self._question(message, route, key, me)
            )
        except discord.HTTPException as error:
            log.warning("could not answer a message (HTTP %s, code %s)", error.status,
                        error.code)
            return None

    def _facts(self, message: discord.Message, me: int) -> MessageFacts:
        guild, author = message.guild, message.author
        from_bot = author.bot or author.id == me or message.webhook_id is not None
        mentioned = False
        # A bot's message is ignored (the bot's own pages among them): its text is not scanned.
        if not from_bot:
            role = guild.self_role if guild is not None else None
            users = [user.id for user in message.mentions] + message.raw_mentions
            mentioned = mentions_me(users, message.raw_role_mentions, me,
                                    role.id if role else None)
        return MessageFacts(
            from_bot=from_bot,
            system=message.type not in (discord.MessageType.default, discord.MessageType.reply),
            in_guild=guild is not None,
            in_thread=isinstance(message.channel, discord.Thread),
            mentions_me=mentioned,
            content_intent=self.intents.message_content,
        )

    async def _conversation(self, message: discord.Message, route: Route) -> ConversationKey | None:
        """The conversation a message belongs to; None for thread messages that are not ours."""
        channel = message.channel
        if message.guild is None:
            return await self.replies.dm_conversation(message.author.id, channel.id)
        if isinstance(channel, discord.Thread):
            key = guild_key(message.guild.id, channel.parent_id, channel.id)
            if route is Route.THREAD and not await self.ports.known(key):
                return None
            return key
        # A mention in a channel: the thread made from this message will carry follow-ups.
        return guild_key(message.guild.id, channel.id, message.id)

    async def _question(
        self, message: discord.Message, route: Route, key: ConversationKey, me: int
    ) -> Incoming:
        role = message.guild.self_role if message.guild is not None else None
        text = strip_mentions(message.content, me, role.id if role else None)
        if route is Route.MENTION and isinstance(message.channel, discord.TextChannel):
            await _thread_from(message, message.channel, text)
        images, notes = await self.replies.read_attachments(message.attachments)
        return Incoming(
            key=key,
            author_id=str(message.author.id),
            author_name=message.author.display_name,
            text=text,
            event_id=str(message.id),
            arrival=_arrival(route),
            images=images,
            notes=notes,
        )

    async def close(self) -> None:
        """Let replies in flight end with a note while the connection still works, then close."""
        await self.replies.aclose()
        await super().close()


def _arrival(route: Route) -> Arrival:
    return {Route.DM: Arrival.DM, Route.MENTION: Arrival.MENTION}.get(route, Arrival.FOLLOW_UP)


async def _thread_from(message: discord.Message, channel: discord.TextChannel, text: str) -> None:
    """Open a thread on the question so follow-ups continue there without a mention."""
    try:
        await channel.create_thread(name=thread_name(text, "Question"), message=message)
    except discord.HTTPException as error:
        # 160004: a thread already exists on this message; 50013: no permission. Answer anyway.
        log.info("no thread on the question (HTTP %s, code %s)", error.status, error.code)


class ShardedSupportClient(SupportClient, discord.AutoShardedClient):
    """SupportClient over several gateway connections (SUPPORTBOT_DISCORD_SHARDS)."""


def make_client(ports: Ports) -> SupportClient:
    """One connection; one shard of several; or several shards (`auto`: as many as Discord
    recommends, from GET /gateway/bot). A guild's events come on the shard
    (guild_id >> 22) % count, DMs on shard 0 only."""
    plan = ports.settings.discord_shards
    if plan is None:
        return SupportClient(ports)
    if plan.auto:
        return ShardedSupportClient(ports)
    if plan.first == plan.last:
        return SupportClient(ports, shard_id=plan.first, shard_count=plan.count)
    return ShardedSupportClient(ports, shard_ids=plan.ids, shard_count=plan.count)


async def serve(ports: Ports, stop: asyncio.Event) -> None:
    """Answer on Discord until `stop` is set."""
    settings = ports.settings
    with local_endpoints(settings):
        client = make_client(ports)
        runner = asyncio.create_task(client.start(settings.discord_bot_token.value))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            await client.close()
            await _finished(runner, settings)


class DiscordStartError(RuntimeError):
    """Discord could not be reached or refused the setup; the message says which setting."""


def unreachable(settings: Settings, error: aiohttp.ClientConnectionError) -> DiscordStartError:
    """The error for a REST API that does not answer, naming the variable to check."""
    return DiscordStartError(
        f"cannot reach DISCORD_API_URL={settings.discord_api_url} ({type(error).__name__}); "
        "check the URL, or unset it to use Discord's"
    )


async def _finished(runner: asyncio.Task[None], settings: Settings) -> None:
    """Wait for the client task to end; explain the failures people can fix themselves."""
    try:
        await asyncio.wait_for(runner, 15)
    except aiohttp.ClientConnectionError as error:
        raise unreachable(settings, error) from None
    except discord.PrivilegedIntentsRequired:
        log.error(CONTENT_INTENT_HELP)
        raise
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_BOT_TOKEN; copy it again from the developer portal")
        raise
    except discord.ConnectionClosed as error:
        why = FATAL_CLOSE.get(error.code or 0)
        if why is None:
            raise
        raise DiscordStartError(f"the Discord gateway closed the connection with {error.code}: "
                                f"{why}") from None


# Gateway close codes after which Discord will not take the connection back (discord.py
# stops instead of reconnecting), with what to do about each.
FATAL_CLOSE = {
    4004: "it rejected DISCORD_BOT_TOKEN; copy the token again from the developer portal "
          "(Bot → Reset Token)",
    4010: "an invalid shard was sent; this is a bug, please report it",
    4011: "the bot is in too many servers for one connection and needs sharding",
    4012: "the gateway API version is no longer served; upgrade supportbot",
    4013: "the intents sent are invalid; this is a bug, please report it",
    4014: "an intent the bot asks for is not enabled: turn on 'Message Content Intent' on the "
          "bot's page in the developer portal, or set DISCORD_MESSAGE_CONTENT=false",
}


async def check(settings: Settings) -> list[str]:
    """Reach Discord with the configured token; lines to print, including the invite URL."""
    quiet_voice()
    with local_endpoints(settings):
        client = discord.Client(intents=discord.Intents.none())
        try:
            await client.login(settings.discord_bot_token.value)
            me = client.user
            app = await client.application_info()
        except aiohttp.ClientConnectionError as error:
            raise unreachable(settings, error) from None
        finally:
            await client.close()
    lines = [
        f"reached {settings.discord_api_url} as {me} (application {app.id})",
        f"invite: {invite_url(app.id, invite_permissions())}",
    ]
    portal_allows = app.flags.gateway_message_content or app.flags.gateway_message_content_limited
    if settings.discord_message_content and not portal_allows:
        lines.append("WARNING: " + CONTENT_INTENT_HELP)
    elif not settings.discord_message_content:
        lines.append("message content intent off: thread follow-ups need a mention "
                     "(set DISCORD_MESSAGE_CONTENT=true once it is enabled in the portal)")
        if settings.escalation_discord_channel:
            lines.append("handovers: without the message content intent the team's replies in "
                         "a handed-over thread are not kept; the bot records only that a "
                         "person handled it")
    if settings.escalation_discord_channel:
        lines.append(f"handovers go to channel {settings.escalation_discord_channel}; invite "
                     "the bot there with Send Messages")
    return lines
