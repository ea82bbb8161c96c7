"""The one way in: every platform hands its events here, and the same rules apply to all.

An event is taken once while it is being prepared (a platform may deliver one message as two
events, or twice); before a costly preparation (a download, a thread read) the store is asked
whether the event was answered already, while a cheap one goes straight to the store, whose
unique key is the guarantee either way; events of one arrival queue (a channel,
a DM) reach the responder in the order they came, whatever each waits for first; and every
task is owned here, so a shutdown can let them finish or cancel them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.conversation import Incoming, Platform
from bot.shared import SharedError, SharedLimits
from bot.surface import Surface

log = logging.getLogger(__name__)

PREPARE_GRACE = 2.0  # on shutdown, events being prepared get this long to reach the journal


@dataclass(frozen=True)
class Prepared:
    """A platform event made ready: the complete question, and where its reply is shown."""

    incoming: Incoming
    surface: Surface
    on_refused: Callable[[], None] | None = None  # the responder did not take it (or failed)


Prepare = Callable[[], Awaitable[Prepared | None]]
Submit = Callable[[Incoming, Surface], Awaitable["asyncio.Task[None] | None"]]
Seen = Callable[[Platform, str], Awaitable[bool]]


class Inbound:
    """Takes platform events in and hands complete questions to the responder."""

    def __init__(self, submit: Submit, seen: Seen, shared: SharedLimits | None = None) -> None:
        self.submit = submit
        self.seen = seen
        self.shared = shared  # Redis: events handled on any instance, a look-up cheaper
        # than the store's (which stays the guarantee)
        self._taking: set[str] = set()
        self._tasks: dict[asyncio.Task[asyncio.Task[None] | None], None] = {}
        # Weak values: a queue's lock lives only while its events are being taken in.
        self._queues: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def accept(
        self, platform: Platform, event_id: str, queue: str, prepare: Prepare,
        costly: bool = True,
    ) -> asyncio.Task[asyncio.Task[None] | None] | None:
        """Start taking one event in; None when the same event is being taken in already.

        `costly`: preparing it downloads or reads something, so a redelivery is looked up
        first. The task's result is the reply's task (None: answered before, or nothing to
        answer).
        """
        key = f"{platform.value}:{event_id}"
        if key in self._taking:
            return None
        self._taking.add(key)
        lock = self._queues.setdefault(f"{platform.value}:{queue}", asyncio.Lock())
        task = asyncio.create_task(self._take(platform, event_id, key, lock, prepare, costly))
        self._tasks[task] = None
        task.add_done_callback(self._settled)
        return task

    async def _take(
        self, platform: Platform, event_id: str, key: str, lock: asyncio.Lock, prepare: Prepare,
        costly: bool,
    ) -> asyncio.Task[None] | None:
        try:
            async with lock:  # asyncio locks are FIFO: arrival order within the queue
                if costly and await self._handled(platform, event_id):
                    log.info("event %s already handled; not answering twice", event_id)
                    return None
                prepared = await prepare()
                if prepared is None:
                    return None
                task = await self._submit(prepared)
                if task is not None:  # the store has the question (a refusal may not)
                    await self._mark_handled(key)
                return task
        finally:
            self._taking.discard(key)

    async def _handled(self, platform: Platform, event_id: str) -> bool:
        if self.shared is not None:
            try:
                if await self.shared.handled(f"{platform.value}:{event_id}"):
                    return True
            except SharedError as error:
                log.warning("%s; asking the store instead", error)
        return await self.seen(platform, event_id)

    async def _mark_handled(self, key: str) -> None:
        """Once the store has the question (or knew it), say so where every instance looks."""
        if self.shared is not None:
            try:
                await self.shared.mark_handled(key)
            except SharedError as error:
                log.warning("%s; the store's unique key still stops a second answer", error)

    async def _submit(self, prepared: Prepared) -> asyncio.Task[None] | None:
        task = None
        try:
            task = await self.submit(prepared.incoming, prepared.surface)
        finally:
            if task is None and prepared.on_refused is not None:
                prepared.on_refused()
        return task

    def _settled(self, task: asyncio.Task[asyncio.Task[None] | None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("taking an event in failed", exc_info=task.exception())

    async def aclose(self, grace: float = PREPARE_GRACE) -> None:
        """Let events being prepared reach the responder (and its journal) for `grace`
        seconds, then cancel the rest: the platform has their acks, so none is dropped
        lightly."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
