"""The Discord adapter (being built)."""

from __future__ import annotations

import asyncio

from bot.config import Settings
from bot.runtime import Runtime


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Answer on Discord until `stop` is set."""
    raise NotImplementedError("discord adapter not built yet")


async def check(settings: Settings) -> list[str]:
    """Reach Discord with the configured token; lines to print."""
    raise NotImplementedError("discord adapter not built yet")
