"""How Slack events reach an app, for tests: payload builders and both delivery paths.

Pure builders return plain dicts shaped like Slack's wire format; `send_signed_event` POSTs
one to a local Events API endpoint with the v0 HMAC-SHA256 signature headers; `SocketModeHub`
is the server side of Socket Mode (hello, events_api envelopes, acks, redelivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

Json = dict[str, Any]

VERIFICATION_TOKEN = "fake-verification-token"
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
DEFAULT_TEAM = "T0001"
DEFAULT_APP = "A0001"
DEFAULT_BOT_USER = "UBOT"


class _TsClock:
    """Hands out Slack-style timestamps ("seconds.micros") that never repeat or go back."""

    def __init__(self) -> None:
        self._last_us = 0

    def next(self) -> str:
        """Return the next timestamp: wall-clock time, bumped by 1 µs if it would repeat."""
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        seconds, micros = divmod(self._last_us, 1_000_000)
        return f"{seconds}.{micros:06d}"


_CLOCK = _TsClock()


def next_ts() -> str:
    """Return a fresh message timestamp such as "1700000000.000100", unique and increasing."""
    return _CLOCK.next()


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps (compare numerically, not as strings)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds or 0), int(micros or 0)


def channel_type_of(channel: str) -> str:
    """Slack's channel_type for a conversation id: D… is "im", G… "group", else "channel"."""
    if channel.startswith("D"):
        return "im"
    if channel.startswith("G"):
        return "group"
    return "channel"


def new_event_id() -> str:
    """Return an event id shaped like Slack's ("Ev" + 10 upper-case alphanumerics)."""
    return "Ev" + uuid.uuid4().hex[:10].upper()


def rich_text(text: str) -> list[Json]:
    """The single rich_text block Slack attaches to messages typed by people."""
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5], "elements": [section]}]


def app_mention(
    text: str,
    user: str = "U123",
    channel: str = "C123",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: Sequence[Json] | None = None,
    team: str = DEFAULT_TEAM,
) -> Json:
    """An app_mention event; `text` should contain the mention, e.g. "<@UBOT> help"."""
    ts = ts or next_ts()
    event: Json = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "team": team,
        "blocks": rich_text(text),
        "channel": channel,
        "event_ts": ts,
    }
    _add_thread_and_files(event, thread_ts, files, upload=False)
    return event


def message(
    text: str = "",
    *,
    user: str = "U123",
    channel: str = "C123",
    channel_type: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    bot_id: str | None = None,
    subtype: str | None = None,
    files: Sequence[Json] | None = None,
    previous_text: str = "",
    team: str = DEFAULT_TEAM,
) -> Json:
    """A `message` event. For message_changed/message_deleted, `ts` is the edited message's ts.

    `channel_type` ("im", "channel", "group") defaults to the one implied by the channel id.
    """
    kind = channel_type or channel_type_of(channel)
    if subtype in ("message_changed", "message_deleted"):
        inner = _inner_message(text, user, ts or next_ts(), thread_ts, bot_id, team)
        before = {**inner, "text": previous_text}
        before.pop("edited", None)
        return _hidden_change(subtype, channel, kind, inner, before)
    ts = ts or next_ts()
    event: Json = {"type": "message", "channel": channel, "channel_type": kind, "text": text}
    event.update({"ts": ts, "event_ts": ts, "team": team})
    _add_author(event, user, bot_id, subtype, text)
    _add_thread_and_files(event, thread_ts, files, upload=subtype == "file_share")
    return event


def _add_author(event: Json, user: str, bot_id: str | None, subtype: str | None, text: str) -> None:
    """Fill who wrote a message the way Slack does for people, apps and legacy bots."""
    if subtype is not None:
        event["subtype"] = subtype
    if subtype == "bot_message":
        # Legacy bot posts carry bot_id and a username, not a user id.
        event.update({"bot_id": bot_id or "B0OTHER", "username": "other-bot"})
        return
    event["user"] = user
    if bot_id is not None:
        event.update({"bot_id": bot_id, "app_id": DEFAULT_APP})
    else:
        event.update({"client_msg_id": str(uuid.uuid4()), "blocks": rich_text(text)})


