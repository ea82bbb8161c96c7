"""Run `supportbot` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

BASE_ENV_DROP = ("ANTHROPIC_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                 "SLACK_SIGNING_SECRET", "DISCORD_BOT_TOKEN", "SUPPORTBOT_PROVIDER",
                 "SUPPORTBOT_PROVIDER_BASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK",
                 "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUD_ML_REGION")
# Loaded by each bot process at start-up: it refuses any connection beyond this machine.
LOCAL_ONLY = Path(__file__).resolve().parent.parent / "localonly"


def bot_env(workdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the bot: no real tokens, the DB in the test's folder."""
    env = {k: v for k, v in os.environ.items() if k not in BASE_ENV_DROP}
    env.update(
        SUPPORTBOT_DB=str(workdir / "bot.db"),
        SUPPORTBOT_FALLBACK_MODEL="",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(LOCAL_ONLY), os.environ.get("PYTHONPATH", "")) if p),
        # The cloud credential chains probe metadata addresses when nothing else is found.
        AWS_EC2_METADATA_DISABLED="true",
        NO_GCE_CHECK="True",
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
    )
    env.update(extra)
    return env


class BotProcess:
    """`python -m bot <command>` with pipes; always killed by `stop()`."""

    def __init__(self, workdir: Path, env: dict[str, str], *args: str) -> None:
        self.workdir = workdir
        self.env = env
        self.args = args or ("chat",)
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout = ""

    async def start(self) -> BotProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *self.args,
            cwd=self.workdir, env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def read_until(self, marker: str, timeout: float = 20.0) -> str:
        """Read stdout until `marker` appears after what was read before; returns all so far."""
        assert self.proc is not None and self.proc.stdout is not None
        start = len(self.stdout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while marker not in self.stdout[start:]:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {marker!r} in {self.stdout[start:]!r}")
            chunk = await asyncio.wait_for(self.proc.stdout.read(4096), remaining)
            if not chunk:
                raise EOFError(f"bot exited before {marker!r}; stdout={self.stdout!r}")
            self.stdout += chunk.decode()
        return self.stdout

    async def finish(self, timeout: float = 20.0) -> tuple[int, str, str]:
        """Close stdin and wait for a clean exit; returns code, all stdout, stderr."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        self.stdout += out.decode()
        return self.proc.returncode or 0, self.stdout, err.decode()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def chat_once(workdir: Path, env: dict[str, str], question: str) -> tuple[str, str]:
    """Ask one question in `supportbot chat`, read the answer, close stdin: (out, err)."""
    bot = await BotProcess(workdir, env).start()
    try:
        await bot.send(question)
        await bot.read_until("\n\n")
        code, out, err = await bot.finish()
        assert code == 0, err
        return out, err
    finally:
        await bot.stop()
