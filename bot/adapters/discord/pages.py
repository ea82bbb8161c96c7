"""Discord pages: the messages one reply is made of, and the writes that keep them showing the
newest text within a WriteBudget. Final edits wait for room, new pages wait in line briefly
(keeping their turn) so they go out with the newest text, and partial edits are skipped when
the bucket is busy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp
import discord

from bot.adapters.discord.pacing import Priority, WriteBudget
from bot.surface import Ahead

log = logging.getLogger(__name__)

FINAL_TRIES = 3
CREATE_PATIENCE = 1.0  # how long one partial update waits in line for a new page
SLOW_WRITE = 30.0  # a Discord write still out after this is logged, then at doubling waits
SLOW_REPORTS = 6  # 30 s to 32 min of reports; past that it waits without more
TRANSIENT = (discord.DiscordServerError, aiohttp.ClientError, OSError, TimeoutError)
UNKNOWN_MESSAGE = 10008  # Discord's error code for a message that no longer exists
NO_ACCESS = frozenset({50001, 50013})  # Missing Access, Missing Permissions
NOTE_CONTINUED = "_(This answer continues in a new message below.)_"

Interaction = discord.Interaction[discord.Client]


@dataclass(frozen=True)
class PageOp:
    kind: Literal["create", "edit", "delete"]
    index: int
    text: str = ""
    view: discord.ui.View | None = None  # buttons to show under this page


def page_ops(shown: Sequence[str], pages: Sequence[str], final: bool) -> list[PageOp]:
    """The writes that turn the `shown` pages into `pages`; extra pages go only when final."""
    ops = [
        PageOp("create" if i >= len(shown) else "edit", i, text)
        for i, text in enumerate(pages)
        if i >= len(shown) or shown[i] != text
    ]
    if final:
        ops += [PageOp("delete", i) for i in reversed(range(len(pages), len(shown)))]
    return ops


# discord.py reads `view=None` as "remove the buttons", so a view is passed only when set.
class PageTarget(Protocol):
    """Where pages live: create, edit or delete page `index` (with buttons under it)."""

    async def create(self, index: int, text: str, view: discord.ui.View | None = None
                     ) -> None: ...

    async def edit(self, index: int, text: str, view: discord.ui.View | None = None
                   ) -> None: ...

    async def delete(self, index: int) -> None: ...


class ChannelPages:
    """Pages as messages in a channel, thread or DM; the first may reply to the question."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        mentions: discord.AllowedMentions,
        reply_to: discord.MessageReference | None = None,
    ) -> None:
        self.channel = channel
        self.mentions = mentions
        self.reply_to = reply_to
        self.messages: list[discord.Message | discord.PartialMessage] = []

    async def create(self, index: int, text: str, view: discord.ui.View | None = None
                     ) -> None:
        reference = self.reply_to if index == 0 else None
        if view is None:
            sent = await self.channel.send(text, reference=reference,  # type: ignore[arg-type]
                                           allowed_mentions=self.mentions)
        else:
            sent = await self.channel.send(text, reference=reference,  # type: ignore[arg-type]
                                           allowed_mentions=self.mentions, view=view)
        self.messages.append(sent)

    async def edit(self, index: int, text: str, view: discord.ui.View | None = None) -> None:
        message = self.messages[index]
        if view is None:
            self.messages[index] = await message.edit(content=text,
                                                      allowed_mentions=self.mentions)
        else:
            self.messages[index] = await message.edit(content=text,
                                                      allowed_mentions=self.mentions, view=view)

    async def delete(self, index: int) -> None:
        await self.messages.pop(index).delete()


class InteractionPages:
    """Pages as the interaction's original response plus followup messages."""

    def __init__(
        self, interaction: Interaction, private: bool, mentions: discord.AllowedMentions
    ) -> None:
        self.interaction = interaction
        self.private = private
        self.mentions = mentions
        self.followups: list[discord.WebhookMessage] = []

    def ids(self) -> list[str]:
        """Each page's id: the original response, then the followups."""
        return ["@original", *(str(message.id) for message in self.followups)]

    async def create(self, index: int, text: str, view: discord.ui.View | None = None
                     ) -> None:
        if index == 0:  # the deferred response already exists
            await self.edit(0, text, view)
            return
        followup = self.interaction.followup
        if view is None:
            sent = await followup.send(text, ephemeral=self.private,
                                       allowed_mentions=self.mentions, wait=True)
        else:
            sent = await followup.send(text, ephemeral=self.private,
                                       allowed_mentions=self.mentions, wait=True, view=view)
        self.followups.append(sent)

    async def edit(self, index: int, text: str, view: discord.ui.View | None = None) -> None:
        if index == 0:
            if view is None:
                await self.interaction.edit_original_response(content=text,
                                                              allowed_mentions=self.mentions)
            else:
                await self.interaction.edit_original_response(
                    content=text, allowed_mentions=self.mentions, view=view)
            return
        message = self.followups[index - 1]
        if view is None:
            self.followups[index - 1] = await message.edit(content=text,
                                                           allowed_mentions=self.mentions)
        else:
            self.followups[index - 1] = await message.edit(
                content=text, allowed_mentions=self.mentions, view=view)

    async def delete(self, index: int) -> None:
        if index == 0:
            await self.edit(0, NOTE_CONTINUED)
            return
        await self.followups.pop(index - 1).delete()


