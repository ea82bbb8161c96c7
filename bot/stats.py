"""`supportbot stats`: what happened, for a support lead. The report is built from plain rows
(pure, below) and shown as tables on a terminal or as JSON for scripts."""

from __future__ import annotations

import argparse
import math
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tabulate import tabulate

from bot.models import profile
from bot.retrieval import terms

# Outcomes a reply is recorded with, and how a support lead reads them.
MODEL_ANSWERED = "answered"
FROM_DOCS = ("kb_only", "over_budget")
DONT_KNOW = "not_in_docs"
SIMILAR = 0.34  # two questions sharing this share of their words are one docs gap
GAP_GROUPS = 10

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([hdw])", re.I)  # no "m": minutes or months?
_UNIT = {"h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_since(text: str, now: float) -> float:
    """`7d`, `12h`, `30m`, `2w`, or a date (2026-11-01, UTC): the Unix time it means."""
    match = _SPAN.fullmatch(text.strip())
    if match:
        seconds = float(match.group(1)) * _UNIT[match.group(2).lower()]
        if not 0 < seconds <= 100 * 365 * 86400:
            raise ValueError(text)
        return now - seconds
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() > now:
        raise ValueError(text)  # a date in the future selects nothing
    return moment.timestamp()


def since_time(text: str) -> float:
    """An argparse type: parse_since from now, with a message that shows what works."""
    try:
        return parse_since(text, time.time())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a span such as 12h, 7d or 2w, or a past date such as 2026-11-01, got "
            f"{text!r}"
        ) from None


