"""Metrics, liveness and readiness: real sockets on 127.0.0.1, figures read back as Prometheus
reads them, and nothing a caller passes can make a metrics call raise."""

from __future__ import annotations

import logging
import math
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics, MetricsPortError, Readiness, serve

HOST = "127.0.0.1"


def always_ready() -> Readiness:
    return Readiness(ready=True, waiting_for=())


def value(text: str, sample: str, **labels: str) -> float | None:
    """The value of one sample in an exposition, None when it is not there."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return found.value
    return None


def figure(metrics: Metrics, sample: str, **labels: str) -> float | None:
    return value(metrics.exposition()[0].decode(), sample, **labels)


async def fetch(port: int, path: str) -> tuple[int, str, str]:
    """Status, content type and body text of a GET on the local server."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{HOST}:{port}{path}") as response:
            return response.status, response.headers["Content-Type"], await response.text()


async def fetch_json(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{HOST}:{port}{path}") as response:
            return response.status, await response.json()


async def test_healthz_answers_ok() -> None:
    async with serve(HOST, 0, Metrics("i-1"), always_ready) as port:
        assert port > 0
        assert await fetch_json(port, "/healthz") == (200, {"ok": True})


async def test_readyz_names_what_it_waits_for_until_ready() -> None:
    waiting = ["store", "slack"]

    def ready() -> Readiness:
        return Readiness(ready=not waiting, waiting_for=tuple(waiting))

    async with serve(HOST, 0, Metrics("i-1"), ready) as port:
        assert await fetch_json(port, "/readyz") == (
            503, {"ready": False, "waiting_for": ["store", "slack"]})
        waiting.clear()
        assert await fetch_json(port, "/readyz") == (200, {"ready": True, "waiting_for": []})


async def test_metrics_carry_each_call_with_its_labels() -> None:
    metrics = Metrics("i-7")
    for _ in range(3):
        metrics.reply_started("slack")
    metrics.reply_ended("slack", "answered", 1.5)
    metrics.reply_ended("discord", "handed_over", 4.0)
    metrics.rate_limited("slack", "chat.update")
    metrics.rate_limited("slack", "chat.update")
    metrics.rate_limited("discord", "create_message")
    metrics.tokens("claude-x", "input", 100)
    metrics.tokens("claude-x", "input", 50)
    metrics.tokens("claude-x", "cache_read", 7)
    metrics.cost("claude-x", 0.25)
    metrics.cost("claude-x", 0.5)
    metrics.loop_lag(0.125)
    async with serve(HOST, 0, metrics, always_ready) as port:
        status, content_type, text = await fetch(port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert value(text, "supportbot_replies_total", platform="slack", outcome="answered") == 1.0
    assert value(text, "supportbot_replies_total",
                 platform="discord", outcome="handed_over") == 1.0
    assert value(text, "supportbot_replies_in_flight") == 1.0
    assert value(text, "supportbot_rate_limited_total",
                 platform="slack", method="chat.update") == 2.0
    assert value(text, "supportbot_rate_limited_total",
                 platform="discord", method="create_message") == 1.0
    assert value(text, "supportbot_tokens_total", model="claude-x", kind="input") == 150.0
    assert value(text, "supportbot_tokens_total", model="claude-x", kind="cache_read") == 7.0
    assert value(text, "supportbot_cost_usd_total", model="claude-x") == pytest.approx(0.75)
    assert value(text, "supportbot_event_loop_lag_seconds") == 0.125
    assert value(text, "supportbot_instance_info", instance="i-7") == 1.0


def test_histograms_count_their_observations() -> None:
    metrics = Metrics("i-1")
    metrics.reply_ended("slack", "answered", 0.2)
    metrics.reply_ended("slack", "answered", 30.0)
    metrics.first_text("slack", 0.8)
    metrics.budget_wait("discord", "channel", 0.005)
    metrics.budget_wait("discord", "channel", 2.0)
    metrics.budget_wait("discord", "channel", 90.0)
    assert figure(metrics, "supportbot_reply_seconds_count", platform="slack") == 2.0
    assert figure(metrics, "supportbot_reply_seconds_sum", platform="slack") == 30.2
    assert figure(metrics, "supportbot_reply_seconds_bucket", platform="slack", le="0.25") == 1.0
    assert figure(metrics, "supportbot_reply_seconds_bucket", platform="slack", le="120.0") == 2.0
    assert figure(metrics, "supportbot_first_text_seconds_count", platform="slack") == 1.0
    assert figure(metrics, "supportbot_first_text_seconds_bucket",
                  platform="slack", le="0.5") == 0.0
    assert figure(metrics, "supportbot_first_text_seconds_bucket",
                  platform="slack", le="1.0") == 1.0
    waits = {"platform": "discord", "budget": "channel"}
    assert figure(metrics, "supportbot_budget_wait_seconds_count", **waits) == 3.0
    assert figure(metrics, "supportbot_budget_wait_seconds_bucket", le="0.01", **waits) == 1.0
    assert figure(metrics, "supportbot_budget_wait_seconds_bucket", le="60.0", **waits) == 2.0
    assert figure(metrics, "supportbot_budget_wait_seconds_bucket", le="+Inf", **waits) == 3.0


def test_two_metrics_objects_keep_their_own_figures() -> None:
    first, second = Metrics("a"), Metrics("b")
    first.rate_limited("slack", "chat.update")
    first.reply_started("slack")
    assert figure(first, "supportbot_rate_limited_total",
                  platform="slack", method="chat.update") == 1.0
    assert figure(second, "supportbot_rate_limited_total",
                  platform="slack", method="chat.update") is None
    assert figure(second, "supportbot_replies_in_flight") == 0.0
    assert figure(second, "supportbot_instance_info", instance="b") == 1.0
    assert figure(second, "supportbot_instance_info", instance="a") is None


async def test_a_busy_port_names_the_setting_and_the_port() -> None:
    async with serve(HOST, 0, Metrics("a"), always_ready) as port:
        with pytest.raises(MetricsPortError) as caught:
            async with serve(HOST, port, Metrics("b"), always_ready):
                pass
    assert f"SUPPORTBOT_METRICS_PORT={port}" in str(caught.value)
    assert "in use" in str(caught.value)


async def test_the_port_is_free_again_after_the_block() -> None:
    async with serve(HOST, 0, Metrics("a"), always_ready) as port:
        pass
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(port, "/healthz")
    async with serve(HOST, port, Metrics("b"), always_ready) as again:
        assert again == port
        assert await fetch_json(port, "/healthz") == (200, {"ok": True})


def test_nonsense_numbers_are_dropped_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics("i-1")
    metrics.tokens("claude-x", "output", 10)
    metrics.cost("claude-x", 0.5)
    metrics.loop_lag(0.01)
    with caplog.at_level(logging.WARNING, logger="bot.metrics"):
        metrics.tokens("claude-x", "output", -3)
        metrics.cost("claude-x", -1.0)
        metrics.cost("claude-x", math.nan)
        metrics.cost("claude-x", math.inf)
        metrics.loop_lag(-0.5)
        metrics.first_text("slack", -1.0)
        metrics.budget_wait("slack", "chat.update", math.nan)
        metrics.reply_started("slack")
        metrics.reply_ended("slack", "failed", -2.0)
    assert figure(metrics, "supportbot_tokens_total", model="claude-x", kind="output") == 10.0
    assert figure(metrics, "supportbot_cost_usd_total", model="claude-x") == 0.5
    assert figure(metrics, "supportbot_event_loop_lag_seconds") == 0.01
    assert figure(metrics, "supportbot_first_text_seconds_count", platform="slack") is None
    assert figure(metrics, "supportbot_budget_wait_seconds_count",
                  platform="slack", budget="chat.update") is None
    # The reply still counts and leaves the in-flight figure; only its duration is dropped.
    assert figure(metrics, "supportbot_replies_total", platform="slack", outcome="failed") == 1.0
    assert figure(metrics, "supportbot_replies_in_flight") == 0.0
    assert figure(metrics, "supportbot_reply_seconds_count", platform="slack") is None
    # One warning per kind of figure, however often a caller repeats the mistake.
    assert len(caplog.records) == 6
    assert all("dropped" in record.getMessage() for record in caplog.records)
