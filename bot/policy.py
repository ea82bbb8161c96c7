"""What a reply may do, decided before it starts: the settings it follows, where the bot
answers at all, each person's hourly cap, and the day the spend budget counts. Pure."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.conversation import DM_WORKSPACE, Arrival, Incoming, Platform
from bot.handoff import DEFAULT_CONTACT


@dataclass(frozen=True)
class ReplyPolicy:
    """The settings a reply depends on, taken from Settings once."""

    model: str
    max_tokens: int
    history_tokens: int
    max_concurrent: int
    passages: int = 4
    reply_timeout: float = 60.0  # until the first text: every attempt and the fallback
    stall_timeout: float = 20.0  # after it: the longest silence of a stream still alive
    resume_minutes: float = 10.0  # a reply a stop cut off is answered again if this young
    user_rate: int = 0  # questions per person per hour (0: no cap)
    daily_budget_usd: float | None = None  # past it, docs-only answers until midnight UTC
    allowed_channels: frozenset[str] = frozenset()  # empty: everywhere it is invited
    allowed_workspaces: frozenset[str] = frozenset()
    contact: str = DEFAULT_CONTACT  # how to reach the team when no escalation channel is set

    def answers_in(self, incoming: Incoming) -> bool:
        """Whether this place is one the team lets the bot answer in.

        The terminal is the operator's own; a direct message is not a channel the team can
        list, so only the workspace rule applies to it.
        """
        key = incoming.key
        if key.platform is Platform.CONSOLE:
            return True
        if self.allowed_workspaces and key.workspace not in self.allowed_workspaces:
            return incoming.arrival is Arrival.DM and key.workspace == DM_WORKSPACE
        if incoming.arrival is Arrival.DM:
            return True
        return not self.allowed_channels or key.channel in self.allowed_channels

    def rate_for(self, platform: Platform) -> int:
        return 0 if platform is Platform.CONSOLE else self.user_rate


def start_of_day(now: float | None = None) -> float:
    """Unix time of this UTC day's midnight: the daily budget starts again then."""
    moment = time.time() if now is None else now
    return moment - moment % 86400