def _add_thread_and_files(
    event: Json, thread_ts: str | None, files: Sequence[Json] | None, *, upload: bool
) -> None:
    """Add thread_ts and files (with Slack's `upload` flag) when present."""
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = list(files)
        event["upload"] = upload


def _inner_message(
    text: str, user: str, ts: str, thread_ts: str | None, bot_id: str | None, team: str
) -> Json:
    """The nested `message` object of a message_changed event."""
    inner: Json = {"type": "message", "user": user, "text": text, "ts": ts, "team": team}
    inner["edited"] = {"user": user, "ts": next_ts()}
    if bot_id is not None:
        inner.update({"bot_id": bot_id, "app_id": DEFAULT_APP})
    if thread_ts is not None:
        inner["thread_ts"] = thread_ts
    return inner


def _hidden_change(subtype: str, channel: str, kind: str, inner: Json, before: Json) -> Json:
    """message_changed / message_deleted: hidden events whose own ts is new."""
    ts = next_ts()
    event: Json = {"type": "message", "subtype": subtype, "hidden": True, "channel": channel}
    event.update({"channel_type": kind, "ts": ts, "event_ts": ts, "previous_message": before})
    if subtype == "message_changed":
        event["message"] = inner
    else:
        event["deleted_ts"] = inner["ts"]
    return event


def event_callback(
    event: Json,
    team_id: str = DEFAULT_TEAM,
    event_id: str | None = None,
    *,
    api_app_id: str = DEFAULT_APP,
    bot_user_id: str = DEFAULT_BOT_USER,
) -> Json:
    """The outer Events API body Slack sends (over HTTP or inside a Socket Mode envelope)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def url_verification(challenge: str | None = None) -> Json:
    """The body Slack POSTs once to check a Request URL; the app must echo `challenge`."""
    return {
        "token": VERIFICATION_TOKEN,
        "challenge": challenge or uuid.uuid4().hex,
        "type": "url_verification",
    }


def signature(body: bytes, signing_secret: str, timestamp: int) -> str:
    """Slack's v0 signature: HMAC-SHA256 over "v0:{timestamp}:{body}", hex, prefixed "v0="."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return "v0=" + digest


@dataclass(frozen=True)
class SignedResponse:
    """What the app answered to one signed Events API request."""

    status: int
    text: str
    elapsed: float
    timed_out: bool = False

    def json(self) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.text)


def signed_headers(
    body: bytes,
    signing_secret: str,
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    bad_signature: bool = False,
) -> dict[str, str]:
    """Headers Slack sends with an Events API request, optionally with a wrong signature."""
    ts = int(time.time()) if timestamp is None else timestamp
    secret = signing_secret + "-wrong" if bad_signature else signing_secret
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(body, secret, ts),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


async def send_signed_event(
    url: str,
    body: Json,
    signing_secret: str,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    bad_signature: bool = False,
    timestamp: int | None = None,
    timeout: float = 3.0,
) -> SignedResponse:
    """POST `body` to `url` signed like Slack; give up after `timeout` s, as Slack does at 3 s."""
    raw = json.dumps(body).encode()
    headers = signed_headers(
        raw,
        signing_secret,
        timestamp=timestamp,
        retry_num=retry_num,
        retry_reason=retry_reason,
        bad_signature=bad_signature,
    )
    started = time.monotonic()
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            async with session.post(url, data=raw, headers=headers) as resp:
                text = await resp.text()
                return SignedResponse(resp.status, text, time.monotonic() - started)
    except TimeoutError:
        return SignedResponse(0, "", time.monotonic() - started, timed_out=True)


@dataclass(frozen=True)
class Delivery:
    """One Socket Mode envelope sent to the client."""

    envelope_id: str
    event_id: str
    retry_attempt: int
    retry_reason: str
    sent_at: float


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
        self._connected = asyncio.Event()
        self._sent: dict[str, tuple[float, str]] = {}
        self._acked: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

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
        self._sockets.append(ws)
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
        body = event_callback(
            event, self.team_id, api_app_id=self.app_id, bot_user_id=self.bot_user_id
        )
        envelope_id = await self._deliver(body, retry_attempt)
        self.spawn(self._redeliver(body, retry_attempt))
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

    async def _deliver(self, body: Json, attempt: int) -> str:
        ws = self._require_socket()
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
