"""Discord's side of handovers and feedback: the summary in the escalation channel (the one
place the bot pings: the team's role), the buttons and the 👎 form, /escalate and /resolve,
and a ✅ on the summary that gives the thread back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import discord

from bot.adapters.discord.buttons import (
    FORM,
    HELPFUL,
    NOT_HELPFUL,
    PERSON,
    RESOLVE,
    FeedbackForm,
    form_text,
    parse,
    summary_view,
)
from bot.adapters.discord.events import guild_key
from bot.adapters.discord.pages import Interaction
from bot.config import Settings
from bot.conversation import DM_WORKSPACE, ConversationKey
from bot.formatting import neutralise_discord
from bot.handoff import (
    THANKS,
    HandoffSummary,
    clip,
    quoted,
    summary_message,
    summary_place,
)
from bot.handovers import Handovers, key_of
from bot.notices import unexpected_failure
from bot.surface import Posted

log = logging.getLogger(__name__)

RESOLVED_EMOJI = frozenset({"✅", "☑️", "✔️"})
THANKS_FORM = "Thanks, the team will read it."
ESCALATE_WHERE = ("Use /escalate in the thread of your question, or press **Talk to a person** "
                  "under an answer.")
NOT_HANDED_OVER = "This thread is not with a person right now."
ONLY_THE_TEAM = "Only someone from the team can give this thread back to the bot."
GIVEN_BACK_DONE = "Done: the bot answers in this thread again."


def thread_channel(key: ConversationKey) -> int:
    """The channel the conversation's messages go to: its thread, or (DMs and /ask) its
    channel."""
    if key.workspace == DM_WORKSPACE or key.thread.startswith("ask-"):
        return int(key.channel)
    return int(key.thread)


def thread_link(key: ConversationKey) -> str:
    guild = "@me" if key.workspace == DM_WORKSPACE else key.workspace
    return f"https://discord.com/channels/{guild}/{thread_channel(key)}"


def summary_text(summary: HandoffSummary, role: str) -> str:
    """The summary as Discord Markdown; people's words are made unable to ping."""
    ping = f"<@&{role}> " if role else ""
    where = ("in a direct message with the bot, which the team cannot see: message them "
             "directly" if summary.private else thread_link(summary.key))
    lines = [f"{ping}**Handover:** <@{summary.asker_id}> {summary.why.replace('*', '**')} — "
             f"{where}"]
    if summary.question:
        lines.append("**Question**\n" + quoted(_plain(summary.question, 500)))
    if summary.answer:
        lines.append("**The bot answered**\n" + quoted(_plain(summary.answer, 700)))
    if summary.request:
        lines.append("**Then asked for a person**\n" + quoted(_plain(summary.request, 300)))
    if summary.sources:
        lines.append("**Sources it was given:** " + " · ".join(
            f"[{neutralise_discord(title)}](<{url}>)" if url.startswith("http") else
            neutralise_discord(title) for title, url in summary.sources[:4]))
    lines.append("React ✅ here or press **Mark resolved** to give the thread back to the bot.")
    return "\n".join(lines)[:2000]


def _plain(text: str, limit: int) -> str:
    """Words shown as written: no links, code blocks or pings of their own in the summary."""
    return neutralise_discord(discord.utils.escape_markdown(clip(text, limit)))


class DiscordEscalation:
    """Posts summaries to SUPPORTBOT_ESCALATION_DISCORD_CHANNEL and notes in threads."""

    def __init__(self, client: discord.Client, settings: Settings) -> None:
        self.client = client
        self.channel = settings.escalation_discord_channel
        self.role = next((m for m in settings.escalation_mention.split(",") if m.isdigit()), "")

    @property
    def configured(self) -> bool:
        return bool(self.channel)

    async def post(self, summary: HandoffSummary) -> Posted | None:
        channel = self.client.get_partial_messageable(int(self.channel))
        # The role is the only mention allowed anywhere in the bot, and only here.
        allowed = discord.AllowedMentions(everyone=False, users=False, replied_user=False,
                                          roles=[discord.Object(int(self.role))] if self.role
                                          else False)
        try:
            sent = await channel.send(summary_text(summary, self.role), allowed_mentions=allowed,
                                      view=summary_view(summary.key.id), suppress_embeds=True)
        except discord.HTTPException as error:
            log.warning("could not post to the escalation channel (HTTP %s, code %s)",
                        error.status, error.code)
            return None
        return Posted(summary_place(sent.channel.id, sent.id), thread_link(summary.key))

    def is_private(self, key: ConversationKey) -> bool:
        # A DM, or an /ask answer (no thread to reply in; private ones only the asker sees).
        return key.workspace == DM_WORKSPACE or key.thread.startswith("ask-")

    async def mark_resolved(self, summary_place: str, resolver: str) -> None:
        channel_id, message_id = summary_message(summary_place)
        channel = self.client.get_partial_messageable(int(channel_id))
        message = await channel.fetch_message(int(message_id))
        who = f" by <@{resolver}>" if resolver else ""
        await message.edit(content=f"{message.content}\n✅ Resolved{who}."[:2000], view=None,
                           allowed_mentions=discord.AllowedMentions.none())

    async def say(self, key: ConversationKey, text: str) -> None:
        if key.thread.startswith("ask-"):
            return  # an /ask answer has no thread of its own to say it in
        channel = self.client.get_partial_messageable(thread_channel(key))
        await channel.send(neutralise_discord(text),
                           allowed_mentions=discord.AllowedMentions.none())


