"""The Slack adapter: slack-bolt's AsyncApp over Socket Mode or HTTP, replies streamed in threads.

Bolt acknowledges each event as soon as the listener returns, and the listener only translates
the payload and starts an owned task; downloads, thread reading and the reply happen after.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.events import (
    Identity,
    SlackMessage,
    person_message,
    request_problem,
    thread_context,
)
from bot.adapters.slack.files import Attachments, FileFetcher
from bot.adapters.slack.handoff import SlackControls, SlackEscalation, escalation_lines
from bot.adapters.slack.pacing import SlackPacing, Tiers, Watch
from bot.adapters.slack.shared_pacing import SharedSlackPacing
from bot.adapters.slack.stream import NativeStreamSurface
from bot.adapters.slack.surface import ReplyPlace, SlackSurface, error_code, retry_after
from bot.config import Settings
from bot.conversation import Arrival, Incoming, PageRef, Place, Platform
from bot.inbound import Prepared
from bot.metrics import Metrics, add_routes
from bot.ports import Ports
from bot.surface import Surface

log = logging.getLogger(__name__)

CONTEXT_MESSAGES = 50  # conversations.replies is Tier 1 for new apps: one bounded page, once
SHUTDOWN_TIMEOUT = 12.0


class SlackStartError(RuntimeError):
    """Slack refused the configured credentials; the message says which and what to do."""


@dataclass(frozen=True)
class SlackConnection:
    """The open clients one Slack app uses, and who the bot is."""

    settings: Settings
    client: AsyncWebClient
    session: aiohttp.ClientSession
    files: FileFetcher
    me: Identity


async def serve(ports: Ports, stop: asyncio.Event) -> None:
    """Answer on Slack until `stop` is set."""
    settings = ports.settings
    async with connect(settings) as slack:
        bridge = SlackBridge(ports, slack, pacing_for(ports))
        app = bolt_app(slack, bridge)
        ports.handovers.escalations[Platform.SLACK] = SlackEscalation(slack.client, settings)
        controls = SlackControls(slack.client, ports.handovers)
        controls.register(app)
        try:
            await ports.resume(bridge.restore)
            if settings.slack_app_token:
                await _socket_mode(app, slack, stop, ports.connected)
            else:
                await _http_mode(app, ports, stop)
        finally:
            await bridge.aclose()
            await controls.aclose()


def pacing_for(ports: Ports) -> SlackPacing:
    """Budgets in this process, or on the Redis server when several instances share them."""
    tiers = Tiers(update=ports.settings.slack_updates_per_minute)
    figures = SlackFigures(ports.metrics)
    if ports.shared is None:
        return SlackPacing(tiers, figures=figures)
    return SharedSlackPacing(ports.shared, ports.settings.lease_seconds, tiers, figures=figures)


class SlackFigures:
    """Slack's budgets reporting to /metrics: 429s and waits, by method."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def watch(self, method: str) -> Watch:
        return Watch(functools.partial(self.metrics.rate_limited, "slack", method),
                     functools.partial(self.metrics.budget_wait, "slack", method))


async def check(settings: Settings) -> list[str]:
    """Reach Slack with the configured token; lines to print."""
    async with connect(settings) as slack:
        me = slack.me
        lines = [f"connected to workspace {me.team_name} ({me.team_id}) as @{me.user_name}"]
        if settings.slack_app_token:
            await socket_url(slack)
            lines.append("Socket Mode: the app token opens a connection")
        else:
            lines.append(f"HTTP mode: Events API at POST /slack/events on port {settings.port}")
        if settings.slack_native_streaming:
            lines.append("native streaming on (falls back to chat.update when refused)")
        lines += await escalation_lines(slack.client, settings)
        return lines


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[SlackConnection]:
    """Open the HTTP sessions, learn who the bot is (auth.test), and close everything after."""
    session = aiohttp.ClientSession()
    http = httpx.AsyncClient()
    try:
        token = settings.slack_bot_token.value
        client = AsyncWebClient(token=token, base_url=settings.slack_api_url, session=session)
        me = await whoami(client)
        files = FileFetcher(http, token, settings.slack_api_url)
        yield SlackConnection(settings, client, session, files, me)
    finally:
        await http.aclose()
        await session.close()


