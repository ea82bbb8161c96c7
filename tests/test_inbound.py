"""The one way in: events taken once, redeliveries looked up before costly work, arrival order
per queue, and a shutdown that lets preparations finish briefly."""

from __future__ import annotations

import asyncio

from bot.conversation import Arrival, ConversationKey, Incoming, Platform
from bot.inbound import Inbound, Prepare, Prepared
from bot.surface import Surface
from tests.surfaces import RecordingSurface

KEY = ConversationKey(Platform.SLACK, "T1", "C1", "1.0")


class Recorder:
    """Stands in for the responder and the store: what was submitted, what was seen before."""

    def __init__(self, seen: set[str] | None = None) -> None:
        self.submitted: list[str] = []
        self.seen_before = seen or set()
        self.lookups = 0

    async def submit(self, incoming: Incoming, surface: Surface) -> asyncio.Task[None] | None:
        self.submitted.append(incoming.text)
        return None

    async def seen(self, platform: Platform, event_id: str) -> bool:
        self.lookups += 1
        return event_id in self.seen_before


def question(text: str) -> Incoming:
    return Incoming(key=KEY, author_id="U1", text=text, event_id=text, arrival=Arrival.MENTION)


def preparing(text: str, delay: float, log: list[str]) -> Prepare:
    async def prepare() -> Prepared:
        log.append(text)
        await asyncio.sleep(delay)
        return Prepared(question(text), RecordingSurface())

    return prepare


async def test_an_event_delivered_twice_at_once_is_taken_once() -> None:
    recorder, log = Recorder(), list[str]()
    inbound = Inbound(recorder.submit, recorder.seen)
    first = inbound.accept(Platform.SLACK, "E1", "C1", preparing("E1", 0.05, log))
    twin = inbound.accept(Platform.SLACK, "E1", "C1", preparing("E1", 0.05, log))
    assert first is not None and twin is None
    await first
    assert log == ["E1"] and recorder.submitted == ["E1"]


async def test_a_redelivery_is_looked_up_before_costly_preparation_only() -> None:
    recorder, log = Recorder(seen={"E1"}), list[str]()
    inbound = Inbound(recorder.submit, recorder.seen)
    costly = inbound.accept(Platform.SLACK, "E1", "C1", preparing("E1", 0, log), costly=True)
    assert costly is not None and await costly is None
    assert log == [] and recorder.submitted == []  # nothing downloaded for a redelivery
    cheap = inbound.accept(Platform.SLACK, "E2", "C1", preparing("E2", 0, log), costly=False)
    assert cheap is not None
    await cheap
    assert recorder.lookups == 1 and recorder.submitted == ["E2"]  # the store decides there


async def test_events_of_one_queue_keep_their_order_whatever_each_waits_for() -> None:
    recorder, log = Recorder(), list[str]()
    inbound = Inbound(recorder.submit, recorder.seen)
    slow = inbound.accept(Platform.SLACK, "A", "C1", preparing("A", 0.2, log))
    fast = inbound.accept(Platform.SLACK, "B", "C1", preparing("B", 0, log))
    elsewhere = inbound.accept(Platform.SLACK, "C", "C2", preparing("C", 0, log))
    assert slow is not None and fast is not None and elsewhere is not None
    await asyncio.gather(slow, fast, elsewhere)
    assert recorder.submitted.index("A") < recorder.submitted.index("B")
    assert recorder.submitted[0] == "C"  # another queue does not wait behind a slow one


async def test_shutdown_lets_quick_preparations_finish_and_cancels_the_rest() -> None:
    recorder, log = Recorder(), list[str]()
    inbound = Inbound(recorder.submit, recorder.seen)
    inbound.accept(Platform.SLACK, "quick", "C1", preparing("quick", 0.05, log))
    stuck = inbound.accept(Platform.SLACK, "stuck", "C2", preparing("stuck", 60, log))
    assert stuck is not None
    await asyncio.wait_for(inbound.aclose(grace=0.5), 5)
    assert recorder.submitted == ["quick"] and stuck.cancelled()
