"""The soak benchmark in two minutes (bench/soak.py runs it for twenty): the shipped bot on
Slack and Discord at once, mixed traffic, redeliveries, model faults, one Socket Mode refresh
and one gateway drop. Every question ends answered or honestly failed, once; nothing is left
typing; memory, event-loop lag and open files hold their targets.

It runs as its own process from the start of the session (tests/e2e/soak_run.py), beside
the other tests; this test waits for it and judges its figures."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.soak import verdict
from tests.e2e.soak_run import KEY, MINUTES


async def test_two_minutes_of_mixed_traffic_and_faults_lose_nothing(
    request: pytest.FixtureRequest,
) -> None:
    run = request.config.stash[KEY]
    for _ in range(int((MINUTES * 60 + 240) / 0.5)):  # bounded: the run, settling, a margin
        if run.process.poll() is not None:
            break
        await asyncio.sleep(0.5)
    log = run.log_file.read_text(errors="replace")
    assert run.process.returncode == 0, log[-3000:]
    figures = json.loads(run.figures_file.read_text())
    # The run was what it claims: enough traffic, and each kind of fault happened.
    assert figures["minutes"] == MINUTES and figures["questions"] >= 60
    assert figures["model_faults"] >= 3 and figures["honestly_failed"] >= 1
    assert figures["redeliveries"] >= 1
    assert min(figures["kinds"].values()) >= 1 and len(figures["kinds"]) == 6
    assert figures["loop_lag_p99_ms"] is not None  # the bot's own reading was found
    assert verdict(figures) == [], figures
