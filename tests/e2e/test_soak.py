"""The soak benchmark in two minutes (bench/soak.py runs it for twenty): the shipped bot on
Slack and Discord at once, mixed traffic, redeliveries, model faults, one Socket Mode refresh
and one gateway drop. Every question ends answered or honestly failed, once; nothing is left
typing; memory, event-loop lag and open files hold their targets."""

from __future__ import annotations

from pathlib import Path

from bench.soak import soak, verdict


async def test_two_minutes_of_mixed_traffic_and_faults_lose_nothing(tmp_path: Path) -> None:
    figures = await soak(2.0, tmp_path)
    # The run was what it claims: enough traffic, and each kind of fault happened.
    assert figures["questions"] >= 60
    assert figures["model_faults"] >= 3 and figures["honestly_failed"] >= 1
    assert figures["redeliveries"] >= 1
    assert min(figures["kinds"].values()) >= 1 and len(figures["kinds"]) == 6
    assert figures["loop_lag_p99_ms"] is not None  # the bot's own reading was found
    assert verdict(figures) == [], figures
