"""What an adapter may use of the bot: its settings, the one way in, a small key-value store
for its own state, and the few look-ups platforms need. Narrow on purpose: no adapter reaches
into the store or the responder."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.conversation import ConversationKey, Platform
from bot.handovers import Handovers
from bot.inbound import Inbound
from bot.metrics import Metrics, Readiness
from bot.shared import SharedLimits
from bot.store import Store
from bot.surface import Restore


class PlatformState:
    """Named values one platform keeps between runs (DM sessions, registered commands)."""

    def __init__(self, store: Store, platform: Platform) -> None:
        self._store = store
        self._prefix = f"{platform.value}:"

    async def get(self, name: str) -> str | None:
        return await self._store.get_value(self._prefix + name)

    async def set(self, name: str, value: str) -> None:
        await self._store.set_value(self._prefix + name, value)


@dataclass(frozen=True)
class Ports:
    """Everything an adapter is given."""

    settings: Settings
    inbound: Inbound
    state: PlatformState
    known: Callable[[ConversationKey], Awaitable[bool]]  # the bot holds this conversation
    last_asked: Callable[[ConversationKey], Awaitable[float | None]]  # its last question
    resume: Callable[[Restore], Awaitable[list[asyncio.Task[None]]]]  # journaled replies
    finish_replies: Callable[[float], Awaitable[None]]  # end replies in flight (shutdown)
    model_ready: bool  # False: no API key, answers come from the docs only
    handovers: Handovers  # hand a conversation to a person, give it back, record votes
    metrics: Metrics  # the figures /metrics serves
    shared: SharedLimits | None = None  # Redis: budgets shared with the other instances
    connected: Callable[[], None] = lambda: None  # say the platform is connected (/readyz)
    readiness: Callable[[], Readiness] = lambda: Readiness(True)
