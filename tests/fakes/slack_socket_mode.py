"""The server side of Slack's Socket Mode for the fake: one-use connection tickets, hello,
events_api envelopes, acks within the deadline, and redelivery of events left unacknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.slack_events import (
    DEFAULT_APP,
    DEFAULT_BOT_USER,
    DEFAULT_TEAM,
    Json,
    event_callback,
)


@dataclass(frozen=True)
class Delivery:
    """One Socket Mode envelope sent to the client."""

    envelope_id: str
    event_id: str
    retry_attempt: int
    retry_reason: str
    sent_at: float


MAX_CONNECTIONS = 10


class SocketModeHub:
    """Server side of Socket Mode: one-use tickets, hello, events_api envelopes, acks, retries."""

    def __init__(
        self,
        *,
        app_id: str = DEFAULT_APP,
        team_id: str = DEFAULT_TEAM,
        bot_user_id: str = DEFAULT_BOT_USER,
        ack_timeout: float = 3.0,
        max_redeliveries: int = 2,
    ) -> None:
        self.app_id, self.team_id, self.bot_user_id = app_id, team_id, bot_user_id
        self.ack_timeout, self.max_redeliveries = ack_timeout, max_redeliveries
        self.deliveries: list[Delivery] = []
        self.acks: dict[str, float] = {}
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._opened: list[web.WebSocketResponse] = []  # every connection ever, in order
        self._connected = asyncio.Event()
        self._sent: dict[str, tuple[float, str]] = {}
        self._acked: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # An app may hold up to 10 connections; Slack spreads events over them (here in turn).
        self._turn = 0
        self.delivered_to: list[int] = []  # per delivery: which connection (by open order)

    @property
    def connected(self) -> bool:
        """True while at least one client connection is open."""
        return self._live_socket() is not None

    def issue_url(self, base_url: str) -> str:
        """A fresh WebSocket URL, as apps.connections.open returns (the ticket is single-use)."""
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        ws_base = base_url.replace("http://", "ws://", 1)
        return f"{ws_base}/socket-mode?ticket={ticket}&app_id={self.app_id}"

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """aiohttp handler for GET /socket-mode: greet with hello, then read acks until closed."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            raise web.HTTPUnauthorized()
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)  # answers the client's pings with pongs
        await ws.prepare(request)
        if sum(1 for live in self._sockets if not live.closed) >= MAX_CONNECTIONS:
            # Slack keeps at most 10 connections per app and turns the next one away.
            await ws.send_str(json.dumps({"type": "disconnect", "reason": "too_many_websockets"}))
            await ws.close()
            return ws
        self._sockets.append(ws)
        self._opened.append(ws)
        try:
            await ws.send_str(json.dumps(self._hello()))
            self._connected.set()
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    self._on_client_frame(frame.data)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._connected.clear()
        return ws

    async def wait_connected(self, timeout: float = 10) -> None:
        """Wait until a client has connected and received hello."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def push(self, event: Json, *, retry_attempt: int = 0) -> str:
        """Wrap `event` in an event_callback and an events_api envelope, send it, return its id.

        Unacked after ack_timeout, it is sent again (new envelope, same event_id) up to
        max_redeliveries times with retry_attempt + 1 and retry_reason "timeout".
        """
        team = str(event.get("team") or self.team_id)  # org-wide apps: the event's workspace
        body = event_callback(event, team, api_app_id=self.app_id, bot_user_id=self.bot_user_id)
        envelope_id = await self._deliver(body, retry_attempt)
        self.spawn(self._redeliver(body, retry_attempt))
        return envelope_id

    async def push_interactive(self, payload: Json) -> str:
        """Send a block_actions / view_submission payload in an interactive envelope.

        Slack does not redeliver these: an unacknowledged click shows the person an error.
        """
        ws = self._require_socket()
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "payload": payload, "type": "interactive",
                    "accepts_response_payload": True}
        now = time.monotonic()
        self._sent[envelope_id] = (now, envelope_id)
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Tell the client to reconnect, as Slack does before recycling a connection."""
        frame = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}}
        await self._require_socket().send_str(json.dumps(frame))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` in the background until it ends or the hub closes."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel pending redeliveries and close every connection."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY)

    def _hello(self) -> Json:
        return {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {
                "host": "applink-fake-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _on_client_frame(self, data: str) -> None:
        """Record an ack ({"envelope_id": ...}) and stop redelivering its event."""
        with contextlib.suppress(json.JSONDecodeError):
            frame = json.loads(data)
            envelope_id = str(frame.get("envelope_id")) if isinstance(frame, dict) else ""
            sent = self._sent.get(envelope_id)
            if sent is not None:
                self.acks.setdefault(envelope_id, time.monotonic() - sent[0])
                self._acked.setdefault(sent[1], asyncio.Event()).set()

    def _live_socket(self) -> web.WebSocketResponse | None:
        live = [ws for ws in self._sockets if not ws.closed]
        return live[-1] if live else None

    def _require_socket(self) -> web.WebSocketResponse:
        ws = self._live_socket()
        if ws is None:
            raise RuntimeError("no Socket Mode client connected")
        return ws

    def _next_socket(self) -> web.WebSocketResponse:
        """The connection the next event goes to: each live one in turn."""
        live = [ws for ws in self._sockets if not ws.closed]
        if not live:
            raise RuntimeError("no Socket Mode client connected")
        self._turn += 1
        chosen = live[self._turn % len(live)]
        self.delivered_to.append(self._opened.index(chosen))
        return chosen

    async def _deliver(self, body: Json, attempt: int) -> str:
        ws = self._next_socket()
        envelope_id = str(uuid.uuid4())
        reason = "timeout" if attempt else ""
        envelope = {
            "envelope_id": envelope_id,
            "payload": body,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": attempt,
            "retry_reason": reason,
        }
        now = time.monotonic()
        self._sent[envelope_id] = (now, body["event_id"])
        self.deliveries.append(Delivery(envelope_id, body["event_id"], attempt, reason, now))
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    async def _redeliver(self, body: Json, attempt: int) -> None:
        acked = self._acked.setdefault(body["event_id"], asyncio.Event())
        for retry in range(attempt + 1, attempt + 1 + self.max_redeliveries):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(acked.wait(), self.ack_timeout)
                return
            if self.connected:  # with no connection this attempt is simply lost
                await self._deliver(body, retry)
