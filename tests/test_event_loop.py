"""Commands run on uvloop where it is installed (a dependency everywhere but Windows)."""

from __future__ import annotations

import asyncio

from bot.__main__ import run_loop


def test_commands_run_on_uvloop_and_return_their_exit_code() -> None:
    async def command() -> int:
        loop = asyncio.get_running_loop()
        assert type(loop).__module__.startswith("uvloop"), type(loop)
        await asyncio.sleep(0)
        return 3

    assert run_loop(command()) == 3
