"""The platform registry: one row per chat platform, read by `run`, `check` and the CLI.

Adding a platform means one package under bot/adapters/ and one row here. Adapters are
imported only when used, so commands that need none (stats, kb) start at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bot.config import Settings
from bot.conversation import Platform
from bot.runtime import Runtime

Serve = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]
Check = Callable[[Settings], Awaitable[list[str]]]


@dataclass(frozen=True)
class PlatformEntry:
    """What the CLI needs to know about one platform."""

    name: str
    enabled: Callable[[Settings], bool]
    serve: Serve  # answer until the event is set
    check: Check  # reach the platform with the configured credentials; lines to print
    setup: str  # where the README explains setting it up


async def _serve_slack(runtime: Runtime, stop: asyncio.Event) -> None:
    from bot.adapters.slack.app import serve

    await serve(runtime.ports(Platform.SLACK), stop)


async def _check_slack(settings: Settings) -> list[str]:
    from bot.adapters.slack.app import check

    return await check(settings)


async def _serve_discord(runtime: Runtime, stop: asyncio.Event) -> None:
    from bot.adapters.discord.client import serve

    await serve(runtime.ports(Platform.DISCORD), stop)


async def _check_discord(settings: Settings) -> list[str]:
    from bot.adapters.discord.client import check

    return await check(settings)


PLATFORMS: tuple[PlatformEntry, ...] = (
    PlatformEntry("slack", lambda s: s.slack_enabled, _serve_slack, _check_slack,
                  "README: Set up Slack"),
    PlatformEntry("discord", lambda s: s.discord_enabled, _serve_discord, _check_discord,
                  "README: Set up Discord"),
)


def enabled(settings: Settings) -> list[PlatformEntry]:
    """The platforms whose credentials are set."""
    return [entry for entry in PLATFORMS if entry.enabled(settings)]


async def console_chat(runtime: Runtime, stop: asyncio.Event) -> None:
    """The terminal chat: what `run` starts when no platform is configured."""
    from bot.adapters.console import chat

    await chat(runtime.ports(Platform.CONSOLE), stop)
