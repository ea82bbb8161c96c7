"""The team's data duties end to end: export, forget and the retention purge, on a database
that a real Slack conversation filled."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import sql_on
from tests.e2e.processes import bot_env
from tests.e2e.test_slack import BOT, answered, bot_for
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.slack import FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def cli(tmp: Path, *args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp, env=bot_env(tmp, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def two_people_asked(tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic,
                           **env: str) -> None:
    anthropic.script(Reply(text="Answer for Ada."), Reply(text="Answer for Bob."))
    async with bot_for(tmp, slack, anthropic, **env):
        for user, question in (("UADA", "Ada asks about invoices"),
                               ("UBOB", "Bob asks about exports")):
            mention = ev.app_mention(f"<@{BOT}> {question}", user=user, channel="C1")
            await slack.push_event(mention)
            await answered(slack, "C1", str(mention["ts"]))


async def test_export_writes_each_conversation_as_a_json_line(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic, db_target: str
) -> None:
    db = {"SUPPORTBOT_DB": db_target}  # run, then export, on each engine
    await two_people_asked(tmp_path, slack, anthropic, **db)
    code, out, err = await cli(tmp_path, "export", "--since", "2020-01-01", **db)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["messages"][0]["text"] for r in records] == [
        "Ada asks about invoices", "Bob asks about exports"]
    assert records[0]["messages"][0]["author"] == "slack:UADA"
    assert records[0]["messages"][1] == {
        "role": "assistant", "text": "Answer for Ada.", "at": records[0]["messages"][1]["at"],
        "outcome": "answered", "model": "claude-haiku-5-5"}
    code, out, _ = await cli(tmp_path, "export", "--since", "1h", "-o", "out.jsonl", **db)
    assert code == 0 and out == ""
    written = tmp_path / "out.jsonl"
    assert len(written.read_text().splitlines()) == 2
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    code, _, err = await cli(tmp_path, "export", "-o", "out.jsonl", **db)  # never overwritten
    assert code == 1 and "cannot write out.jsonl" in err
    code, _, err = await cli(tmp_path, "export", "--since", "last week")
    assert code == 2 and "--since" in err


async def test_forget_deletes_one_persons_messages_and_reports_counts(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic, db_target: str
) -> None:
    db = {"SUPPORTBOT_DB": db_target}  # run, forget, export and stats on each engine
    await two_people_asked(tmp_path, slack, anthropic, **db)
    code, out, err = await cli(tmp_path, "forget", "--user", "slack:UADA", **db)
    assert code == 0, err
    assert "1 messages from them" in out and "1 answers to them" in out
    _, exported, _ = await cli(tmp_path, "export", **db)
    assert "Ada" not in exported and "Bob asks about exports" in exported
    code, out, _ = await cli(tmp_path, "forget", "--user", "slack:UADA", **db)  # nothing left
    assert "0 messages from them" in out
    code, _, err = await cli(tmp_path, "forget", "--user", "UADA", **db)
    assert code == 2 and "PLATFORM:ID" in err
    # Usage figures stay: stats still counts both replies.
    _, stats, _ = await cli(tmp_path, "stats", "--json", **db)
    assert json.loads(stats)["answered_by_model"] == 2


async def test_run_purges_messages_older_than_the_retention_and_keeps_the_figures(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic, db_target: str
) -> None:
    await two_people_asked(tmp_path, slack, anthropic, SUPPORTBOT_DB=db_target)
    await sql_on(db_target,  # Ada's exchange happened ten days ago
                 "UPDATE messages SET created_at = created_at - 10 * 86400"
                 " WHERE conversation_id IN (SELECT conversation_id FROM messages"
                 " WHERE author_id = 'UADA')")
    anthropic.script(Reply(text="Still here."))
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_RETENTION_DAYS="7",
                       SUPPORTBOT_DB=db_target):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = [r[0] for r in await sql_on(db_target,
                                               "SELECT text FROM messages ORDER BY id")]
            if len(left) == 2:
                break
            await asyncio.sleep(0.1)
        assert left == ["Bob asks about exports", "Answer for Bob."]
    assert await sql_on(db_target, "SELECT count(*) FROM replies") == [(2,)]


async def test_retention_keeps_the_text_of_a_thread_a_person_still_handles(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="[[HANDOFF]]"))
    env = {"SUPPORTBOT_ESCALATION_SLACK_CHANNEL": "C0ESC"}
    async with bot_for(tmp_path, slack, anthropic, **env):
        mention = ev.app_mention(f"<@{BOT}> a human please", user="UADA", channel="C1")
        await slack.push_event(mention)
        await answered(slack, "C1", str(mention["ts"]))
    db = tmp_path / "bot.db"
    with sqlite3.connect(db) as conn:  # the thread was handed over ten days ago
        conn.execute("UPDATE messages SET created_at = created_at - 10 * 86400")
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_RETENTION_DAYS="7", **env):
        await asyncio.sleep(1.0)  # the purge runs at start
    with sqlite3.connect(db) as conn:
        texts = [r[0] for r in conn.execute("SELECT text FROM messages")]
        states = [r[0] for r in conn.execute("SELECT state FROM handoffs")]
    assert "a human please" in texts and states == ["open"]
