"""SlackSurface: one reply in a Slack thread, posted at once and edited in place.

The placeholder goes out with chat.postMessage the moment the reply starts; partial texts are
chat.update edits taken from the workspace's shared budget and skipped when none is free;
the final text is exact, page by page, waiting for budget and honouring every Retry-After
(or, when the budget is taken for a while, posted as a new message in the placeholder's place).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.controls import CONTROLS_TEXT, Blocks, controls, reply_blocks
from bot.adapters.slack.pacing import WorkspacePacing
from bot.conversation import PageRef, Place
from bot.mrkdwn import to_mrkdwn
from bot.streaming import TYPING_MARKER, utf8_size
from bot.surface import Ahead, Snapshot

log = logging.getLogger(__name__)

UPDATE_LIMIT_BYTES = 4_000  # chat.update answers msg_too_long above this many UTF-8 bytes
PLACEHOLDER = "_Looking into it…_" + TYPING_MARKER
START_TIMEOUT = 8.0  # the responder gives start() 10 s
FIRST_SIGN = 0.15  # when the channel's pace holds the placeholder back longer, react at once
SEEN_REACTION = "eyes"
# A workspace asked faster than Slack lets answers show (about 90 long replies a minute)
# builds a line of finals; each waits its turn rather than end its complete answer with a
# failure note (150 s lost 15 of 240 replies in `bench.scale ceiling`).
FINISH_TIMEOUT = 600.0
MAX_ATTEMPTS = 12
DELETE_ATTEMPTS = 3  # a leftover page: worth a couple of Retry-After waits, not a minute's queue
DELETE_TIMEOUT = 60.0
# A final edit that would wait longer than this for the workspace's chat.update budget is
# posted as a new message instead, and the placeholder deleted (chat.delete has its own budget).
OVERFLOW_WAIT = 5.0
# chat.update errors after which editing that message is pointless: post a new one instead.
# The message is gone for good: deleted by someone (a moderator), or its thread was. The
# reply stops there; posting it again would overrule whoever removed it.
REMOVED = "message_not_found"
GONE = frozenset({"cant_update_message", "edit_window_closed",
                  "msg_too_long", "invalid_blocks", "is_inactive"})


PLACE_KIND = "slack-thread"


@dataclass(frozen=True)
class ReplyPlace:
    """Where a reply goes: the workspace, the channel, the thread, and who asked."""

    team: str
    channel: str
    thread_ts: str
    user: str
    message_ts: str  # the question itself (the thread's first message, or a reply in it)

    def journaled(self) -> Place:
        return Place.of(PLACE_KIND, team=self.team, channel=self.channel,
                        thread_ts=self.thread_ts, user=self.user, message_ts=self.message_ts)

    @classmethod
    def from_journal(cls, place: Place) -> ReplyPlace | None:
        if place.kind != PLACE_KIND:
            return None
        return cls(place.get("team"), place.get("channel"), place.get("thread_ts"),
                   place.get("user"), place.get("message_ts"))


def retry_after(error: SlackApiError) -> float | None:
    """Seconds Slack asked us to wait (HTTP 429), or None when this was not a rate limit."""
    response = error.response
    if response.status_code != 429:
        return None
    headers: Mapping[str, Any] = response.headers or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(1.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0


# The bot cannot write in the channel any more (removed from it, archived, or posting is
# restricted there): the reply ends, as after a deletion.
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived",
                         "restricted_action", "cannot_reply_to_message"})
# Answers that say "not now" rather than "never": Slack's own failures, worth a retry.
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable",
                       "request_timeout"})


def transient(error: SlackApiError) -> bool:
    """A 5xx from Slack's edge or one of its "try again" errors."""
    return error.response.status_code >= 500 or error_code(error) in TRANSIENT


def error_code(error: SlackApiError) -> str:
    data = error.response.data
    return str(data.get("error", "unknown")) if isinstance(data, dict) else "unknown"


