"""A local fake of Slack — Web API, Socket Mode and private file downloads — on 127.0.0.1.

Faithful where the bot can tell the difference: wire formats (form or JSON bodies, Bearer
tokens), error names, HTTP 429 + Retry-After rate limits per method tier, Socket Mode
envelopes/acks/redelivery, and url_private needing the bot token. Run it out of process with
`python -m tests.fakes.slack --port 0`, which prints `READY http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from urllib.parse import quote

from aiohttp import web

from tests.fakes import slack_events as ev
from tests.fakes.server import LocalServer
from tests.fakes.slack_events import Json
from tests.fakes.slack_interactive import Interactions, permalink, reaction_added
from tests.fakes.slack_methods import SlackMethods
from tests.fakes.slack_socket_mode import SocketModeHub
from tests.fakes.slack_state import (
    LOGIN_PAGE,
    MARKDOWN_MAX_CHARS,
    POST_MAX_CHARS,
    REPLIES_MAX_LIMIT,
    STREAM_METHODS,
    TIER3_METHODS,
    UPDATE_MAX_BYTES,
    ApiCall,
    ApiError,
    FakeMessage,
    SlidingWindow,
    TokenBucket,
    _Reply,
    _StoredFile,
)
from tests.fakes.slack_wire import _bearer, _rate_limited, _read_params, _str

__all__ = [
    "MARKDOWN_MAX_CHARS",
    "POST_MAX_CHARS",
    "REPLIES_MAX_LIMIT",
    "STREAM_METHODS",
    "TIER3_METHODS",
    "UPDATE_MAX_BYTES",
    "ApiCall",
    "ApiError",
    "FakeMessage",
    "FakeSlack",
    "SlidingWindow",
    "TokenBucket",
    "main",
]


class FakeSlack(SlackMethods):
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
        def windows() -> dict[str, SlidingWindow]:
            return {
                "chat.update": SlidingWindow(update_limit, update_window),
                **{m: SlidingWindow(tier3_limit, update_window) for m in TIER3_METHODS},
                "chat.appendStream": SlidingWindow(append_limit, stream_window),
                "chat.startStream": SlidingWindow(stream_limit, stream_window),
                "chat.stopStream": SlidingWindow(stream_limit, stream_window),
            }

        # Limits are per workspace. An org-wide app on Enterprise Grid serves several: a
        # channel belongs to the workspace ("team") its events came from.
        self._new_windows = windows
        self._team_windows: dict[str, dict[str, SlidingWindow]] = {team_id: windows()}
        self._channel_team: dict[str, str] = {}
        self._post_buckets: dict[str, TokenBucket] = {}
        self.calls: list[ApiCall] = []
        # (method, channel or ""): outcomes of its next calls
        self._faults: dict[tuple[str, str], list[str | int]] = {}
        self.rate_limited = 0
        self.statuses: list[tuple[str, str, str]] = []
        self.ephemerals: list[Json] = []
        self.downloads: list[tuple[str, bool]] = []
        self.file_delay = 0.0  # seconds before a file download answers
        self._messages: dict[str, dict[str, FakeMessage]] = {}
        self._files: dict[str, _StoredFile] = {}
        self.socket_mode = SocketModeHub(
            app_id=app_id,
            team_id=team_id,
            bot_user_id=bot_user_id,
            ack_timeout=ack_timeout,
            max_redeliveries=max_redeliveries,
        )
        self.acks = self.socket_mode.acks  # envelope_id → seconds from send to ack
        self.deliveries = self.socket_mode.deliveries
        self.interactions = Interactions(team_id, app_id)
        self.usergroups: list[Json] = [
            {"id": "S0TEAM", "team_id": team_id, "handle": "support-team",
             "name": "Support team", "is_usergroup": True, "user_count": 3}]
        # (channel, ts) of the messages people sent (pushed as events), for chat.getPermalink.
        self.people_messages: set[tuple[str, str]] = set()
        self._server: LocalServer | None = None
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
            "conversations.history": self._history,
            "conversations.info": self._conversation_info,
            "users.info": self._user_info,
            "reactions.add": self._reaction_add,
            "reactions.remove": self._reaction_remove,
            "assistant.threads.setStatus": self._set_status,
            "views.open": self.interactions.views_open,
            "usergroups.list": self._usergroups_list,
            "chat.getPermalink": lambda params: permalink(params, self._messages,
                                                          self.people_messages),
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
        self._server = LocalServer(app)
        self.base_url = await self._server.start(port)
        self.api_url = self.base_url + "/api/"
        return self.base_url

    async def stop(self) -> None:
        """Close Socket Mode connections, cancel redeliveries and stop serving."""
        await self.socket_mode.close()
        if self._server is not None:
            await self._server.stop()

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- inspection ------------------------------------------------------------------------
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

    def fail_next(self, method: str, *outcomes: str | int, channel: str = "") -> None:
        """The next calls of `method` (in `channel`, or anywhere) fail, one outcome each: a
        Slack error code ("ok": false, HTTP 200, as Slack answers) or an HTTP status (a 5xx
        from Slack's edge)."""
        self._faults.setdefault((method, channel), []).extend(outcomes)

    def delete_as_moderator(self, channel: str, ts: str) -> None:
        """A workspace admin deletes a message: later calls on it answer message_not_found."""
        self._messages.get(channel, {}).pop(ts, None)

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

    def _usergroups_list(self, params: Json) -> _Reply:
        return _Reply({"ok": True, "usergroups": list(self.usergroups)})

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
            faults = self._faults.get((method, _str(params, "channel")))
            faults = faults or self._faults.get((method, ""))
            if faults:
                return _fault(faults.pop(0))
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
        team = self._channel_team.get(_str(params, "channel"), self.team_id)
        windows = self._team_windows.get(team)
        if windows is None:
            windows = self._team_windows[team] = self._new_windows()
        window = windows.get(method)
        return window.acquire(now) if window is not None else 0.0

    def _record(self, method: str, params: Json, reply: _Reply) -> None:
        ok = reply.body.get("ok") is True
        error = reply.body.get("error")
        self.calls.append(ApiCall(method, params, time.monotonic(), ok, error, reply.status))

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
        if event.get("type") in ("message", "app_mention") and event.get("ts"):
            self.people_messages.add((str(event.get("channel")), str(event["ts"])))
        if event.get("team") and event.get("channel"):
            self._channel_team[str(event["channel"])] = str(event["team"])
        return await self.socket_mode.push(event, retry_attempt=retry_attempt)

    async def click(self, channel: str, ts: str, action_id: str, user: str = "U123") -> Json:
        """A person presses the button `action_id` on a message (sent over Socket Mode)."""
        payload = self.click_payload(channel, ts, action_id, user)
        await self.socket_mode.push_interactive(payload)
        return payload

    def click_payload(self, channel: str, ts: str, action_id: str, user: str = "U123") -> Json:
        """The block_actions payload of a click, for HTTP mode to send signed."""
        message = self._messages.get(channel, {}).get(ts)
        if message is None:
            raise LookupError(f"no message {ts} in {channel}")
        return self.interactions.block_actions(message, action_id, user)

    async def submit_view(self, view_id: str, user: str,
                          values: dict[str, dict[str, str]]) -> Json:
        """A person submits an open modal with these {block_id: {action_id: value}}."""
        payload = self.interactions.view_submission(view_id, user, values)
        await self.socket_mode.push_interactive(payload)
        return payload

    async def react(self, channel: str, ts: str, user: str,
                    reaction: str = "white_check_mark") -> None:
        """A person adds a reaction to a message (the bot gets reaction_added)."""
        message = self._messages.get(channel, {}).get(ts)
        item_user = message.user if message is not None else ""
        await self.push_event(reaction_added(user, reaction, channel, ts, item_user))

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the Socket Mode client to reconnect, as Slack does before recycling a link."""
        await self.socket_mode.send_disconnect(reason)


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


def _fault(outcome: str | int) -> _Reply:
    if isinstance(outcome, int):
        return _Reply({"ok": False, "error": "internal_error"}, status=outcome)
    return _Reply({"ok": False, "error": outcome})
