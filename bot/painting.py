"""Showing a growing answer on a Surface: the painter beside the stream, and the final write.

The painter shows the newest text as soon as the surface allows; the final write is let land
even when a shutdown arrives meanwhile, so a message is never left half-written or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.conversation import Answer, Usage
from bot.streaming import LiveReply
from bot.surface import Snapshot, Surface

log = logging.getLogger(__name__)

FINISH_TIMEOUT = 10.0  # a reply's last word on shutdown, whatever happened before it
WRITE_GRACE = 2.0  # how long a shutdown lets a platform write already sent come back
STOP_WAIT = 1.0  # then how long a cancelled write may take to unwind
NOTE_TIMEOUT = FINISH_TIMEOUT - WRITE_GRACE - STOP_WAIT  # so the whole stays within the first
SKIPPED_RETRY = 0.25  # seconds before offering a skipped partial update again


@contextlib.asynccontextmanager
async def painting(
    live: LiveReply, surface: Surface, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[asyncio.Event]:
    """Run the painter beside the stream; on exit let its last update land, then stop it.

    Set the yielded event whenever `live` has new text.
    """
    wake = asyncio.Event()
    stop = asyncio.Event()
    painter = asyncio.create_task(_paint(live, surface, wake, stop, clock))
    interrupted = False
    try:
        yield wake
    except asyncio.CancelledError:
        interrupted = True
        raise
    finally:
        stop.set()
        wake.set()
        if interrupted:  # shutdown mid-stream: a write already sent gets a grace, no more
            await let_land(painter)
        else:
            try:
                await asyncio.shield(painter)  # its last update lands before the final
            except asyncio.CancelledError:  # a shutdown now: the same grace
                await let_land(painter)
                raise


async def _paint(
    live: LiveReply,
    surface: Surface,
    wake: asyncio.Event,
    stop: asyncio.Event,
    clock: Callable[[], float],
) -> None:
    """Show the newest text as soon as allowed: first text at once, then once per interval."""
    while not stop.is_set():
        now = clock()
        due = live.due_at(surface.interval())
        if due is None:  # nothing new: sleep until the stream brings some
            wake.clear()
            await wake.wait()
            continue
        if due > now:  # newer text waits for its turn; more deltas would not make it sooner
            await _rest(stop, due - now)
            continue
        try:
            shown = await surface.update(live.take(now))
            pause = min(surface.interval(), SKIPPED_RETRY)
        except Exception as error:  # a lost partial edit is harmless; the final one retries
            log.warning("partial update failed: %s", type(error).__name__)
            shown, pause = False, SKIPPED_RETRY  # never retry a failure in a tight loop
        if shown is False:  # skipped (no budget) or failed: offer the text again soon
            live.retract()
            await _rest(stop, max(pause, 0.01))


async def _rest(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or until `stop` is set (a timeout on this task: no task of its own,
    as wait_for would make each time)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def settle(surface: Surface, snapshot: Snapshot) -> None:
    """Show the final text; a shutdown arriving meanwhile waits for it instead of cutting it.

    The platform may apply a write the bot already sent even when the bot stops waiting for
    the answer; an "interrupted" note written after it would post a second message, or mark
    a complete answer as cut. So once the final write is on its way the reply completes
    (within WRITE_GRACE), and the shutdown's cancellation is absorbed.
    """
    write = asyncio.ensure_future(surface.finish(snapshot))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        if not await let_land(write):
            raise
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        log.info("shutdown waited for a final text already being written")


async def let_land(write: asyncio.Future[None]) -> bool:
    """After a cancel, give a platform write already under way WRITE_GRACE to finish.

    True when it finished without error. It never outlives this call: past the grace, or on
    a second cancel, it is cancelled and waited for (briefly) before returning.
    """
    try:
        await asyncio.wait({write}, timeout=WRITE_GRACE)
    finally:
        if not write.done():
            write.cancel()
            await asyncio.wait({write}, timeout=STOP_WAIT)
    if not write.done():  # a write that ignores its cancellation: give up on it
        log.warning("a write did not stop within %.0f s of being cancelled", STOP_WAIT)
        return False
    if write.cancelled():
        return False
    error = write.exception()
    if error is not None:
        log.warning("a write during shutdown failed: %s", type(error).__name__)
    return error is None


async def quietly(step: Awaitable[None], what: str, timeout: float = FINISH_TIMEOUT) -> bool:
    """Await a surface call whose failure must not stop the reply; True when it worked."""
    try:
        await asyncio.wait_for(step, timeout)
        return True
    except Exception as error:
        log.warning("could not %s: %s", what, type(error).__name__)
        return False


async def finish_with(
    surface: Surface, live: LiveReply, text: str, model: str, outcome: str = "answered"
) -> Answer:
    live.feed(text)
    await settle(surface, live.final())
    return Answer(text, model, "end_turn", Usage(), None, None, outcome)


async def replace_with(surface: Surface, answer: Answer, reply_id: str = "") -> Answer:
    """Show `answer.text` in place of whatever the stream showed (nothing, while a marker
    was held back); with a `reply_id`, under the reply's buttons."""
    replaced = LiveReply(surface.limit, surface.render, size=surface.size)
    replaced.reply_id = reply_id
    replaced.feed(answer.text)
    await settle(surface, replaced.final())
    return answer
