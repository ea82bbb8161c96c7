"""The stats report: spans, percentiles, outcomes, per-model cost and cache savings, gaps."""

import json

import pytest

from bot.stats import ReplyRow, build_report, group_gaps, nearest_rank, parse_since, render

NOW = 1_800_000_000.0  # January 2027


def reply(outcome: str = "answered", model: str = "claude-haiku-5-5", first: float = 800,
          total: float = 3000, cost: float | None = 0.001, read: int = 0,
          write: int = 0, latest: bool = True) -> ReplyRow:
    return ReplyRow(model, outcome, 1000, 200, write, read, cost, first, total, first / 10,
                    latest)


def test_since_takes_spans_and_dates() -> None:
    assert parse_since("7d", NOW) == NOW - 7 * 86400
    assert parse_since("12h", NOW) == NOW - 12 * 3600
    assert parse_since("2w", NOW) == NOW - 14 * 86400
    assert parse_since("2026-11-01", NOW) == 1_793_491_200.0  # midnight UTC
    for bad in ("yesterday", "0d", "-3d", "7", "3m", "2099-01-01"):
        with pytest.raises(ValueError):
            parse_since(bad, NOW)


def test_nearest_rank_never_puts_p95_below_p50() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 50) == 50.0
    assert nearest_rank(values, 95) == 95.0


def test_similar_questions_form_one_gap_biggest_first() -> None:
    groups = group_gaps([
        "how do I run the GitHub Action on pull requests",
        "what is the capital of France",
        "GitHub Action fails on pull requests from forks",
        "can the GitHub Action run on a schedule",
    ])
    assert [g.count for g in groups] == [3, 1]
    assert groups[0].example == "how do I run the GitHub Action on pull requests"  # newest first
    assert groups[1].example == "what is the capital of France"


def test_report_counts_outcomes_latency_cost_and_cache_savings() -> None:
    replies = [
        reply(first=500, total=2000, read=10_000, write=0),
        reply(first=900, total=4000, write=2000),
        reply("kb_only", model="", cost=None),
        reply("over_budget", model="", cost=None),
        reply("not_in_docs"),
        reply("rate_limited", model="", cost=None),
        reply("failed"),
        reply("answered", model="claude-some-future-model", cost=None),
        reply("interrupted", model="claude-some-future-model", cost=None, latest=False),
    ]
    gaps = ["export pdf reports", "export pdf reports weekly"]
    report = build_report(NOW - 86400, replies, gaps, 0.5, 2.0)
    assert (report.questions, report.answered_by_model, report.answered_from_docs) == (8, 3, 2)
    assert report.answer_rate == 0.625
    assert (report.dont_know, report.rate_limited, report.over_budget, report.failed) == (
        1, 1, 1, 1)
    assert report.first_words_ms == (800, 900)
    assert report.first_sign_ms == (80, 90)  # every reply shows its first sign
    [haiku, future] = report.models
    assert haiku.replies == 4 and haiku.cost_usd == pytest.approx(0.004)
    # 10,000 reads at $0.09/M below the input price, less 2,000 writes at $0.025/M above it.
    assert haiku.cache_saved_usd == pytest.approx(0.0009 - 0.00005)
    assert future.cost_usd is None and future.cache_saved_usd is None
    assert future.replies == 2  # the interrupted record's tokens were spent too
    shown = render(report)
    assert "$0.5000 of $2" in shown and "unknown" in shown and "export pdf reports" in shown
    data = json.loads(json.dumps(report.as_json()))
    assert data["gaps"] == [{"count": 2, "example": "export pdf reports"}]
    assert data["since"].startswith("2027-")