class PageWriter:
    """Shows snapshots' pages on a target, spending writes from a budget."""

    def __init__(
        self,
        target: PageTarget,
        budget: WriteBudget,
        shown: Sequence[str] = (),
        slow: float = SLOW_WRITE,
    ) -> None:
        self.target = target
        self.budget = budget
        self.shown = list(shown)
        self.slow = slow  # seconds after which a write still out is logged
        self._place: int | None = None  # a new page's turn in line while it waits
        self.removed = False  # a page was deleted, or the channel refuses the bot: it stops

    async def partial(self, pages: Sequence[str], ahead: Ahead | None = None) -> bool:
        """Create new pages (in line for room, briefly); edit others only if a write is free.

        False when every edit was skipped or a new page is still waiting, so the caller
        offers newer text soon: a page created late then carries what is known by then,
        and once the answer is complete its pages go out at final priority instead.
        """
        ops = page_ops(self.shown, pages, final=False)
        applied = 0
        for op in ops:
            if self.removed:
                return True
            if op.kind == "create":
                if self._place is None:  # the turn in line is kept across attempts
                    self._place = self.budget.place()
                if not await self.budget.take(Priority.NEW_PAGE, self._place, CREATE_PATIENCE):
                    return False
                self._place = None
            elif not self.budget.try_take():
                continue
            if ahead is not None:  # just before the first write (see Surface.update)
                try:
                    go, ahead = await ahead(), None
                except BaseException:  # failed or cancelled: the write taken is not made
                    self.budget.release()
                    raise
                if not go:
                    self.budget.release()
                    return True
            await self._apply(op)
            applied += 1
        return applied > 0 or not ops

    async def final(self, pages: Sequence[str], view: discord.ui.View | None = None) -> None:
        """Make the shown pages exactly `pages`, ahead of other replies' partial writes; the
        last page gets `view`'s buttons in the same write."""
        ops = page_ops(self.shown, pages, final=True)
        if view is not None and pages:
            last = len(pages) - 1
            ops = [op for op in ops if op.index != last or op.kind == "delete"]
            kind: Literal["create", "edit"] = "create" if last >= len(self.shown) else "edit"
            at = next((i for i, op in enumerate(ops) if op.kind == "delete"), len(ops))
            ops.insert(at, PageOp(kind, last, pages[last], view))
        for op in ops:
            if self.removed:
                return
            for attempt in range(FINAL_TRIES):
                await self.budget.take(Priority.FINAL)
                try:
                    await self._apply(op)
                    break
                except TRANSIENT as error:
                    if attempt == FINAL_TRIES - 1:
                        raise
                    log.warning("final edit failed (%s); retrying", type(error).__name__)
                    await asyncio.sleep(1 + attempt)

    async def replace(self, index: int, text: str) -> None:
        """Overwrite one shown page at final priority (e.g. with a pointer elsewhere)."""
        await self.budget.take(Priority.FINAL)
        await self._apply(PageOp("edit", index, text))

    async def _apply(self, op: PageOp) -> None:
        """Run one write already taken from the budget, and remember what is shown."""
        what = f"the {op.kind} of page {op.index + 1} in {self.budget.name}"
        try:
            await self._write(op, what)
        except discord.Forbidden as error:
            if error.code not in NO_ACCESS:
                raise
            # Removed from the channel, or its permissions taken away: nothing will land.
            if not self.removed:
                log.warning("cannot write in %s (%s %s); the reply is dropped",
                            self.budget.name, error.code, error.text or "Forbidden")
            self.removed = True
        finally:
            self.budget.release()

    async def _write(self, op: PageOp, what: str) -> None:
        try:
            if op.kind == "create":
                await reported_if_slow(self.target.create(op.index, op.text, op.view), what,
                                       self.slow)
                self.shown.append(op.text)
            elif op.kind == "edit":
                await reported_if_slow(self.target.edit(op.index, op.text, op.view), what,
                                       self.slow)
                self.shown[op.index] = op.text
            else:
                await reported_if_slow(self.target.delete(op.index), what, self.slow)
                del self.shown[op.index]
        except discord.NotFound as error:
            if error.code != UNKNOWN_MESSAGE or op.kind != "edit":
                raise
            # Deleted by a moderator (or with its thread): the reply stops here; posting it
            # again would overrule whoever removed it.
            self.removed = True
            log.warning("page %d of a reply in %s was deleted; the reply stops there",
                        op.index + 1, self.budget.name)


async def reported_if_slow(write: Awaitable[None], what: str, after: float = SLOW_WRITE) -> None:
    """Await one Discord write; if it has not come back after `after` seconds, say so, and
    again each time the wait doubles. It is never cut short here: a write Discord applies
    after we stopped waiting would land on top of a later one, and a request cancelled
    while discord.py sleeps out a global 429 leaves every later request waiting for good
    (its http.py sets the global event again only after that sleep)."""
    task = asyncio.ensure_future(write)
    try:
        waited, wait = 0.0, after
        for _ in range(SLOW_REPORTS):
            done, _ = await asyncio.wait({task}, timeout=wait)
            if done:
                break
            waited += wait
            log.warning("Discord has not answered %s for %.3g s; still waiting", what, waited)
            wait *= 2
    except asyncio.CancelledError:  # a shutdown: the write is cancelled with us, as before
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: it failed while unwinding, which no one needs
        raise
    await task