async def socket_url(slack: SlackConnection) -> str | None:
    """A Socket Mode URL from apps.connections.open (None when rate-limited: the SDK retries)."""
    try:
        opened = await slack.client.apps_connections_open(
            app_token=slack.settings.slack_app_token.value
        )
    except SlackApiError as error:
        if retry_after(error) is not None:
            return None
        raise SlackStartError(
            f"Slack refused SLACK_APP_TOKEN ({error_code(error)}): make an app-level token "
            "with the connections:write scope on the app's Basic Information page"
        ) from None
    return str(opened["url"])


async def whoami(client: AsyncWebClient) -> Identity:
    """The bot's workspace and user ids from auth.test."""
    try:
        data = await client.auth_test()
    except SlackApiError as error:
        raise SlackStartError(
            f"Slack refused SLACK_BOT_TOKEN ({error_code(error)}): copy the Bot User OAuth "
            "Token (xoxb-…) again from the app's OAuth & Permissions page"
        ) from None
    return Identity(
        team_id=str(data.get("team_id") or ""),
        team_name=str(data.get("team") or ""),
        user_id=str(data.get("user_id") or ""),
        bot_id=str(data.get("bot_id") or ""),
        user_name=str(data.get("user") or "supportbot"),
    )


class SlackBridge:
    """Bolt's events in, replies out: translation first, slow work in tasks it owns."""

    def __init__(self, ports: Ports, slack: SlackConnection, pacing: SlackPacing) -> None:
        self.ports = ports
        self.slack = slack
        self.pacing = pacing

    async def on_event(self, body: dict[str, Any]) -> None:
        """Bolt listener for app_mention and message events; returns at once so Bolt acks.

        The mention and its message.channels twin carry the same event id: one is taken.
        """
        message = person_message(body, self.slack.me)
        if message is not None:
            costly = bool(message.files) or message.joins_thread  # downloads, a thread read
            # Ordered per conversation: a slow download holds back only its own thread.
            self.ports.inbound.accept(Platform.SLACK, message.event_id, message.key.id,
                                      lambda: self._prepared(message), costly)

    async def _prepared(self, message: SlackMessage) -> Prepared | None:
        if message.arrival is Arrival.FOLLOW_UP and not await self.ports.known(message.key):
            return None  # a thread the bot is not part of
        return Prepared(await self._incoming(message), self.surface(message))

    async def _incoming(self, message: SlackMessage) -> Incoming:
        context = await self._thread_context(message) if message.joins_thread else ""
        attached = await self.slack.files.fetch(message.files) if message.files else Attachments()
        return Incoming(
            key=message.key,
            author_id=message.user,
            text=context + message.text,
            event_id=message.event_id,
            arrival=message.arrival,
            images=attached.images,
            notes=attached.notes,
        )

    async def _thread_context(self, message: SlackMessage) -> str:
        """A thread the bot is mentioned into: read once (one bounded page), kept in the store."""
        if await self.ports.known(message.key):
            return ""  # history comes from the store
        cache = f"thread-context:{message.key.id}"
        cached = await self.ports.state.get(cache)
        if cached is not None:
            return cached
        try:
            page = await self.slack.client.conversations_replies(
                channel=message.channel, ts=str(message.thread_ts), limit=CONTEXT_MESSAGES
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not read the thread: %s", type(error).__name__)
            return ""
        text = thread_context(page.get("messages") or [], message.ts, self.slack.me)
        await self.ports.state.set(cache, text)
        return text

    def surface(self, message: SlackMessage) -> Surface:
        """Where this reply is shown: a native stream if enabled, else edit-in-place."""
        place = ReplyPlace(message.team, message.channel, message.thread_ts or message.ts,
                           message.user, message.ts)
        pacing = self.pacing.workspace(message.team)
        if self.slack.settings.slack_native_streaming:
            return NativeStreamSurface(self.slack.client, place, pacing)
        return SlackSurface(self.slack.client, place, pacing)

    async def restore(self, place: Place, pages: tuple[PageRef, ...]) -> Surface | None:
        """A surface that continues a journaled reply in its messages (see Responder.resume)."""
        reply_place = ReplyPlace.from_journal(place)
        if reply_place is None or reply_place.team != self.slack.me.team_id:
            return None
        surface = SlackSurface(self.slack.client, reply_place,
                               self.pacing.workspace(reply_place.team))
        surface.adopt(pages)
        return surface

    async def aclose(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Let events being taken in reach the journal, then end replies in flight with the
        interrupted note (each is cancelled once, so its note is never cut)."""
        await self.ports.inbound.aclose()
        await self.ports.finish_replies(timeout)


def bolt_app(slack: SlackConnection, bridge: SlackBridge) -> AsyncApp:
    """An AsyncApp that authorizes from our own auth.test, so no event waits for one."""

    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or slack.me.team_id,
            bot_user_id=slack.me.user_id,
            bot_id=slack.me.bot_id,
            bot_token=slack.settings.slack_bot_token.value,
        )

    # Bolt's own client carries no token: `authorize` supplies it per request.
    unauthorized = AsyncWebClient(base_url=slack.settings.slack_api_url, session=slack.session)
    bolt_log = logging.getLogger("bot.adapters.slack.bolt")
    with _silenced(bolt_log):
        app = AsyncApp(
            name="supportbot",
            logger=bolt_log,
            client=unauthorized,
            signing_secret=slack.settings.slack_signing_secret.value,
            authorize=authorize,
            process_before_response=True,  # our listener is quick; nothing runs unowned
        )
    app.event("app_mention")(bridge.on_event)
    app.event("message")(bridge.on_event)
    return app


@contextlib.contextmanager
def _silenced(logger: logging.Logger) -> Iterator[None]:
    """Bolt warns that an SLACK_BOT_TOKEN in the environment goes unused when it is given a
    client; that is intended here (authorize supplies the token), so the warning is muted."""
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = False


async def _socket_mode(app: AsyncApp, slack: SlackConnection, stop: asyncio.Event,
                       connected: Callable[[], None]) -> None:
    handler = AsyncSocketModeHandler(app, app_token=slack.settings.slack_app_token.value)
    try:
        # Open the first URL ourselves so a refused app token stops the bot with a clear
        # message (the SDK would retry it forever); the SDK fetches later ones itself.
        handler.client.wss_uri = await socket_url(slack)
        await _connected_until(handler, slack, stop, connected)
    finally:
        try:
            await handler.close_async()  # type: ignore[no-untyped-call]
        except (aiohttp.ClientError, OSError) as error:  # the link may already be gone
            log.warning("closing the Socket Mode connection failed: %s", type(error).__name__)


async def _connected_until(
    handler: AsyncSocketModeHandler, slack: SlackConnection, stop: asyncio.Event,
    connected: Callable[[], None],
) -> None:
    # Connecting retries on its own (the SDK reconnects too), so it races with `stop`.
    connecting = asyncio.create_task(handler.connect_async())  # type: ignore[no-untyped-call]
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            connecting.result()
            log.info("Slack: connected to %s as @%s (Socket Mode)", slack.me.team_name,
                     slack.me.user_name)
            connected()
            await stopping
    finally:
        for task in (connecting, stopping):
            task.cancel()
        await asyncio.gather(connecting, stopping, return_exceptions=True)


# The largest request body read. Slack's payloads are a few KB; the largest, a message of
# 40,000 characters sent as text and again as blocks, \u-escaped, stays under 1 MB.
# Anything bigger is not from Slack and is refused before it is read.
MAX_BODY = 1024 * 1024


async def _http_mode(app: AsyncApp, ports: Ports, stop: asyncio.Event) -> None:
    settings = ports.settings
    secret = settings.slack_signing_secret.value

    async def events(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("refused a request to /slack/events: body over %d bytes", MAX_BODY)
            return web.json_response({"error": "body too large"}, status=413)
        headers = request.headers
        problem = request_problem(body, headers.get("X-Slack-Request-Timestamp"),
                                  headers.get("X-Slack-Signature"), secret, time.time())
        if problem is not None:
            # One short line: anyone who reaches the port can send these.
            log.warning("refused a request to /slack/events: %s", problem)
            status = 400 if problem == "body is not UTF-8" else 401
            return web.json_response({"error": problem}, status=status)
        bolt_request = AsyncBoltRequest(body=body.decode("utf-8"), query=request.query_string,
                                        headers=dict(headers))
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    web_app = web.Application(client_max_size=MAX_BODY)
    web_app.router.add_post("/slack/events", events)
    add_routes(web_app, ports.metrics, ports.readiness)  # /healthz, /readyz, /metrics
    runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        host = settings.slack_http_host
        await web.TCPSite(runner, host, settings.port).start()
        log.info("Slack: Events API at http://%s:%d/slack/events (HTTP mode)", host, settings.port)
        ports.connected()
        await stop.wait()
    finally:
        await runner.cleanup()
