"""Records and budgets of the fake Slack: limits, API calls, messages, files, rate limiters."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
