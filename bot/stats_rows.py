"""The rows `supportbot stats` reads: replies with their outcome and timing, and the docs
gaps. Read-only SQL for either engine; callers get plain tuples."""

from __future__ import annotations

from bot.engine import Engine
from bot.stats import ReplyRow


class StatsRows:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def replies(self, since: float) -> list[ReplyRow]:
        """Every reply record since a time; `latest` marks the last one of each question (a
        reply a restart cut off has an earlier record of its own, whose tokens were spent)."""
        rows = (await self.engine.execute(
                "SELECT model, outcome, input_tokens, output_tokens, cache_creation_input_tokens,"
                " cache_read_input_tokens, cost_usd, first_text_ms, total_ms, first_sign_ms,"
                " id IN (SELECT max(id) FROM replies WHERE created_at >= ? GROUP BY question_id)"
                " FROM replies WHERE created_at >= ?", [since, since])).rows
        return [ReplyRow(str(r[0] or ""), str(r[1] or ""), int(r[2] or 0), int(r[3] or 0),
                         int(r[4] or 0), int(r[5] or 0), r[6], r[7], r[8], r[9], bool(r[10]))
                for r in rows]

    async def gap_questions(self, since: float) -> list[str]:
        """Questions the docs did not answer, newest first."""
        rows = (await self.engine.execute(
            "SELECT question FROM docs_gaps WHERE created_at >= ? ORDER BY id DESC", [since]
        )).rows
        return [str(r[0]) for r in rows]

    async def handovers(self, since: float) -> tuple[int, int, int, int]:
        """Handovers requested since a time: all, resolved by a person, still with a person,
        and those whose summary could not be posted."""
        row = (await self.engine.execute(
            "SELECT count(*), sum(CASE WHEN state = 'resolved' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN state = 'open' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN state = 'not_posted' THEN 1 ELSE 0 END)"
            " FROM handoffs WHERE requested_at >= ?", [since])).rows[0]
        return int(row[0]), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)

    async def resolved_by_bot(self, since: float) -> int:
        """Conversations the bot answered (by the model or from the docs) that nobody
        handed to a person."""
        row = (await self.engine.execute(
            "SELECT count(DISTINCT conversation_id) FROM replies WHERE created_at >= ?"
            " AND outcome IN ('answered', 'kb_only', 'over_budget') AND conversation_id"
            " NOT IN (SELECT conversation_id FROM handoffs WHERE requested_at >= ?)",
            [since, since])).rows[0]
        return int(row[0])