DmConversation = Callable[[int, int], Awaitable[ConversationKey]]
Known = Callable[[ConversationKey], Awaitable[bool]]


class DiscordControls:
    """Handles our buttons, the 👎 form, /escalate, /resolve and ✅ reactions."""

    def __init__(self, handovers: Handovers, dm_conversation: DmConversation,
                 known: Known) -> None:
        self.handovers = handovers
        self.dm_conversation = dm_conversation
        self.known = known  # whether the bot holds a conversation

    async def on_interaction(self, interaction: Interaction) -> None:
        data: Mapping[str, Any] = interaction.data or {}
        found = parse(str(data.get("custom_id") or ""))
        if found is None or interaction.type not in (discord.InteractionType.component,
                                                     discord.InteractionType.modal_submit):
            return
        action, value = found
        try:
            if action in (HELPFUL, NOT_HELPFUL):
                await self._vote(interaction, value, action == HELPFUL)
            elif action == FORM:
                await self._form(interaction, value)
            elif action == PERSON:
                await self._person(interaction, value)
            elif action == RESOLVE:
                await self._resolve(interaction, value)
        except discord.HTTPException as error:
            log.warning("a button's answer failed (HTTP %s, code %s)", error.status, error.code)

    async def _vote(self, interaction: Interaction, reply: str, helpful: bool) -> None:
        # The interaction is answered first (3 s), the vote written after.
        if helpful:
            await interaction.response.send_message(THANKS, ephemeral=True)
        else:  # the form must be the interaction's first answer
            await interaction.response.send_modal(FeedbackForm(reply))
        if reply.isdigit():
            await self.handovers.rows.vote(int(reply), f"discord:{interaction.user.id}",
                                           1 if helpful else -1)

    async def _form(self, interaction: Interaction, reply: str) -> None:
        await interaction.response.send_message(THANKS_FORM, ephemeral=True)
        text = form_text(interaction.data)
        if reply.isdigit() and text:
            await self.handovers.rows.comment(int(reply), f"discord:{interaction.user.id}", text)

    async def _person(self, interaction: Interaction, reply: str) -> None:
        if not reply.isdigit():
            await interaction.response.send_message(ESCALATE_WHERE, ephemeral=True)
            return
        await interaction.response.defer(thinking=True, ephemeral=True)  # for the clicker
        try:
            told = await self.handovers.hand_over_reply(
                int(reply), str(interaction.user.id), interaction.user.display_name)
        except Exception:  # never leave "thinking…" behind
            log.exception("handing over failed")
            told = unexpected_failure()
        await interaction.edit_original_response(
            content=neutralise_discord(told), allowed_mentions=discord.AllowedMentions.none())

    async def _resolve(self, interaction: Interaction, conversation: str) -> None:
        await interaction.response.defer()  # a deferred update: the summary is edited after
        try:
            key = key_of(conversation)
        except ValueError:
            return
        if await self.handovers.give_back(key, str(interaction.user.id)):
            return  # the summary is marked on the way
        if interaction.message is not None:  # a stale button: it goes, the text stays
            await interaction.message.edit(view=None)

    async def escalate(self, interaction: Interaction) -> None:
        await interaction.response.defer(thinking=True)
        key = await self._conversation_here(interaction)
        if key is None or not await self.known(key):
            await interaction.edit_original_response(content=ESCALATE_WHERE)
            return
        try:
            told = await self.handovers.hand_over(key, str(interaction.user.id),
                                                  interaction.user.display_name, "command")
        except Exception:  # never leave "thinking…" behind
            log.exception("handing over failed")
            told = unexpected_failure()
        await interaction.edit_original_response(
            content=neutralise_discord(told), allowed_mentions=discord.AllowedMentions.none())

    async def resolve(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = await self._conversation_here(interaction)
        handoff = await self.handovers.rows.open_for(key) if key is not None else None
        if key is None or handoff is None:
            await interaction.edit_original_response(content=NOT_HANDED_OVER)
        elif handoff.asker_id == str(interaction.user.id):
            await interaction.edit_original_response(content=ONLY_THE_TEAM)
        else:
            await interaction.edit_original_response(content=GIVEN_BACK_DONE)
            await self.handovers.give_back(key, str(interaction.user.id))

    async def _conversation_here(self, interaction: Interaction) -> ConversationKey | None:
        channel = interaction.channel
        if interaction.guild_id is None:
            return await self.dm_conversation(interaction.user.id, interaction.channel_id or 0)
        if isinstance(channel, discord.Thread) and channel.parent_id is not None:
            return guild_key(interaction.guild_id, channel.parent_id, channel.id)
        return None

    async def on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.emoji.name not in RESOLVED_EMOJI:
            return
        place = summary_place(payload.channel_id, payload.message_id)
        await self.handovers.give_back_summary(place, str(payload.user_id))
