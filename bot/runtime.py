"""Builds the bot's parts from Settings and closes them in order on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.config import Settings
from bot.conversation import Platform
from bot.embedding import Embedder
from bot.inbound import Inbound
from bot.knowledge import Knowledge
from bot.llm import ClaudeClient, ModelOptions
from bot.policy import ReplyPolicy
from bot.ports import PlatformState, Ports
from bot.prompts import PromptBook
from bot.providers import make_provider
from bot.responder import Responder
from bot.store import Store
from bot.surface import Restore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    knowledge: Knowledge
    responder: Responder
    llm: ClaudeClient | None
    inbound: Inbound

    def ports(self, platform: Platform) -> Ports:
        """What the adapter of `platform` is given (see bot/ports.py)."""
        responder = self.responder

        async def resume(restore: Restore) -> list[asyncio.Task[None]]:
            return await responder.resume(platform, restore)

        return Ports(
            settings=self.settings,
            inbound=self.inbound,
            state=PlatformState(self.store, platform),
            known=self.store.conversation_exists,
            last_asked=self.store.conversation_updated_at,
            resume=resume,
            finish_replies=responder.aclose,
            model_ready=self.llm is not None,
            handovers=responder.handovers,
        )


def model_client(settings: Settings) -> ClaudeClient | None:
    """The model client on the configured provider, or None when the Anthropic API is the
    provider and no key is set (knowledge-base-only mode). Each provider's settings were
    checked when they were read (config.py)."""
    if not settings.model_ready:
        return None
    options = ModelOptions(
        model=settings.model,
        fallback_model=settings.fallback_model,
        temperature=settings.temperature,
        effort=settings.effort,
    )
    provider = make_provider(settings.provider, settings.anthropic_api_key.value,
                             settings.anthropic_base_url)
    return ClaudeClient(provider, options)


async def open_store(settings: Settings) -> Store:
    """The store SUPPORTBOT_DB names, migrated: the SQLite file, or PostgreSQL with a pool
    as large as the replies that may run at once, plus a few for adapters and the CLI."""
    if settings.db_url is None:
        return await Store.open(settings.db_path)
    return await Store.open(settings.db_url.value, settings.db_path,
                            pool_size=settings.max_concurrent + 4)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Open the store (migrating it), index the docs folder, and wire the responder."""
    store = await open_store(settings)
    llm = model_client(settings)
    # The semantic model loads on the first search, and only when asked for (see README).
    knowledge = Knowledge(store.sqlite, Embedder.load if settings.kb_semantic else None)
    try:
        policy = ReplyPolicy(
            model=settings.model,
            max_tokens=settings.max_tokens,
            history_tokens=settings.history_tokens,
            max_concurrent=settings.max_concurrent,
            reply_timeout=settings.reply_timeout,
            resume_minutes=settings.resume_minutes,
            user_rate=settings.user_rate,
            daily_budget_usd=settings.daily_budget_usd,
            allowed_channels=settings.allowed_channels,
            allowed_workspaces=settings.allowed_workspaces,
            contact=settings.escalation_contact,
        )
        responder = Responder(policy, store, knowledge, llm, PromptBook.load(settings.prompts_dir))
        inbound = Inbound(responder.submit, store.event_seen)
        try:
            yield Runtime(settings, store, knowledge, responder, llm, inbound)
        finally:
            await inbound.aclose()
            await responder.aclose()
    finally:
        if llm is not None:
            await llm.aclose()
        await store.close()
