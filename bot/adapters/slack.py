"""The Slack adapter (being built)."""

from __future__ import annotations

import asyncio

from bot.config import Settings
from bot.runtime import Runtime


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Answer on Slack until `stop` is set."""
    raise NotImplementedError("slack adapter not built yet")


async def check(settings: Settings) -> list[str]:
    """Reach Slack with the configured token; lines to print."""
    raise NotImplementedError("slack adapter not built yet")
