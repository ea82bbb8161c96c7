"""Builds the bot's parts from Settings and closes them in order on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bot.config import ConfigError, Settings
from bot.conversation import Platform
from bot.database import StorageUnavailable
from bot.embedding import Embedder
from bot.inbound import Inbound
from bot.instance_rows import Instance, InstanceRows
from bot.knowledge import Knowledge
from bot.llm import ClaudeClient, ModelOptions
from bot.metrics import Metrics, Readiness
from bot.policy import ReplyPolicy
from bot.ports import PlatformState, Ports
from bot.prompts import PromptBook
from bot.providers import make_provider
from bot.responder import Responder
from bot.shared import SharedLimits
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
    metrics: Metrics = field(default_factory=lambda: Metrics("supportbot"))
    shared: SharedLimits | None = None  # Redis, when several instances share the work
    instances: InstanceRows | None = None  # this instance's lease, when `run` serves
    # Each adapter's way to continue a journaled reply, kept for takeovers.
    restorers: dict[Platform, Restore] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # what /readyz still waits for

    def ports(self, platform: Platform) -> Ports:
        """What the adapter of `platform` is given (see bot/ports.py)."""
        responder = self.responder
        restorers = self.restorers

        async def resume(restore: Restore) -> list[asyncio.Task[None]]:
            restorers[platform] = restore
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
            metrics=self.metrics,
            shared=self.shared,
            connected=functools.partial(self.waiting.discard, platform.value),
            readiness=self.readiness,
        )

    def readiness(self) -> Readiness:
        """Ready once every platform is connected (and the store and Redis answered at start)."""
        return Readiness(not self.waiting, tuple(sorted(self.waiting)))


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
async def open_runtime(settings: Settings, serving: bool = False) -> AsyncIterator[Runtime]:
    """Open the store (migrating it), index the docs folder, and wire the responder. When
    `serving` (`run`), this process also holds an instance lease and opens Redis."""
    store = await open_store(settings)
    try:
        async with _instance(settings, store, serving) as (instances, shared):
            async with _wired(settings, store, instances, shared) as runtime:
                yield runtime
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _instance(
    settings: Settings, store: Store, serving: bool
) -> AsyncIterator[tuple[InstanceRows | None, SharedLimits | None]]:
    """This process's lease (refused when another instance is live on the same PostgreSQL
    database and no Redis is set) and its Redis connection; both let go on the way out."""
    if not serving:
        yield None, None
        return
    me = Instance.here()
    rows = InstanceRows(store.engine, me)
    store.journal.owner = me.id
    await rows.beat(settings.lease_seconds)
    await rows.forget_expired()
    # The lease is renewed until the very end: replies still being closed on the way out
    # stay this instance's until it leaves.
    beating = asyncio.create_task(_beat(rows, settings.lease_seconds))
    try:
        if settings.db_url is not None and not settings.redis_url:
            await _alone_or_refuse(rows, settings.lease_seconds)
        shared = await SharedLimits.open(settings, me.id) if settings.redis_url else None
        try:
            yield rows, shared
        finally:
            if shared is not None:
                await shared.close()
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        with contextlib.suppress(StorageUnavailable):  # its lease then simply expires
            await rows.leave()


async def _alone_or_refuse(rows: InstanceRows, lease: float) -> None:
    """Without Redis only one instance may serve a database. One that is stopping (a
    rolling update, a restart elsewhere) gets a lease's time to go before this one refuses."""
    for attempt in range(int(lease) + 2):
        live = await rows.live_peers()
        if not live:
            return
        if attempt == 0:
            log.warning("another supportbot instance (pid %d) is live on this database and "
                        "SUPPORTBOT_REDIS_URL is not set; waiting up to %.0f s for it to stop",
                        live[0].pid, lease)
        await asyncio.sleep(1.0)
    raise ConfigError(
        f"another supportbot instance ({live[0].host.split('/')[0]}, pid {live[0].pid}) is "
        "running on this PostgreSQL database; several instances share Slack's and Discord's "
        "rate limits only through Redis: set SUPPORTBOT_REDIS_URL on every instance (or stop "
        "the other one)")


async def _beat(rows: InstanceRows, lease: float) -> None:
    """Renew the lease every third of it, whatever else is busy, until cancelled."""
    failing = False
    while True:
        await asyncio.sleep(lease / 3)
        try:
            await rows.beat(lease)
        except Exception as error:  # StorageUnavailable, or anything: keep beating
            if not failing:  # said once per outage: the lease may lapse meanwhile
                log.error("could not renew this instance's lease: %s", error)
            failing = True
            continue
        if failing:
            log.info("this instance's lease is renewed again")
        failing = False


@contextlib.asynccontextmanager
async def _wired(settings: Settings, store: Store, instances: InstanceRows | None,
                 shared: SharedLimits | None) -> AsyncIterator[Runtime]:
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
        metrics = Metrics(instances.me.id if instances else "supportbot")
        responder = Responder(policy, store, knowledge, llm, PromptBook.load(settings.prompts_dir),
                              metrics=metrics)
        responder.instances = instances
        responder.in_line_patience += 2 * settings.lease_seconds  # a takeover's wait
        inbound = Inbound(responder.submit, store.event_seen, shared)
        try:
            yield Runtime(settings, store, knowledge, responder, llm, inbound, metrics, shared,
                          instances)
        finally:
            await inbound.aclose()
            await responder.aclose()
    finally:
        if llm is not None:
            await llm.aclose()


async def take_over_replies(runtime: Runtime, stop: asyncio.Event) -> None:
    """`run`'s takeovers: every third of the lease, finish the unfinished replies of
    instances that stopped beating, until `stop` is set (the lease itself is renewed apart,
    so a slow takeover never lets it lapse)."""
    lease = runtime.settings.lease_seconds
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), lease / 3)
        if stop.is_set():
            return
        for platform, restore in list(runtime.restorers.items()):
            try:
                await runtime.responder.resume(platform, restore)
            except Exception:  # the next pass tries again; the loop must not die quietly
                log.exception("taking over unfinished replies failed")
