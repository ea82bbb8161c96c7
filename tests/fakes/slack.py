"""A local fake of Slack — Web API, Socket Mode and private file downloads — on 127.0.0.1.

Faithful where the bot can tell the difference: wire formats (form or JSON bodies, Bearer
tokens), error names, HTTP 429 + Retry-After rate limits per method tier, Socket Mode
envelopes/acks/redelivery, and url_private needing the bot token. Run it out of process with
`python -m tests.fakes.slack --port 0`, which prints `READY http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import math
import signal
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.fakes import slack_events as ev
from tests.fakes.slack_events import Json

UPDATE_MAX_BYTES = 4_000  # chat.update text over this many UTF-8 bytes → msg_too_long
POST_MAX_CHARS = 40_000  # chat.postMessage silently truncates longer text
MARKDOWN_MAX_CHARS = 12_000  # markdown_text per call (chat.* and chat.*Stream) → msg_too_long
REPLIES_MAX_LIMIT = 1_000  # conversations.replies: default and maximum page size
STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
TIER3_METHODS = ("chat.delete", "reactions.add", "reactions.remove")
LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


@dataclass(frozen=True)
class ApiCall:
    """One Web API call as the fake saw it (token removed from params)."""

    method: str
    params: Mapping[str, Any]
    time: float
    ok: bool
    error: str | None
    status: int


@dataclass(frozen=True)
class FakeMessage:
    """The current state of one message in a channel."""

    channel: str
    ts: str
    text: str
    user: str
    bot_id: str | None = None
    thread_ts: str | None = None
    blocks: tuple[Json, ...] | None = None
    files: tuple[Json, ...] = ()
    reactions: tuple[str, ...] = ()
    edits: int = 0
    edited_ts: str | None = None
    appends: int = 0
    streaming: bool = False


@dataclass(frozen=True)
class _Reply:
    """A Web API answer: JSON body, HTTP status and extra headers."""

    body: Json
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _StoredFile:
    name: str
    mimetype: str
    data: bytes


class ApiError(Exception):
    """A Slack error answer ({"ok": false, "error": ...}, HTTP 200)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class SlidingWindow:
    """At most `limit` admissions in any `window` seconds (Slack's per-minute tiers)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def acquire(self, now: float) -> float:
        """Admit the call and return 0, or return the seconds until a slot frees."""
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            self._times.append(now)
            return 0.0
        return self._times[0] + self.window - now


class TokenBucket:
    """`rate` calls per second with bursts up to `burst` (chat.postMessage per channel)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def acquire(self, now: float) -> float:
        """Admit the call and return 0, or return the seconds until a token is available."""
        if self._at is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def _ok(**fields: Any) -> _Reply:
    return _Reply({"ok": True, **fields})


