"""NativeStreamSurface: a reply streamed with chat.startStream / appendStream / stopStream.

Used when SLACK_NATIVE_STREAMING is on. Appends come from the workspace's Tier 4 budget and
start/stop from its Tier 2 budgets; when any of these calls fails (or no start is free, or the
answer outgrows one streamed message) the reply continues as a SlackSurface with chat.update.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.controls import controls
from bot.adapters.slack.pacing import WorkspacePacing
from bot.adapters.slack.surface import (
    FINISH_TIMEOUT,
    MAX_ATTEMPTS,
    ReplyPlace,
    SlackSurface,
    error_code,
    retry_after,
)
from bot.conversation import PageRef, Place
from bot.mrkdwn import defuse_markdown
from bot.surface import Ahead, Snapshot

log = logging.getLogger(__name__)

NATIVE_MAX_CHARS = 12_000  # markdown_text limit; longer answers finish as chat.update pages
_BackOff = Callable[[float], Awaitable[None]]


def settled(markdown: str) -> str:
    """The text up to its last whitespace: a word still being written is held back."""
    cut = max(markdown.rfind(" "), markdown.rfind("\n"))
    return markdown[: cut + 1]


class NativeStreamSurface:
    """Streams Markdown natively; falls back to a SlackSurface when streaming fails."""

    def __init__(self, client: AsyncWebClient, place: ReplyPlace, pacing: WorkspacePacing) -> None:
        self.client = client
        self.place = place
        self.pacing = pacing
        self.fallback = SlackSurface(client, place, pacing)
        self.limit = self.fallback.limit
        self.ts: str | None = None
        self.sent = ""  # what the stream shows so far (defused Markdown)
        self._joined = False  # counted among the streams sharing the append budget

    @property
    def streaming(self) -> bool:
        return self.ts is not None

    def interval(self) -> float:
        return self.pacing.appends.interval() if self.streaming else self.fallback.interval()

    def render(self, markdown: str) -> str:
        return self.fallback.render(markdown)

    def size(self, text: str) -> int:
        return self.fallback.size(text)

    def where(self) -> Place:
        return self.fallback.where()

    def pages(self) -> tuple[PageRef, ...]:
        if self.streaming:
            return (PageRef(str(self.ts), self.sent),)
        return self.fallback.pages()

    async def start(self) -> None:
        if self.pacing.native_off or not await self.pacing.starts.take_partial():
            await self.fallback.start()
            return
        try:
            response = await self.client.chat_startStream(
                channel=self.place.channel,
                thread_ts=self.place.thread_ts,
                recipient_team_id=self.place.team,
                recipient_user_id=self.place.user,
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            await self._refused("chat.startStream", error, self.pacing.starts.pause)
            await self.fallback.start()
            return
        self.ts = str(response["ts"])
        self.pacing.appends.join()
        self._joined = True

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool:
        if not self.streaming:
            return await self.fallback.update(snapshot, ahead)
        ready = settled(defuse_markdown(snapshot.text))
        fresh = ready[len(self.sent):]
        if not fresh.strip() or len(ready) > NATIVE_MAX_CHARS or not ready.startswith(self.sent):
            return True
        if not await self.pacing.appends.take_partial():
            return False
        if ahead is not None and not await ahead():
            return True
        try:
            await self.client.chat_appendStream(
                channel=self.place.channel, ts=str(self.ts), markdown_text=fresh
            )
            self.sent = ready
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            if not await self._refused("chat.appendStream", error, self.pacing.appends.pause):
                await self._switch_to_updates()
        return True

    async def finish(self, snapshot: Snapshot) -> None:
        if not self.streaming:
            await self.fallback.finish(snapshot)
            return
        final = defuse_markdown(snapshot.text)
        try:
            fits = final.startswith(self.sent) and len(final) <= NATIVE_MAX_CHARS
            if fits and await self._stop(final[len(self.sent):], snapshot.reply_id):
                return
            await self._switch_to_updates()
        finally:
            self._leave()
        await self.fallback.finish(snapshot)

    def _leave(self) -> None:
        """Stop counting as a stream sharing the append budget (exactly once)."""
        if self._joined:
            self._joined = False
            self.pacing.appends.leave()

    async def _stop(self, rest: str, reply_id: str = "") -> bool:
        """End the stream with the rest of the text (and the reply's buttons under it);
        False when Slack will not take it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINISH_TIMEOUT
        for attempt in range(MAX_ATTEMPTS):
            await self.pacing.stops.acquire_final(deadline - loop.time())
            try:
                await self.client.chat_stopStream(
                    channel=self.place.channel, ts=str(self.ts), markdown_text=rest or None,
                    blocks=controls(reply_id) if reply_id else None,
                )
                self.sent += rest
                return True
            except SlackApiError as error:
                if not await self._refused("chat.stopStream", error, self.pacing.stops.pause):
                    return False
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("chat.stopStream failed: %s; retrying", type(error).__name__)
                await asyncio.sleep(min(2.0**attempt, 5.0))
        return False

    async def _switch_to_updates(self) -> None:
        """End the stream if Slack lets us, and continue with chat.update on its message."""
        ts, self.ts = str(self.ts), None
        self._leave()
        if await self.pacing.stops.take_partial():
            try:
                await self.client.chat_stopStream(channel=self.place.channel, ts=ts)
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
                log.info("could not stop a broken stream: %s", type(error).__name__)
        self.fallback.adopt((PageRef(ts),))

    async def _refused(self, method: str, error: Exception, back_off: _BackOff) -> bool:
        """Log a failed call; True when it was only a rate limit (the budget then waits)."""
        wait = retry_after(error) if isinstance(error, SlackApiError) else None
        if wait is not None:
            await back_off(wait)
            return True
        reason = error_code(error) if isinstance(error, SlackApiError) else type(error).__name__
        log.warning("%s failed (%s); using chat.update instead", method, reason)
        if method == "chat.startStream" and isinstance(error, SlackApiError):
            self.pacing.native_off = True  # this workspace does not offer native streaming
        return False