def nearest_rank(values: Sequence[float], pct: float) -> float | None:
    """The pct-th percentile by nearest rank (p95 is never below p50 however few values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class ReplyRow:
    model: str
    outcome: str
    input_tokens: int
    output_tokens: int
    cache_write: int
    cache_read: int
    cost_usd: float | None
    first_text_ms: float | None
    total_ms: float | None
    first_sign_ms: float | None = None
    latest: bool = True  # the question's last reply record (outcomes count only these)


@dataclass(frozen=True)
class ModelUse:
    model: str
    replies: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None when the model's price is unknown
    cache_saved_usd: float | None  # what caching saved beside sending every token uncached


@dataclass(frozen=True)
class GapGroup:
    count: int
    example: str


@dataclass(frozen=True)
class Report:
    since: float
    questions: int
    answered_by_model: int
    answered_from_docs: int
    dont_know: int
    refused: int
    failed: int
    rate_limited: int
    over_budget: int
    first_sign_ms: tuple[float | None, float | None]  # p50, p95: placeholder or typing shown
    first_words_ms: tuple[float | None, float | None]
    full_answer_ms: tuple[float | None, float | None]
    spent_today_usd: float
    daily_budget_usd: float | None
    models: tuple[ModelUse, ...]
    gaps: tuple[GapGroup, ...]
    handed_over: int = 0  # handovers asked for
    resolved_by_person: int = 0  # of those, given back after a person resolved them
    with_a_person_now: int = 0
    handover_not_posted: int = 0  # nobody could be told (no channel, or the post failed)
    resolved_by_bot: int = 0  # conversations answered and never handed over
    answer_rate: float | None = None  # answered by the model or the docs, of all questions
    helpful: int = 0  # 👍 votes
    not_helpful: int = 0  # 👎 votes

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        return data


@dataclass(frozen=True)
class People:
    """What people did around the answers: handovers and votes."""

    handed_over: int = 0
    resolved: int = 0
    open_now: int = 0
    not_posted: int = 0
    resolved_by_bot: int = 0
    helpful: int = 0
    not_helpful: int = 0
    downvoted_questions: tuple[str, ...] = ()


def build_report(
    since: float, replies: Sequence[ReplyRow], gap_questions: Sequence[str],
    spent_today: float, budget: float | None, people: People = People(),
) -> Report:
    """Every question ends in one final reply record (an answer, a refusal, a "please
    wait"…), so those count the questions; they hold no text, so the figures survive
    retention. Tokens and cost count every record, an interrupted one's too."""
    outcomes: dict[str, int] = defaultdict(int)
    final = [reply for reply in replies if reply.latest]  # one per question
    for reply in final:
        outcomes[reply.outcome] += 1
    streamed = [r for r in replies if r.outcome == MODEL_ANSWERED]
    signs = [r.first_sign_ms for r in replies if r.first_sign_ms is not None]
    first = [r.first_text_ms for r in streamed if r.first_text_ms is not None]
    full = [r.total_ms for r in streamed if r.total_ms is not None]
    questions = len(final)
    answered = outcomes[MODEL_ANSWERED] + sum(outcomes[o] for o in FROM_DOCS)
    return Report(
        since=since,
        questions=questions,
        answered_by_model=outcomes[MODEL_ANSWERED],
        answered_from_docs=sum(outcomes[o] for o in FROM_DOCS),
        dont_know=outcomes[DONT_KNOW],
        refused=outcomes["refused"],
        failed=outcomes["failed"] + outcomes["interrupted"],
        rate_limited=outcomes["rate_limited"],
        over_budget=outcomes["over_budget"],
        first_sign_ms=(nearest_rank(signs, 50), nearest_rank(signs, 95)),
        first_words_ms=(nearest_rank(first, 50), nearest_rank(first, 95)),
        full_answer_ms=(nearest_rank(full, 50), nearest_rank(full, 95)),
        spent_today_usd=round(spent_today, 6),
        daily_budget_usd=budget,
        models=tuple(_per_model(replies)),
        # The docs gaps are what they did not answer and what people found unhelpful.
        gaps=tuple(group_gaps([*gap_questions, *people.downvoted_questions])),
        handed_over=people.handed_over,
        resolved_by_person=people.resolved,
        with_a_person_now=people.open_now,
        handover_not_posted=people.not_posted,
        resolved_by_bot=people.resolved_by_bot,
        answer_rate=round(answered / questions, 4) if questions else None,
        helpful=people.helpful,
        not_helpful=people.not_helpful,
    )


def _per_model(replies: Sequence[ReplyRow]) -> list[ModelUse]:
    by_model: dict[str, list[ReplyRow]] = defaultdict(list)
    for reply in replies:
        if reply.model and (reply.input_tokens or reply.output_tokens):
            by_model[reply.model].append(reply)
    uses = []
    for model, rows in sorted(by_model.items()):
        price = profile(model).price
        known = price is not None and all(r.cost_usd is not None for r in rows)
        reads = sum(r.cache_read for r in rows)
        writes = sum(r.cache_write for r in rows)
        saved = None
        if price is not None:  # per million tokens; the long-context tier is ignored here
            saved = (reads * (price.input - price.cache_read)
                     - writes * (price.cache_write - price.input)) / 1_000_000
        uses.append(ModelUse(
            model=model, replies=len(rows),
            input_tokens=sum(r.input_tokens for r in rows),
            output_tokens=sum(r.output_tokens for r in rows),
            cache_read_tokens=reads, cache_write_tokens=writes,
            cost_usd=round(sum(r.cost_usd or 0.0 for r in rows), 6) if known else None,
            cache_saved_usd=None if saved is None else round(saved, 6),
        ))
    return uses


def group_gaps(questions: Sequence[str], most: int = GAP_GROUPS) -> list[GapGroup]:
    """Questions grouped by the words they share (each joins the first group it resembles),
    biggest groups first; each with its newest question as the example."""
    groups: list[tuple[set[str], list[str]]] = []
    for question in questions:
        words = set(terms(question))
        for group_words, members in groups:
            shared = len(words & group_words)
            if words and shared / min(len(words), len(group_words)) >= SIMILAR and shared > 1:
                members.append(question)
                group_words |= words
                break
        else:
            groups.append((words, [question]))
    ranked = sorted(groups, key=lambda g: -len(g[1]))  # stable: newest first among equals
    return [GapGroup(len(members), members[0]) for _, members in ranked[:most]]


def render(report: Report) -> str:
    """The report as a few readable tables."""
    started = datetime.fromtimestamp(report.since, UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows: list[tuple[str, str]] = [
        ("questions", str(report.questions)),
        ("answered by the model", str(report.answered_by_model)),
        ("answered from the docs only", _with_part(report.answered_from_docs,
                                                   report.over_budget, "over budget")),
        ('"I don\'t know"', str(report.dont_know)),
        ("refused", str(report.refused)),
        ("failed or interrupted", str(report.failed)),
        ("asked to wait (hourly cap)", str(report.rate_limited)),
        ("handed to a person", _handovers(report)),
        ("resolved by the bot / by a person",
         f"{report.resolved_by_bot} / {report.resolved_by_person}"),
        ("votes: helpful / not helpful", _votes(report)),
        ("answer rate", "-" if report.answer_rate is None else f"{report.answer_rate:.0%}"),
        ("first visible sign p50 / p95", _ms_pair(report.first_sign_ms)),
        ("first words p50 / p95", _ms_pair(report.first_words_ms)),
        ("full answer p50 / p95", _ms_pair(report.full_answer_ms)),
        ("spent today (UTC)", _today(report)),
    ]
    parts = [f"since {started}", tabulate(rows, tablefmt="simple_outline")]
    if report.models:
        table = [(m.model, m.replies, m.input_tokens, m.output_tokens, m.cache_read_tokens,
                  m.cache_write_tokens, _dollars(m.cost_usd), _dollars(m.cache_saved_usd))
                 for m in report.models]
        parts.append(tabulate(table, headers=("model", "replies", "input", "output",
                                              "cache reads", "cache writes", "cost",
                                              "cache saved"), tablefmt="simple_outline"))
    if report.gaps:
        gaps = [(g.count, _clip(g.example)) for g in report.gaps]
        parts.append("docs gaps: questions the docs did not answer, by similarity")
        parts.append(tabulate(gaps, headers=("asked", "example"), tablefmt="simple_outline"))
    else:
        parts.append("docs gaps: none recorded")
    return "\n".join(parts)


def _with_part(total: int, part: int, label: str) -> str:
    return f"{total} ({part} {label})" if part else str(total)


def _handovers(report: Report) -> str:
    if not report.handed_over:
        return "0"
    parts = [f"{report.resolved_by_person} resolved",
             f"{report.with_a_person_now} with a person now"]
    if report.handover_not_posted:
        parts.append(f"{report.handover_not_posted} nobody could be told")
    return f"{report.handed_over} ({', '.join(parts)})"


def _votes(report: Report) -> str:
    votes = report.helpful + report.not_helpful
    if not votes:
        return "no votes yet"
    return f"{report.helpful} / {report.not_helpful} ({report.helpful / votes:.0%} helpful)"


def _ms_pair(pair: tuple[float | None, float | None]) -> str:
    low, high = pair
    if low is None or high is None:
        return "-"
    return f"{_duration(low)} / {_duration(high)}"


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _dollars(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _today(report: Report) -> str:
    spent = f"${report.spent_today_usd:.4f}"
    if report.daily_budget_usd is None:
        return spent
    return f"{spent} of ${report.daily_budget_usd:g}"


def _clip(text: str, limit: int = 90) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