class SlackSurface:
    """A reply made of one or more thread messages (one per 4,000-byte page)."""

    limit = UPDATE_LIMIT_BYTES

    def __init__(self, client: AsyncWebClient, place: ReplyPlace, pacing: WorkspacePacing) -> None:
        self.client = client
        self.place = place
        self.pacing = pacing
        self.posted: list[str] = []  # ts of each page's message, in page order
        self.shown: list[str] = []  # what each of those messages shows now
        self._joined = False
        self.removed = False  # a page was deleted, or the channel refuses the bot: it stops

    def interval(self) -> float:
        return self.pacing.edits.interval()

    def render(self, markdown: str) -> str:
        return to_mrkdwn(markdown)

    def size(self, text: str) -> int:
        return utf8_size(text)

    def where(self) -> Place:
        return self.place.journaled()

    def pages(self) -> tuple[PageRef, ...]:
        """The messages posted, with their text ("" while a page shows only the placeholder)."""
        return tuple(PageRef(ts, "" if text == PLACEHOLDER else text)
                     for ts, text in zip(self.posted, self.shown, strict=True))

    async def start(self) -> None:
        """Post the placeholder; if the channel's pace delays it, first react to the question.

        A reply continuing in messages it adopted posts nothing: they show that it is coming.
        """
        self._join()
        if self.posted:
            return
        reacted = False
        if self.pacing.channel(self.place.channel).busy(FIRST_SIGN):
            reacted = await self._react(add=True)
        try:
            await self._post(PLACEHOLDER, START_TIMEOUT)
        finally:
            if reacted:
                await self._react(add=False)  # the placeholder says the same (or never came)

    def adopt(self, pages: tuple[PageRef, ...]) -> None:
        """Continue in messages that already exist (a native stream that failed, or a reply
        a restart cut off)."""
        self._join()
        self.posted = [page.id for page in pages]
        self.shown = [page.text for page in pages]

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool:
        """Show newer text if budget allows; False when the workspace budget had no room."""
        if self.removed:
            return True
        for page, text in enumerate(snapshot.pages):
            editing = page < len(self.posted)
            if editing and self.shown[page] == text:
                continue
            # An edit takes the workspace's budget, a new page the channel's posts.
            slot = (self.pacing.edits.take_partial() if editing
                    else self.pacing.channel(self.place.channel).take_now())
            if not await slot:
                return False  # no room right now: the text is offered again soon
            if ahead is not None:
                go, ahead = await ahead(), None
                if not go:
                    return True
            if editing:
                if not await self._edit_once(page, text):
                    return True
            elif not await self._post_taken(text):
                return False  # the post failed: offered again soon
        return True

    async def finish(self, snapshot: Snapshot) -> None:
        """Make every page show exactly its final text, then drop pages no longer needed.

        A reply with an id gets its buttons (feedback, talk to a person) under the last page,
        in the same write; a last page too long for a block gets them in a message of their own.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINISH_TIMEOUT
        last = len(snapshot.pages) - 1
        buttons = reply_blocks(snapshot.pages[last], snapshot.reply_id) if (
            snapshot.reply_id and snapshot.pages) else None
        try:
            for page, text in enumerate(snapshot.pages):
                if self.removed:
                    return
                remaining = deadline - loop.time()
                blocks = buttons if page == last else None
                if page >= len(self.posted):
                    await self._post(text, remaining, blocks)
                elif self.shown[page] != text or blocks:
                    await self._final_edit(page, text, remaining, blocks)
            for ts in self.posted[len(snapshot.pages):]:
                await self._delete(ts)
            del self.posted[len(snapshot.pages):]
            del self.shown[len(snapshot.pages):]
            if snapshot.reply_id and snapshot.pages and buttons is None:
                await self._post_controls(snapshot.reply_id, deadline - loop.time())
        finally:
            self._leave()

    async def _post_controls(self, reply_id: str, timeout: float) -> None:
        """The buttons in a message of their own: best effort, the answer is complete."""
        try:
            await self._post(CONTROLS_TEXT, max(timeout, 1.0), controls(reply_id))
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not post the answer's buttons: %s", type(error).__name__)
            return
        self.posted.pop()  # not a page of the answer: never edited or deleted
        self.shown.pop()

    # ----- single calls ---------------------------------------------------------------------

    async def _post(self, text: str, timeout: float, blocks: Blocks = None) -> None:
        """Post a new page in the thread, waiting for the channel's pace and any Retry-After."""
        pacer = self.pacing.channel(self.place.channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in range(MAX_ATTEMPTS):
            await pacer.take(deadline - loop.time())
            try:
                await self._post_message(text, blocks)
                return
            except SlackApiError as error:
                wait = retry_after(error)
                if wait is not None:
                    await pacer.pause(wait)
                    continue
                if error_code(error) in CANNOT_POST:
                    self._give_up(error_code(error))
                    return
                if not transient(error):
                    raise
                log.warning("chat.postMessage failed (%s); retrying", error_code(error))
                await asyncio.sleep(min(2.0**attempt, 5.0))
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("chat.postMessage failed (%s); retrying", type(error).__name__)
                await asyncio.sleep(min(2.0**attempt, 5.0))
        raise TimeoutError("chat.postMessage kept failing")

    async def _post_message(self, text: str, blocks: Blocks = None) -> None:
        response = await self.client.chat_postMessage(
            channel=self.place.channel,
            thread_ts=self.place.thread_ts,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        self.posted.append(str(response["ts"]))
        self.shown.append(text)

    async def _post_taken(self, text: str) -> bool:
        """Post the next page during streaming (the channel's slot already taken)."""
        pacer = self.pacing.channel(self.place.channel)
        try:
            await self._post_message(text)
            return True
        except SlackApiError as error:
            wait = retry_after(error)
            if wait is not None:
                await pacer.pause(wait)
            elif error_code(error) in CANNOT_POST:
                self._give_up(error_code(error))
            else:
                log.warning("chat.postMessage failed: %s", error_code(error))
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("chat.postMessage failed: %s", type(error).__name__)
        return False

    async def _edit_once(self, page: int, text: str) -> bool:
        """One partial edit; False (and nothing retried) when Slack refused it."""
        try:
            await self._update_message(page, text)
            return True
        except SlackApiError as error:
            wait = retry_after(error)
            if wait is not None:
                await self.pacing.edits.pause(wait)  # the whole workspace waits, not just us
            elif error_code(error) == REMOVED:
                self._stop(page)
            else:
                log.warning("partial chat.update failed: %s", error_code(error))
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("partial chat.update failed: %s", type(error).__name__)
        return False

    async def _final_edit(self, page: int, text: str, timeout: float,
                          blocks: Blocks = None) -> None:
        """Edit a page to its final text, retrying until it lands or the deadline passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in range(MAX_ATTEMPTS):
            if await self._overflowing(page):
                await self._replace_page(page, text, deadline - loop.time(), blocks)
                return
            await self.pacing.edits.acquire_final(deadline - loop.time())
            try:
                await self._update_message(page, text, blocks)
                return
            except SlackApiError as error:
                wait = retry_after(error)
                if wait is not None:
                    await self.pacing.edits.pause(wait)
                    continue
                if error_code(error) == REMOVED:
                    self._stop(page)
                    return
                if error_code(error) in GONE:
                    await self._replace_page(page, text, deadline - loop.time(), blocks)
                    return
                log.warning("final chat.update failed: %s; retrying", error_code(error))
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("final chat.update failed: %s; retrying", type(error).__name__)
            await asyncio.sleep(min(2.0**attempt, 5.0))
        raise TimeoutError("final chat.update kept failing")

    def _stop(self, page: int) -> None:
        self.removed = True
        log.warning("message %s of a reply in %s was deleted; the reply stops there",
                    self.posted[page], self.place.channel)

    def _give_up(self, error: str) -> None:
        if not self.removed:
            log.warning("cannot post in %s (%s: removed from the channel, or it was archived);"
                        " the reply is dropped", self.place.channel, error)
        self.removed = True

    async def _overflowing(self, page: int) -> bool:
        """Repost instead of waiting: only for the last message (order stays right), on budget."""
        edits = self.pacing.edits
        congested = edits.finals_waiting or edits.final_wait() > OVERFLOW_WAIT
        last = page == len(self.posted) - 1
        return congested and last and await self.pacing.deletes.take_partial()

    async def _update_message(self, page: int, text: str, blocks: Blocks = None) -> None:
        # With blocks, they are what the message shows and `text` is the notification.
        await self.client.chat_update(channel=self.place.channel, ts=self.posted[page],
                                      text=text, blocks=blocks)
        self.shown[page] = text

    async def _replace_page(self, page: int, text: str, timeout: float,
                            blocks: Blocks = None) -> None:
        """Post the page anew in the message's place, then delete the old message."""
        old = self.posted[page]
        await self._post(text, timeout, blocks)
        if self.removed:
            return
        self.posted[page] = self.posted.pop()
        self.shown[page] = self.shown.pop()
        await self._delete(old, slot_taken=True)

    async def _react(self, add: bool) -> bool:
        """Add or remove the "seen" reaction on the question, if the budget has room now."""
        if not await self.pacing.reactions.take_partial():
            return False
        call = self.client.reactions_add if add else self.client.reactions_remove
        try:
            await call(channel=self.place.channel, timestamp=self.place.message_ts,
                       name=SEEN_REACTION)
            return True
        except SlackApiError as error:
            wait = retry_after(error)
            if wait is not None:
                await self.pacing.reactions.pause(wait)
            return False
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("reaction failed: %s", type(error).__name__)
            return False

    async def _delete(self, ts: str, slot_taken: bool = False) -> None:
        """Delete an old page on the delete budget, honouring Retry-After a few times.

        A page left behind would show stale text with a typing marker, so a 429 is retried.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DELETE_TIMEOUT
        for attempt in range(DELETE_ATTEMPTS):
            if attempt or not slot_taken:
                try:
                    await self.pacing.deletes.acquire_final(max(0.0, deadline - loop.time()))
                except TimeoutError:
                    break
            try:
                await self.client.chat_delete(channel=self.place.channel, ts=ts)
                return
            except SlackApiError as error:
                wait = retry_after(error)
                if wait is None:
                    log.info("could not delete a leftover page: %s", error_code(error))
                    return
                await self.pacing.deletes.pause(wait)
            except (aiohttp.ClientError, TimeoutError) as error:
                log.info("deleting a leftover page failed: %s", type(error).__name__)
        log.warning("gave up deleting a leftover page")

    def _join(self) -> None:
        if not self._joined:
            self.pacing.edits.join()
            self._joined = True

    def _leave(self) -> None:
        if self._joined:
            self.pacing.edits.leave()
            self._joined = False
