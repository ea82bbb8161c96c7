"""The seam between the bot and whichever provider serves Claude: a small protocol the
responder, the evaluation and the checks depend on. Errors are bot.errors' provider-neutral
classes. Today bot/llm.py implements it for the Anthropic API."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from bot.conversation import Prompt, StreamEnd


class ModelClient(Protocol):
    def stream(self, prompt: Prompt) -> AsyncGenerator[str | StreamEnd, None]:
        """Text deltas of the answer, then one StreamEnd (stop reason, usage, model).
        Raises bot.errors.LLMError subclasses; retries and fallback happen inside."""
        ...

    async def check(self) -> str:
        """Reach the provider; a short description of what answered (never a secret)."""
        ...

    async def aclose(self) -> None: ...
