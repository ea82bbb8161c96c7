"""Slash commands (/ask, /support, /reset) and registering them only when they changed."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands

from bot.adapters.discord.events import ask_key, commands_differ, guild_key, thread_name
from bot.adapters.discord.handoff import DiscordControls
from bot.adapters.discord.pages import Interaction
from bot.adapters.discord.replies import Replies
from bot.adapters.discord.surface import safe_mentions
from bot.config import ConfigError
from bot.conversation import Arrival, ConversationKey, Image, Incoming
from bot.formatting import neutralise_discord
from bot.inbound import Prepared
from bot.notices import unexpected_failure
from bot.ports import PlatformState

log = logging.getLogger(__name__)

Tree = app_commands.CommandTree[discord.Client]

SUPPORT_ELSEWHERE = (
    "/support opens a thread in a server text channel. Here, just write your question to me."
)
SUPPORT_OPENED = "I opened {thread} for you; the answer is on its way there."
SUPPORT_FAILED = "I couldn't open a support thread here (missing permissions?). Try /ask instead."
STALE_COMMAND = (
    "I don't have that command, or it has changed (Discord can take a few minutes to show "
    "the new list). Ask with /ask and your question."
)
RESET_DONE = "Done: your next message to me in DMs starts a new conversation."


def build_tree(client: discord.Client, replies: Replies, controls: DiscordControls) -> Tree:
    """The command tree: /ask, /support and /reset bound to `replies`; /escalate and /resolve
    to the handover `controls`."""
    tree: Tree = app_commands.CommandTree(client)
    slash = SlashCommands(replies)

    @tree.command(name="ask", description="Ask the support bot a question")
    @app_commands.describe(
        question="What do you need help with?",
        private="Only you see the answer",
        image="A screenshot or picture that shows the problem",
    )
    async def ask(
        interaction: Interaction,
        question: str,
        private: bool = False,
        image: discord.Attachment | None = None,
    ) -> None:
        await slash.ask(interaction, question, private, image)

    @tree.command(name="support", description="Open a private support thread with the bot")
    @app_commands.describe(topic="What is the problem?")
    async def support(interaction: Interaction, topic: str) -> None:
        await slash.support(interaction, topic)

    @tree.command(name="reset", description="Start a fresh conversation in DMs")
    async def reset(interaction: Interaction) -> None:
        await slash.reset(interaction)

    @tree.command(name="escalate", description="Hand this thread to a person from the team")
    async def escalate(interaction: Interaction) -> None:
        await controls.escalate(interaction)

    @tree.command(name="resolve", description="Give this thread back to the bot (the team)")
    async def resolve(interaction: Interaction) -> None:
        await controls.resolve(interaction)

    @tree.error
    async def on_error(interaction: Interaction, error: app_commands.AppCommandError) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        name = interaction.command.name if interaction.command else str(data.get("name", "?"))
        stale = isinstance(error, (app_commands.CommandNotFound,
                                   app_commands.CommandSignatureMismatch))
        if stale:  # a command list Discord has not refreshed yet, or one edited by hand
            log.warning("/%s is not a command this bot has (or its options changed); "
                        "told the user to use /ask", name)
        else:
            log.error("/%s failed: %s", name, type(error.__cause__ or error).__name__)
        if not interaction.response.is_done():  # never leave "did not respond" behind
            with contextlib.suppress(discord.HTTPException):
                await interaction.response.send_message(
                    STALE_COMMAND if stale else unexpected_failure(), ephemeral=True)

    return tree


class SlashCommands:
    """What each command does; the first visible sign always comes first."""

    def __init__(self, replies: Replies) -> None:
        self.replies = replies

    async def ask(
        self,
        interaction: Interaction,
        question: str,
        private: bool,
        image: discord.Attachment | None,
    ) -> None:
        async def prepare() -> Prepared | None:
            surface = self.replies.ask_surface(interaction, private)
            return await self.replies.prepared(
                surface, lambda: self._question(interaction, question, image)
            )

        # Its own queue: the 3 s to defer never wait behind another question. Interactions
        # are delivered once, so no look-up comes before the deferral.
        self.replies.take_in(str(interaction.id), f"ask-{interaction.id}", prepare, costly=False)

    async def _question(
        self, interaction: Interaction, question: str, image: discord.Attachment | None
    ) -> Incoming:
        images, notes = await self.replies.read_attachments([image] if image else [])
        channel_id = interaction.channel_id or interaction.user.id
        key = ask_key(interaction.guild_id, channel_id, interaction.id)
        return _incoming(interaction, key, question, images, notes)

    async def support(self, interaction: Interaction, topic: str) -> None:
        channel = interaction.channel
        if not isinstance(channel, discord.TextChannel):
            await interaction.response.send_message(SUPPORT_ELSEWHERE, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        thread = await _support_thread(interaction, channel, topic)
        if thread is None:
            return
        key = guild_key(channel.guild.id, channel.id, thread.id)

        async def question() -> Incoming:
            return _incoming(interaction, key, topic)

        async def prepare() -> Prepared | None:
            surface = self.replies.message_surface(thread, thread.id, interaction.user.id)
            return await self.replies.prepared(surface, question)

        # The thread's queue: a follow-up written there at once comes after the topic.
        self.replies.take_in(str(interaction.id), str(thread.id), prepare, costly=False)

    async def reset(self, interaction: Interaction) -> None:
        await self.replies.reset_dm(interaction.user.id)
        await interaction.response.send_message(RESET_DONE, ephemeral=True)


def _incoming(
    interaction: Interaction,
    key: ConversationKey,
    text: str,
    images: tuple[Image, ...] = (),
    notes: tuple[str, ...] = (),
) -> Incoming:
    return Incoming(
        key=key,
        author_id=str(interaction.user.id),
        author_name=interaction.user.display_name,
        text=text,
        event_id=str(interaction.id),
        arrival=Arrival.SLASH,
        images=images,
        notes=notes,
    )


async def _support_thread(
    interaction: Interaction, channel: discord.TextChannel, topic: str
) -> discord.Thread | None:
    """A private thread (public where private ones are refused) with the member and topic in."""
    user = interaction.user
    try:
        thread = await _new_thread(channel, thread_name(topic))
        await thread.add_user(user)
        text = f"{user.mention} asked: {neutralise_discord(topic)}"
        await thread.send(text[:2000], allowed_mentions=safe_mentions(user.id))
    except discord.HTTPException as error:
        log.warning("could not open a support thread (HTTP %s, code %s)", error.status, error.code)
        await interaction.edit_original_response(content=SUPPORT_FAILED)
        return None
    await interaction.edit_original_response(content=SUPPORT_OPENED.format(thread=thread.mention))
    return thread


async def _new_thread(channel: discord.TextChannel, name: str) -> discord.Thread:
    try:
        return await channel.create_thread(
            name=name, type=discord.ChannelType.private_thread, invitable=False
        )
    except discord.Forbidden:
        log.info("private threads are not allowed in this channel; opening a public one")
        return await channel.create_thread(name=name, type=discord.ChannelType.public_thread)


async def sync_if_changed(tree: Tree, state: PlatformState, guild_id: int | None) -> bool:
    """Register the commands (in one guild when set, else globally) unless Discord already has
    exactly these: one look at what the application has now, a write only on a difference.

    What Discord holds is the truth, not a note of our own: commands deleted in the developer
    portal, or replaced by another deployment of the same application, come back on the next
    start. Guild copies left from an earlier DISCORD_GUILD_ID are removed once the bot
    registers globally, so that guild does not list every command twice.
    """
    guild = discord.Object(guild_id) if guild_id is not None else None
    if guild is not None:
        tree.copy_global_to(guild=guild)
    desired = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    try:
        registered = await _registered(tree.client, guild_id)
        changed = commands_differ(desired, registered, in_guild=guild is not None)
        if changed:
            await tree.sync(guild=guild)
    except (discord.Forbidden, discord.NotFound) as error:
        if guild_id is None:
            raise
        raise ConfigError(
            f"DISCORD_GUILD_ID={guild_id}: Discord refused the commands there (HTTP "
            f"{error.status}, code {error.code}). Invite the bot to that server with the URL "
            "from `supportbot check`, or unset DISCORD_GUILD_ID"
        ) from None
    where = f"in guild {guild_id}" if guild_id else "globally (may take a while to appear)"
    if changed:
        log.info("registered %d slash commands %s (Discord had %d, not these)",
                 len(desired), where, len(registered))
    else:
        log.info("slash commands already registered %s; not registering them again", where)
    await _remember_guilds(tree, state, tree.client.application_id or 0, guild_id)
    return changed


async def _registered(client: discord.Client, guild_id: int | None) -> list[dict[str, Any]]:
    """The commands Discord holds for the application, as it sent them (one GET).

    Raw rather than tree.fetch_commands(): its AppCommand objects lose fields on the way
    (AppCommand.to_dict leaves out nsfw and permissions, and integration_types comes out empty).
    """
    application_id = client.application_id or 0
    if guild_id is None:
        held = await client.http.get_global_commands(application_id)
    else:
        held = await client.http.get_guild_commands(application_id, guild_id)
    return [dict(command) for command in held]


async def _remember_guilds(
    tree: Tree, state: PlatformState, application_id: int, guild_id: int | None
) -> None:
    """Note the development guild in use; once global, clear the guilds noted before."""
    name = f"commands:{application_id}:guilds"  # stored as discord:commands:…
    noted = {int(g) for g in (await state.get(name) or "").split(",") if g}
    if guild_id is not None:
        if guild_id not in noted:
            await state.set(name, ",".join(map(str, sorted(noted | {guild_id}))))
        return
    failed: list[int] = []
    for old in sorted(noted):
        try:
            tree.clear_commands(guild=discord.Object(old))
            await tree.sync(guild=discord.Object(old))
        except discord.HTTPException as error:  # e.g. the bot has left that guild
            log.warning("could not clear commands in guild %s (HTTP %s); will retry on the "
                        "next start", old, error.status)
            failed.append(old)
            continue
        log.info("removed the development copies of the commands from guild %s", old)
    if noted:
        await state.set(name, ",".join(map(str, failed)))
