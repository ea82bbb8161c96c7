"""Before a reply starts: whether the bot answers in this place at all (and what it says there
once), and whether today's spend still allows the model. Joins the policy to the store."""

from __future__ import annotations

import hashlib
import logging

from bot.conversation import Incoming
from bot.notices import not_here
from bot.policy import ReplyPolicy, start_of_day
from bot.store import Store

log = logging.getLogger(__name__)


class Admission:
    def __init__(self, policy: ReplyPolicy, store: Store) -> None:
        self.policy = policy
        self.store = store

    async def refusal(self, incoming: Incoming, must_reply: bool = False) -> str | None:
        """None when the bot answers here. Elsewhere, what to say the first time it is asked
        there ("" ever after: it stays silent, unless it `must_reply`)."""
        if self.policy.answers_in(incoming):
            return None
        key = incoming.key
        log.info("not answering in %s:%s:%s (outside the allowed channels)",
                 key.platform.value, key.workspace, key.channel)
        # Told once per place and per setting: a changed list is said again.
        rule = ",".join(sorted(self.policy.allowed_channels)) + "/" + ",".join(
            sorted(self.policy.allowed_workspaces))
        digest = hashlib.sha256(rule.encode()).hexdigest()[:12]
        told = f"told-not-here:{digest}:{key.platform.value}:{key.workspace}:{key.channel}"
        if not await self.store.first_time(told) and not must_reply:
            return ""
        return not_here(self.policy.allowed_channels)

    async def over_budget(self) -> bool:
        """True once today's (UTC) model spend has reached SUPPORTBOT_DAILY_BUDGET_USD."""
        limit = self.policy.daily_budget_usd
        if limit is None:
            return False
        return await self.store.spent_since(start_of_day()) >= limit
