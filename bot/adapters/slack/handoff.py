"""Slack's side of handovers and feedback: the summary in the escalation channel, the
buttons under answers, the 👎 form, and ✅ reactions that give a thread back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.controls import (
    FORM,
    FORM_BLOCK,
    FORM_INPUT,
    HANDOFF,
    HELPFUL,
    NOT_HELPFUL,
    RESOLVE,
    feedback_form,
    summary_blocks,
)
from bot.adapters.slack.surface import error_code
from bot.config import Settings
from bot.conversation import ConversationKey, Platform
from bot.formatting import escape_slack, neutralise_mentions
from bot.handoff import (
    NOT_YOURS,
    THANKS,
    HandoffSummary,
    clip,
    quoted,
    summary_message,
    summary_place,
)
from bot.handovers import Handovers, key_of
from bot.mrkdwn import to_mrkdwn
from bot.surface import Posted

log = logging.getLogger(__name__)

RESOLVED_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark", "ballot_box_with_check"})
ALREADY_BACK = "This thread is already back with the bot."


def summary_text(summary: HandoffSummary, mention: str, link: str) -> str:
    """The summary as mrkdwn: the only message that may ping (the team's user group)."""
    group = next((m for m in mention.split(",") if m.startswith("S")), "")
    ping = f"<!subteam^{group}> " if group else ""
    where = f" in <#{summary.key.channel}>" if summary.key.channel[:1] in "CG" else ""
    # Named, not mentioned: a mention would notify the asker if they are in this channel.
    who = f"{escape_slack(summary.asker_name)} (`{summary.asker_id}`)" if summary.asker_name \
        else f"`{summary.asker_id}`"
    if summary.private:
        where = (" in a direct message with the bot, which the team cannot see: message "
                 f"<@{summary.asker_id}> directly")
    lines = [f"{ping}*Handover:* {who} {summary.why}{where}."]
    if summary.question:
        lines.append("*Question*\n" + quoted(_plain(summary.question)))
    if summary.answer:
        lines.append("*The bot answered*\n" + quoted(to_mrkdwn(clip(summary.answer))))
    if summary.request:
        lines.append("*Then asked for a person*\n" + quoted(_plain(summary.request)))
    if summary.sources:
        lines.append("*Sources it was given:* " + " · ".join(
            f"<{url}|{escape_slack(title)}>" if url.startswith("http") else escape_slack(title)
            for title, url in summary.sources[:4]))
    if link and not summary.private:
        lines.append(f"<{link}|Open the thread> · react ✅ here or press *Mark resolved* to "
                     "give it back to the bot")
    elif summary.private:
        lines.append("React ✅ here or press *Mark resolved* when they are helped, so the bot "
                     "answers them again")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """A person's words, shown as they wrote them and unable to ping anyone."""
    return escape_slack(neutralise_mentions(clip(text)))


class SlackEscalation:
    """Posts summaries to SUPPORTBOT_ESCALATION_SLACK_CHANNEL and notes in threads."""

    def __init__(self, client: AsyncWebClient, settings: Settings) -> None:
        self.client = client
        self.channel = settings.escalation_slack_channel
        self.mention = settings.escalation_mention

    @property
    def configured(self) -> bool:
        return bool(self.channel)

    async def post(self, summary: HandoffSummary) -> Posted | None:
        link = await self._permalink(summary.key)
        text = summary_text(summary, self.mention, link)
        try:
            posted = await self.client.chat_postMessage(
                channel=self.channel, text=text, blocks=summary_blocks(text, summary.key.id),
                unfurl_links=False, unfurl_media=False)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not post to the escalation channel: %s", _why(error))
            return None
        return Posted(summary_place(str(posted["channel"]), str(posted["ts"])), link)

    async def say(self, key: ConversationKey, text: str) -> None:
        await self.client.chat_postMessage(channel=key.channel, thread_ts=key.thread,
                                           text=to_mrkdwn(text))

    def is_private(self, key: ConversationKey) -> bool:
        return key.channel.startswith("D")  # a DM with the bot

    async def mark_resolved(self, summary_place: str, resolver: str) -> None:
        channel, ts = summary_message(summary_place)
        found = await self.client.conversations_history(channel=channel, latest=ts,
                                                        inclusive=True, limit=1)
        text = next((str(m.get("text") or "") for m in found.get("messages") or []
                     if m.get("ts") == ts), "")
        await mark_summary(self.client, channel, ts, resolver, text)


    async def _permalink(self, key: ConversationKey) -> str:
        try:
            found = await self.client.chat_getPermalink(channel=key.channel,
                                                        message_ts=key.thread)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.info("no permalink for the thread: %s", _why(error))
            return ""
        return str(found.get("permalink") or "")


async def mark_summary(client: AsyncWebClient, channel: str, ts: str, resolver: str,
                       text: str) -> None:
    """The summary without its button, saying who resolved it (when someone did)."""
    resolved = f"\n✅ Resolved by <@{resolver}>." if resolver else "\n✅ Resolved."
    await client.chat_update(channel=channel, ts=ts, blocks=[], text=text + resolved)


def _why(error: Exception) -> str:
    return error_code(error) if isinstance(error, SlackApiError) else type(error).__name__


async def escalation_lines(client: AsyncWebClient, settings: Settings) -> list[str]:
    """What `check` says about handovers: where they go, and whether the group exists."""
    channel = settings.escalation_slack_channel
    if not channel:
        return ["handovers: no SUPPORTBOT_ESCALATION_SLACK_CHANNEL; a request for a person "
                "gets SUPPORTBOT_ESCALATION_CONTACT"]
    lines = [f"handovers go to <#{channel}>; invite the bot there"]
    group = next((m for m in settings.escalation_mention.split(",") if m.startswith("S")), "")
    if not group:
        return lines
    try:
        found = await client.usergroups_list()
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        return [*lines, f"WARNING: could not list user groups ({_why(error)}); the manifest's "
                        "usergroups:read scope lets check confirm SUPPORTBOT_ESCALATION_MENTION"]
    groups: list[dict[str, Any]] = found.get("usergroups") or []
    handles = {str(g.get("id")): str(g.get("handle") or "") for g in groups}
    if group in handles:
        return [*lines, f"handovers mention @{handles[group]} ({group})"]
    return [*lines, f"WARNING: SUPPORTBOT_ESCALATION_MENTION={group} is not a user group of this "
                    "workspace; copy its id from the group's page"]


class SlackControls:
    """Listens for the buttons, the 👎 form and ✅ reactions; slow work in tasks it owns."""

    def __init__(self, client: AsyncWebClient, handovers: Handovers) -> None:
        self.client = client
        self.handovers = handovers
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, app: AsyncApp) -> None:
        app.action(HELPFUL)(self.on_vote)
        app.action(NOT_HELPFUL)(self.on_vote)
        app.action(HANDOFF)(self.on_handoff)
        app.action(RESOLVE)(self.on_resolve)
        app.view(FORM)(self.on_form)
        app.event("reaction_added")(self.on_reaction)

    async def on_vote(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        # Bolt acknowledges only when a listener returns (process_before_response): every
        # listener here returns at once and leaves the work to a task it owns.
        await ack()
        self._own(self._vote(body))

    async def _vote(self, body: dict[str, Any]) -> None:
        action = (body.get("actions") or [{}])[0]
        voter = f"slack:{(body.get('user') or {}).get('id', '')}"
        reply = _reply_id(action.get("value"))
        if reply is None:
            return
        helpful = action.get("action_id") == HELPFUL
        if not helpful:  # the trigger lasts 3 s: the form opens before anything else
            try:
                async with asyncio.timeout(2.5):
                    await self.client.views_open(trigger_id=str(body.get("trigger_id") or ""),
                                                 view=feedback_form(str(reply)))
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
                log.info("could not open the feedback form: %s", _why(error))
        if await self.handovers.rows.vote(reply, voter, 1 if helpful else -1) and helpful:
            await self._ephemeral(body, THANKS)

    async def on_form(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self._own(self._form(body))

    async def _form(self, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        reply = _reply_id(view.get("private_metadata"))
        values = ((view.get("state") or {}).get("values") or {}).get(FORM_BLOCK) or {}
        text = str((values.get(FORM_INPUT) or {}).get("value") or "").strip()
        voter = f"slack:{(body.get('user') or {}).get('id', '')}"
        if reply is not None and text:
            await self.handovers.rows.comment(reply, voter, text)

    async def on_handoff(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        reply = _reply_id(action.get("value"))
        key = _thread_of(body)
        if reply is not None and key is not None:
            self._own(self._hand_over(key, reply, body))

    async def _hand_over(self, key: ConversationKey, reply: int, body: dict[str, Any]) -> None:
        user = body.get("user") or {}
        told = await self.handovers.hand_over_reply(
            reply, str(user.get("id") or ""), str(user.get("name") or user.get("username") or ""))
        if told == NOT_YOURS:  # only the clicker needs to read that
            await self._ephemeral(body, told)
            return
        await self.client.chat_postMessage(channel=key.channel, thread_ts=key.thread,
                                           text=to_mrkdwn(told))

    async def on_resolve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        try:
            key = key_of(str(action.get("value") or ""))
        except ValueError:
            return
        self._own(self._resolve(key, body))

    async def _resolve(self, key: ConversationKey, body: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        if await self.handovers.give_back(key, user):
            return  # the summary is marked on the way
        await self._ephemeral(body, ALREADY_BACK)
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        if channel and message.get("ts"):  # a stale button: it goes, the text stays
            await self.client.chat_update(channel=channel, ts=str(message["ts"]), blocks=[],
                                          text=str(message.get("text") or ""))

    async def on_reaction(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("reaction") not in RESOLVED_REACTIONS:
            return
        item = event.get("item") or {}
        channel, ts = str(item.get("channel") or ""), str(item.get("ts") or "")
        # reaction_added carries no team of its own: the envelope's team_id says which.
        team = str(body.get("team_id") or event.get("team") or "")
        if channel and ts:
            self._own(self._resolved_by_reaction(channel, ts, str(event.get("user") or ""),
                                                 team))

    async def _resolved_by_reaction(self, channel: str, ts: str, user: str, team: str) -> None:
        if await self.handovers.give_back_summary(summary_place(channel, ts), user) is not None:
            return
        # A ✅ on the thread's first message, by someone other than the asker.
        key = ConversationKey(Platform.SLACK, team, channel, ts)
        handoff = await self.handovers.rows.open_for(key)
        if handoff is not None and handoff.asker_id != user:
            await self.handovers.give_back(key, user)

    async def _ephemeral(self, body: dict[str, Any], text: str) -> None:
        channel = (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        if channel and user:
            await self.client.chat_postEphemeral(channel=str(channel), user=str(user), text=text)

    def _own(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("a button's follow-up failed: %s", _why(error))
        except Exception:
            log.exception("a button's follow-up failed")

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _reply_id(value: object) -> int | None:
    try:
        reply = int(str(value))
    except ValueError:
        return None
    return reply if reply > 0 else None


def _thread_of(body: dict[str, Any]) -> ConversationKey | None:
    """The conversation a button under an answer belongs to."""
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")
    team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    thread = message.get("thread_ts") or message.get("ts")
    if not (channel and team and thread):
        return None
    return ConversationKey(Platform.SLACK, str(team), str(channel), str(thread))
