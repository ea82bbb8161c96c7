"""What the bot is doing, for Prometheus, and whether it is alive and ready, over HTTP.

Each `Metrics` owns its registry, so tests and several instances in one process never mix
their figures. A metrics call never raises: a number that makes no sense (negative, NaN) is
dropped and logged once, because a reply must never fail for the sake of a counter.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

log = logging.getLogger(__name__)

PORT_SETTING = "SUPPORTBOT_METRICS_PORT"
# A chat reply: a short answer within a second, a long streamed one over a minute or two.
REPLY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
# A write held for the shared rate budget: usually no wait at all, at worst a whole window.
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsPortError(RuntimeError):
    """The metrics port cannot be listened on; the message names the setting and the port."""


@dataclass(frozen=True)
class Readiness:
    """Whether the bot can take work now, and if not, the names of what it still waits for."""

    ready: bool
    waiting_for: tuple[str, ...] = ()


class Metrics:
    """The bot's Prometheus metrics, in a registry of their own, for one instance id."""

    def __init__(self, instance: str) -> None:
        self._registry = CollectorRegistry()
        self._dropped: set[str] = set()
        into = self._registry
        self._replies = Counter("supportbot_replies_total", "Replies finished, by how they ended",
                                ["platform", "outcome"], registry=into)
        self._reply_seconds = Histogram(
            "supportbot_reply_seconds", "Time from a question to its finished reply",
            ["platform"], buckets=REPLY_BUCKETS, registry=into)
        self._first_text_seconds = Histogram(
            "supportbot_first_text_seconds", "Time from a question to the first visible text",
            ["platform"], buckets=REPLY_BUCKETS, registry=into)
        self._rate_limited = Counter(
            "supportbot_rate_limited_total", "429 answers received from the chat platform",
            ["platform", "method"], registry=into)
        self._tokens = Counter("supportbot_tokens_total", "Model tokens, by model and kind",
                               ["model", "kind"], registry=into)
        self._cost = Counter("supportbot_cost_usd_total", "Model spend in US dollars",
                             ["model"], registry=into)
        self._budget_wait_seconds = Histogram(
            "supportbot_budget_wait_seconds", "Time a write waited for the shared rate budget",
            ["platform", "budget"], buckets=WAIT_BUCKETS, registry=into)
        self._in_flight = Gauge("supportbot_replies_in_flight", "Replies started, not ended",
                                registry=into)
        self._loop_lag = Gauge("supportbot_event_loop_lag_seconds",
                               "The latest event-loop lag sample", registry=into)
        Info("supportbot_instance", "The id of this bot instance",
             registry=into).info({"instance": instance})

    def reply_started(self, platform: str) -> None:
        self._in_flight.inc()

    def reply_ended(self, platform: str, outcome: str, seconds: float) -> None:
        """Count the reply and leave the in-flight figure; a bad duration still counts it."""
        self._in_flight.dec()
        self._replies.labels(platform, outcome).inc()
        if self._usable("reply seconds", seconds):
            self._reply_seconds.labels(platform).observe(seconds)

    def first_text(self, platform: str, seconds: float) -> None:
        if self._usable("first text seconds", seconds):
            self._first_text_seconds.labels(platform).observe(seconds)

    def rate_limited(self, platform: str, method: str) -> None:
        self._rate_limited.labels(platform, method).inc()

    def tokens(self, model: str, kind: str, count: int) -> None:
        if self._usable("token count", count):
            self._tokens.labels(model, kind).inc(count)

    def cost(self, model: str, usd: float) -> None:
        if self._usable("cost", usd):
            self._cost.labels(model).inc(usd)

    def budget_wait(self, platform: str, budget: str, seconds: float) -> None:
        if self._usable("budget wait seconds", seconds):
            self._budget_wait_seconds.labels(platform, budget).observe(seconds)

    def loop_lag(self, seconds: float) -> None:
        if self._usable("loop lag seconds", seconds):
            self._loop_lag.set(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text a Prometheus scrape reads, and its content type."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    def _usable(self, what: str, value: float) -> bool:
        """True for a finite value of zero or more; anything else is dropped, logged once."""
        if math.isfinite(value) and value >= 0:
            return True
        # Once per kind of figure: a caller's bug repeats on every reply and would flood the log.
        if what not in self._dropped:
            self._dropped.add(what)
            log.warning("metrics: dropped a %s of %r (and will drop any more quietly)",
                        what, value)
        return False


def add_routes(app: web.Application, metrics: Metrics, ready: Callable[[], Readiness]) -> None:
    """GET /healthz (liveness), /readyz (readiness, 503 until ready) and /metrics on `app`."""

    async def healthz(request: web.Request) -> web.Response:
        # Answering is the proof: the loop that runs the replies ran this handler.
        return web.json_response({"ok": True})

    async def readyz(request: web.Request) -> web.Response:
        state = ready()
        body = {"ready": state.ready, "waiting_for": list(state.waiting_for)}
        return web.json_response(body, status=200 if state.ready else 503)

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        # aiohttp refuses a charset in content_type=, so the header is given whole.
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)


@contextlib.asynccontextmanager
async def serve(
    host: str, port: int, metrics: Metrics, ready: Callable[[], Readiness]
) -> AsyncIterator[int]:
    """Serve the three routes on host:port for the block; yields the bound port (0 picks one)."""
    app = web.Application()
    add_routes(app, metrics, ready)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await _listen(runner, host, port)
        bound = int(runner.addresses[0][1])
        log.info("metrics at http://%s:%d/metrics, health at /healthz and /readyz", host, bound)
        yield bound
    finally:
        await runner.cleanup()


async def _listen(runner: web.AppRunner, host: str, port: int) -> None:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        # The operator fixes a setting, not the code: name the setting, spare the traceback.
        raise MetricsPortError(port_problem(host, port, error)) from None


def port_problem(host: str, port: int, error: OSError) -> str:
    """What went wrong listening on host:port, worded for whoever set the port."""
    if error.errno == errno.EADDRINUSE:
        return (f"{PORT_SETTING}={port}: the port is in use on {host} (another supportbot or "
                "another program listens there); choose a free port or stop the other")
    return f"{PORT_SETTING}={port}: cannot listen on {host}:{port} ({error.strerror or error})"