def _rate_limited(wait: float) -> _Reply:
    """HTTP 429 as Slack sends it: integer Retry-After (≥ 1 s) and error "ratelimited"."""
    retry_after = str(max(1, math.ceil(wait)))
    return _Reply({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": retry_after})


def _str(params: Json, name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def _need(params: Json, name: str, error: str) -> str:
    value = _str(params, name)
    if not value:
        raise ApiError(error)
    return value


def _int(params: Json, name: str, default: int) -> int:
    try:
        return int(params.get(name) or default)
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_arguments") from exc


def _content(params: Json) -> tuple[str | None, list[Json] | None]:
    """The text (or markdown_text) and blocks of a chat.postMessage/chat.update call."""
    markdown = params.get("markdown_text")
    if markdown is not None and len(str(markdown)) > MARKDOWN_MAX_CHARS:
        raise ApiError("msg_too_long")
    text = params.get("text", markdown)
    blocks = _json_list(params.get("blocks"), "invalid_blocks")
    if not text and not blocks and not params.get("attachments"):
        raise ApiError("no_text")
    return (None if text is None else str(text)), blocks


def _json_list(value: Any, error: str) -> list[Json] | None:
    """Blocks/chunks arrive as a list (JSON body) or a JSON string (form body)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ApiError(error) from exc
    if not isinstance(value, list):
        raise ApiError(error)
    return value


async def _read_params(request: web.Request) -> tuple[Json, str | None]:
    """Merge query string and body; also return a token sent as a form-body field.

    Slack ignores a token inside a JSON body (JSON needs the Authorization header) and, for
    apps created since February 2021, a token in the query string.
    """
    params: Json = {k: v for k, v in request.query.items() if k != "token"}
    if request.content_type == "application/json":
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            raise ApiError("invalid_json") from exc
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        body.pop("token", None)
        return {**params, **body}, None
    form = await request.post() if request.can_read_body else {}
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    token = fields.pop("token", None)
    return {**params, **fields}, token


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError("invalid_cursor") from exc
    if kind != "next_ts" or not ts:
        raise ApiError("invalid_cursor")
    return ts


class FakeSlack:
    """A Slack workspace with one bot, served over HTTP/WebSocket on 127.0.0.1."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A0001",
        update_limit: int = 50,
        update_window: float = 60.0,
        update_max_bytes: int = UPDATE_MAX_BYTES,
        tier3_limit: int = 50,
        post_per_channel_per_second: float = 1.0,
        post_burst: int = 3,
        native_streaming: bool = False,
        append_limit: int = 100,
        stream_limit: int = 20,
        stream_window: float = 60.0,
        echo_bot_messages: bool = False,
        ack_timeout: float = 3.0,
        max_redeliveries: int = 2,
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.team_id, self.app_id = team_id, app_id
        self.bot_user_id, self.bot_id = bot_user_id, bot_id
        self.update_max_bytes = update_max_bytes
        self.native_streaming = native_streaming
        self.echo_bot_messages = echo_bot_messages
        self._post_rate, self._post_burst = post_per_channel_per_second, post_burst
        # Tier 3 chat.update is one budget for the whole workspace; streaming has its own tiers:
        # appendStream Tier 4 (100+/min), startStream and stopStream Tier 2 (20+/min). Every
        # other Tier 3 method the bot uses counts on its own window of the same size.
        self._windows = {
            "chat.update": SlidingWindow(update_limit, update_window),
            **{m: SlidingWindow(tier3_limit, update_window) for m in TIER3_METHODS},
            "chat.appendStream": SlidingWindow(append_limit, stream_window),
            "chat.startStream": SlidingWindow(stream_limit, stream_window),
            "chat.stopStream": SlidingWindow(stream_limit, stream_window),
        }
        self._post_buckets: dict[str, TokenBucket] = {}
        self.calls: list[ApiCall] = []
        self.rate_limited = 0
        self.statuses: list[tuple[str, str, str]] = []
        self.ephemerals: list[Json] = []
        self.downloads: list[tuple[str, bool]] = []
        self.file_delay = 0.0  # seconds before a file download answers
        self._messages: dict[str, dict[str, FakeMessage]] = {}
        self._files: dict[str, _StoredFile] = {}
        self.socket_mode = ev.SocketModeHub(
            app_id=app_id,
            team_id=team_id,
            bot_user_id=bot_user_id,
            ack_timeout=ack_timeout,
            max_redeliveries=max_redeliveries,
        )
        self.acks = self.socket_mode.acks  # envelope_id → seconds from send to ack
        self.deliveries = self.socket_mode.deliveries
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.api_url = ""
        self._handlers: dict[str, Callable[[Json], _Reply]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "conversations.replies": self._replies,
            "conversations.info": self._conversation_info,
            "users.info": self._user_info,
            "reactions.add": self._reaction_add,
            "reactions.remove": self._reaction_remove,
            "assistant.threads.setStatus": self._set_status,
        }

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:`port` (0 = any free port); return the base URL."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket-mode", self.socket_mode.handle)
        app.router.add_get("/files-pri/{key}/{name}", self._file)
        app.router.add_get("/files-pri/{key}/download/{name}", self._file)
        app.router.add_get("/", self._login_page)
        app.router.add_get("/_fake/stats", self._stats)
        app.router.add_get("/_fake/messages", self._messages_view)
        app.router.add_post("/_fake/events", self._push_view)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{bound}"
        self.api_url = self.base_url + "/api/"
        return self.base_url

    async def stop(self) -> None:
        """Close Socket Mode connections, cancel redeliveries and stop serving."""
        await self.socket_mode.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- inspection ------------------------------------------------------------------------

    def messages(self, channel: str, thread_ts: str | None = None) -> list[FakeMessage]:
        """Messages in `channel` oldest first; with `thread_ts`, only that thread (parent first)."""
        found = list(self._messages.get(channel, {}).values())
        if thread_ts is not None:
            found = [m for m in found if thread_ts in (m.ts, m.thread_ts)]
        return sorted(found, key=lambda m: ev.ts_key(m.ts))

    def count(self, method: str, *, error: str | None = None, status: int | None = None) -> int:
        """How many calls of `method` were made, optionally only those with an error/status."""
        return sum(
            1
            for c in self.calls
            if c.method == method
            and (error is None or c.error == error)
            and (status is None or c.status == status)
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Poll `predicate` every 10 ms; raise TimeoutError if it is still false after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    def stats(self) -> Json:
        """Counts per method, errors per method, 429s served and Socket Mode ack latencies."""
        errors: dict[str, Counter[str]] = {}
        for call in self.calls:
            if call.error is not None:
                errors.setdefault(call.method, Counter())[call.error] += 1
        return {
            "calls": dict(Counter(c.method for c in self.calls)),
            "errors": {m: dict(c) for m, c in errors.items()},
            "rate_limited": self.rate_limited,
            "acks": dict(self.acks),
            "deliveries": len(self.deliveries),
        }

    # ----- seeding ---------------------------------------------------------------------------

    def add_history(self, channel: str, messages: list[Json]) -> None:
        """Seed messages (Slack message dicts: ts, text, user, thread_ts, bot_id, files…)."""
        for raw in messages:
            msg = FakeMessage(
                channel=channel,
                ts=str(raw.get("ts") or ev.next_ts()),
                text=str(raw.get("text", "")),
                user=str(raw.get("user", "U123")),
                bot_id=raw.get("bot_id"),
                thread_ts=raw.get("thread_ts"),
                blocks=tuple(raw["blocks"]) if raw.get("blocks") else None,
                files=tuple(raw.get("files") or ()),
            )
            self._store(msg)

    def add_file(self, name: str, mimetype: str, data: bytes) -> Json:
        """Host a private file; return its Slack file object (url_private needs the bot token)."""
        if not self.base_url:
            raise RuntimeError("start the fake before adding files")
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        key = f"{self.team_id}-{file_id}"
        self._files[key] = _StoredFile(name, mimetype, data)
        quoted = quote(name)
        return {
            "id": file_id,
            "created": int(time.time()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rpartition(".")[2].lower() if "." in name else "binary",
            "user": "U123",
            "mode": "hosted",
            "is_external": False,
            "is_public": False,
            "size": len(data),
            "url_private": f"{self.base_url}/files-pri/{key}/{quoted}",
            "url_private_download": f"{self.base_url}/files-pri/{key}/download/{quoted}",
        }

    # ----- Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params, form_token = await _read_params(request)
        except ApiError as exc:
            params, reply = {}, _Reply({"ok": False, "error": exc.error})
        else:
            reply = self._dispatch(method, params, _bearer(request) or form_token)
        self._record(method, params, reply)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def _dispatch(self, method: str, params: Json, token: str | None) -> _Reply:
        """Check method, auth, token type and rate limit, then run the method."""
        handler = self._handlers.get(method)
        if handler is None or (method in STREAM_METHODS and not self.native_streaming):
            return _Reply({"ok": False, "error": "unknown_method", "req_method": method})
        try:
            self._check_token(method, token)
            wait = self._limit(method, params)
            if wait > 0:
                self.rate_limited += 1
                return _rate_limited(wait)
            return handler(params)
        except ApiError as exc:
            return _Reply({"ok": False, "error": exc.error})

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise ApiError("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise ApiError("invalid_auth")
        # App-level (xapp-) tokens only open Socket Mode; bot tokens cannot.
        if (token == self.app_token) != (method == "apps.connections.open"):
            raise ApiError("not_allowed_token_type")

    def _limit(self, method: str, params: Json) -> float:
        """Seconds the caller must wait, or 0 after taking a slot in the method's budget."""
        now = time.monotonic()
        if method == "chat.postMessage":
            channel = _str(params, "channel")
            bucket = self._post_buckets.get(channel)
            if bucket is None:
                bucket = self._post_buckets[channel] = TokenBucket(
                    self._post_rate, self._post_burst
                )
            return bucket.acquire(now)
        window = self._windows.get(method)
        return window.acquire(now) if window is not None else 0.0

    def _record(self, method: str, params: Json, reply: _Reply) -> None:
        ok = reply.body.get("ok") is True
        error = reply.body.get("error")
        self.calls.append(ApiCall(method, params, time.monotonic(), ok, error, reply.status))

    def _auth_test(self, params: Json) -> _Reply:
        return _ok(
            url="https://fake-workspace.slack.com/",
            team="Fake Workspace",
            user="supportbot",
            team_id=self.team_id,
            user_id=self.bot_user_id,
            bot_id=self.bot_id,
            is_enterprise_install=False,
        )

    def _connections_open(self, params: Json) -> _Reply:
        return _ok(url=self.socket_mode.issue_url(self.base_url))

    # ----- messages --------------------------------------------------------------------------

    def _store(self, msg: FakeMessage) -> None:
        self._messages.setdefault(msg.channel, {})[msg.ts] = msg

    def _find(self, params: Json, ts_param: str = "ts") -> FakeMessage:
        channel = _need(params, "channel", "channel_not_found")
        ts = _need(params, ts_param, "message_not_found")
        msg = self._messages.get(channel, {}).get(ts)
        if msg is None:
            raise ApiError("message_not_found")
        return msg

    def _bot_message(self, channel: str, text: str, params: Json, **extra: Any) -> FakeMessage:
        return FakeMessage(
            channel=channel,
            ts=ev.next_ts(),
            text=text,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=_str(params, "thread_ts") or None,
            **extra,
        )

    def _post_message(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        text, blocks = _content(params)
        text = (text or "")[:POST_MAX_CHARS]
        msg = self._bot_message(channel, text, params, blocks=tuple(blocks) if blocks else None)
        self._store(msg)
        self._echo(self._message_event(msg))
        return _ok(channel=channel, ts=msg.ts, message=self._api_message(msg))

    def _update(self, params: Json) -> _Reply:
        msg = self._find(params)
        if msg.user != self.bot_user_id:
            raise ApiError("cant_update_message")
        text, blocks = _content(params)
        # Measured on the real API: the cap is 4,000 UTF-8 bytes, not characters.
        if text is not None and len(text.encode()) > self.update_max_bytes:
            raise ApiError("msg_too_long")
        new = replace(
            msg,
            text=msg.text if text is None else text,
            # Slack keeps the previous blocks unless the update sends some.
            blocks=msg.blocks if blocks is None else tuple(blocks),
            edits=msg.edits + 1,
            edited_ts=ev.next_ts(),
        )
        self._store(new)
        self._echo(self._change_event(new, msg, "message_changed"))
        return _ok(channel=new.channel, ts=new.ts, text=new.text, message=self._api_message(new))

    def _delete(self, params: Json) -> _Reply:
        msg = self._find(params)
        if msg.user != self.bot_user_id:
            raise ApiError("cant_delete_message")
        del self._messages[msg.channel][msg.ts]
        self._echo(self._change_event(msg, msg, "message_deleted"))
        return _ok(channel=msg.channel, ts=msg.ts)

    def _post_ephemeral(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        user = _need(params, "user", "user_not_in_channel")
        self.ephemerals.append({"channel": channel, "user": user, "text": _str(params, "text")})
        return _ok(message_ts=ev.next_ts())

    def _api_message(self, msg: FakeMessage, reply_count: int = 0) -> Json:
        """A message object as Slack returns it from chat.* and conversations.replies."""
        out: Json = {"type": "message", "user": msg.user, "text": msg.text, "ts": msg.ts}
        out["team"] = self.team_id
        if msg.bot_id is not None:
            out.update({"bot_id": msg.bot_id, "app_id": self.app_id})
        if msg.thread_ts is not None or reply_count:
            out["thread_ts"] = msg.thread_ts or msg.ts
        if reply_count:
            out["reply_count"] = reply_count
        if msg.blocks is not None:
            out["blocks"] = list(msg.blocks)
        if msg.files:
            out["files"] = list(msg.files)
        if msg.edited_ts is not None:
            out["edited"] = {"user": msg.user, "ts": msg.edited_ts}
        if msg.reactions:
            out["reactions"] = [
                {"name": n, "users": [self.bot_user_id], "count": 1} for n in msg.reactions
            ]
        return out

    # ----- native streaming (chat.startStream / appendStream / stopStream) --------------------

    def _stream_text(self, params: Json) -> str:
        """markdown_text plus the text of markdown_text chunks (what slack_sdk's helper sends)."""
        text = _str(params, "markdown_text")
        for chunk in _json_list(params.get("chunks"), "invalid_chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += str(chunk.get("text", ""))
        if len(text) > MARKDOWN_MAX_CHARS:
            raise ApiError("msg_too_long")
        return text

    def _streaming_message(self, params: Json) -> FakeMessage:
        msg = self._find(params)
        if not msg.streaming:
            raise ApiError("message_not_in_streaming_state")
        return msg

    def _start_stream(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        text = self._stream_text(params)
        msg = self._bot_message(channel, text, params, streaming=True)
        self._store(msg)
        self._echo(self._message_event(msg))
        return _ok(channel=channel, ts=msg.ts)

    def _append_stream(self, params: Json) -> _Reply:
        msg = self._streaming_message(params)
        text = self._stream_text(params)
        if not text and not params.get("chunks"):
            raise ApiError("no_text")
        self._store(replace(msg, text=msg.text + text, appends=msg.appends + 1))
        return _ok(channel=msg.channel, ts=msg.ts)

    def _stop_stream(self, params: Json) -> _Reply:
        msg = self._streaming_message(params)
        text = self._stream_text(params)
        blocks = _json_list(params.get("blocks"), "invalid_blocks")
        new = replace(
            msg,
            text=msg.text + text,
            streaming=False,
            blocks=tuple(blocks) if blocks else msg.blocks,
        )
        self._store(new)
        return _ok(channel=new.channel, ts=new.ts, message=self._api_message(new))

    # ----- conversations, users, reactions, assistant ---------------------------------------

    def _replies(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        ts = _need(params, "ts", "thread_not_found")
        thread = self.messages(channel, ts)
        if not thread or thread[0].ts != ts:
            raise ApiError("thread_not_found")
        limit = max(1, min(_int(params, "limit", REPLIES_MAX_LIMIT), REPLIES_MAX_LIMIT))
        cursor = _str(params, "cursor")
        start_ts = _decode_cursor(cursor) if cursor else ts
        rest = [m for m in thread if ev.ts_key(m.ts) >= ev.ts_key(start_ts)]
        page, more = rest[:limit], len(rest) > limit
        replies = len(thread) - 1
        body = [self._api_message(m, replies if m.ts == ts else 0) for m in page]
        next_cursor = _encode_cursor(rest[limit].ts) if more else ""
        return _ok(messages=body, has_more=more, response_metadata={"next_cursor": next_cursor})

    def _conversation_info(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        kind = ev.channel_type_of(channel)
        info: Json = {
            "id": channel,
            "is_channel": kind == "channel",
            "is_group": kind == "group",
            "is_im": kind == "im",
            "is_private": kind != "channel",
            "is_member": True,
        }
        if kind == "im":
            info["user"] = "U123"
        else:
            info["name"] = "chan-" + channel.lower()
        return _ok(channel=info)

    def _user_info(self, params: Json) -> _Reply:
        user = _need(params, "user", "user_not_found")
        is_bot = user == self.bot_user_id
        name = "supportbot" if is_bot else "user-" + user.lower()
        profile = {"display_name": name, "real_name": name.title()}
        return _ok(
            user={
                "id": user,
                "team_id": self.team_id,
                "name": name,
                "real_name": profile["real_name"],
                "is_bot": is_bot,
                "deleted": False,
                "tz": "Europe/London",
                "profile": profile,
            }
        )

    def _reaction_add(self, params: Json) -> _Reply:
        msg = self._find(params, "timestamp")
        name = _need(params, "name", "invalid_name")
        if name in msg.reactions:
            raise ApiError("already_reacted")
        self._store(replace(msg, reactions=(*msg.reactions, name)))
        return _ok()

    def _reaction_remove(self, params: Json) -> _Reply:
        msg = self._find(params, "timestamp")
        name = _need(params, "name", "invalid_name")
        if name not in msg.reactions:
            raise ApiError("no_reaction")
        self._store(replace(msg, reactions=tuple(r for r in msg.reactions if r != name)))
        return _ok()

    def _set_status(self, params: Json) -> _Reply:
        channel = _need(params, "channel_id", "channel_not_found")
        thread_ts = _need(params, "thread_ts", "invalid_arguments")
        self.statuses.append((channel, thread_ts, _str(params, "status")))
        return _ok()

    # ----- files and the login page ----------------------------------------------------------

    async def _file(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        stored = self._files.get(key)
        if stored is None:
            raise web.HTTPNotFound()
        authorized = _bearer(request) == self.bot_token
        self.downloads.append((key, authorized))
        await asyncio.sleep(self.file_delay)  # a slow file server, for ordering tests
        if not authorized:
            # Slack answers an unauthenticated url_private fetch with its sign-in page.
            raise web.HTTPFound("/?redir=" + quote(request.path))
        headers = {}
        if "/download/" in request.path:
            headers["Content-Disposition"] = f'attachment; filename="{stored.name}"'
        return web.Response(body=stored.data, content_type=stored.mimetype, headers=headers)

    async def _login_page(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html")

    # ----- out-of-process control ------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _messages_view(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel", "")
        found = self.messages(channel, request.query.get("thread_ts"))
        return web.json_response({"messages": [asdict(m) for m in found]})

    async def _push_view(self, request: web.Request) -> web.Response:
        body = await request.json()
        attempt = int(body.get("retry_attempt", 0))
        if not self.socket_mode.connected:
            return web.json_response({"error": "no Socket Mode client connected"}, status=409)
        envelope_id = await self.push_event(body["event"], retry_attempt=attempt)
        return web.json_response({"envelope_id": envelope_id})

    # ----- Socket Mode -----------------------------------------------------------------------

    async def wait_connected(self, timeout: float = 10) -> None:
        """Wait until a Socket Mode client has connected and received hello."""
        await self.socket_mode.wait_connected(timeout)

    async def push_event(self, event: Json, *, retry_attempt: int = 0) -> str:
        """Send `event` to the Socket Mode client in an events_api envelope; return envelope_id.

        Unacked after ack_timeout, it is redelivered (new envelope, same event_id) up to
        max_redeliveries times with retry_attempt + 1 and retry_reason "timeout".
        """
        return await self.socket_mode.push(event, retry_attempt=retry_attempt)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the Socket Mode client to reconnect, as Slack does before recycling a link."""
        await self.socket_mode.send_disconnect(reason)

    # ----- echo of the bot's own messages ----------------------------------------------------

    def _echo(self, event: Json) -> None:
        """Push the event Slack would send for the bot's own post/edit, when asked to."""
        if self.echo_bot_messages and self.socket_mode.connected:
            self.socket_mode.spawn(self.socket_mode.push(event))

    def _message_event(self, msg: FakeMessage) -> Json:
        return ev.message(
            msg.text,
            user=msg.user,
            channel=msg.channel,
            ts=msg.ts,
            thread_ts=msg.thread_ts,
            bot_id=msg.bot_id,
            team=self.team_id,
        )

    def _change_event(self, new: FakeMessage, old: FakeMessage, subtype: str) -> Json:
        return ev.message(
            new.text,
            user=new.user,
            channel=new.channel,
            ts=new.ts,
            thread_ts=new.thread_ts,
            bot_id=new.bot_id,
            subtype=subtype,
            previous_text=old.text,
            team=self.team_id,
        )


# ----- CLI ---------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a fake Slack on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    # Every other flag maps one-to-one onto a FakeSlack keyword argument.
    parser.add_argument("--bot-token", default="xoxb-test")
    parser.add_argument("--app-token", default="xapp-test")
    parser.add_argument("--update-limit", type=int, default=50)
    parser.add_argument("--update-window", type=float, default=60.0)
    parser.add_argument("--tier3-limit", type=int, default=50)
    parser.add_argument("--post-rate", dest="post_per_channel_per_second", type=float, default=1.0)
    parser.add_argument("--post-burst", type=int, default=3)
    parser.add_argument("--native-streaming", action="store_true")
    parser.add_argument("--append-limit", type=int, default=100)
    parser.add_argument("--stream-limit", type=int, default=20)
    parser.add_argument("--stream-window", type=float, default=60.0)
    parser.add_argument("--echo-bot-messages", action="store_true")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    options = {k: v for k, v in vars(args).items() if k not in ("port", "max_seconds")}
    fake = FakeSlack(**options)
    base = await fake.start(args.port)
    print(f"READY {base}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # Bounded: a forgotten fake exits on its own after --max-seconds.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), args.max_seconds)
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point for `python -m tests.fakes.slack`."""
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
