"""How Slack events reach an app, for tests: payload builders and both delivery paths.

Pure builders return plain dicts shaped like Slack's wire format; `send_signed_event` POSTs
one to a local Events API endpoint with the v0 HMAC-SHA256 signature headers. The Socket Mode
side lives in slack_socket_mode.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

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


async def send_signed_interaction(
    url: str, payload: Json, signing_secret: str, *, bad_signature: bool = False,
    timeout: float = 3.0,
) -> SignedResponse:
    """POST a block_actions / view_submission payload the way Slack does in HTTP mode: a
    form body with one `payload` field holding the JSON, signed like events."""
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    headers = signed_headers(raw, signing_secret, bad_signature=bad_signature)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.post(url, data=raw, headers=headers) as resp:
            return SignedResponse(resp.status, await resp.text(), time.monotonic() - started)
