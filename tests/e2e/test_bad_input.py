"""Bad input from a user or an operator gets one clear line, never a traceback, and loses
nothing: the commands as a subprocess, and Slack's HTTP endpoint hit with junk."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.processes import bot_env
from tests.e2e.test_discord import EPHEMERAL, discord_bot, done
from tests.e2e.test_slack import SECRET, answered, bot_for, free_port, http_mode_bot
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack


async def run(workdir: Path, env: dict[str, str], *args: str, stdin: bytes = b""
              ) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=workdir, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_console_input_that_is_not_utf8_is_answered(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="It is open."))
    env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=anthropic.base_url)
    code, out, err = await run(tmp_path, env, "chat", stdin=b"caf\xe9 ok?\n")
    assert code == 0, err
    assert "bot> It is open." in out
    assert "Traceback" not in err
    assert anthropic.requests[-1].question() == "caf\ufffd ok?"


@pytest.mark.parametrize("command", [("run",), ("stats",), ("kb", "list"), ("check",)])
async def test_a_database_in_a_missing_folder_is_named_at_start(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = bot_env(tmp_path, SUPPORTBOT_DB="/nonexistent/dir/x.db")
    code, out, err = await run(tmp_path, env, *command)
    assert code != 0
    assert "SUPPORTBOT_DB" in err and "/nonexistent/dir does not exist" in err
    assert "Traceback" not in err and "all checks passed" not in out


async def test_an_unusable_database_file_is_named_by_check_and_run(tmp_path: Path) -> None:
    (tmp_path / "not-a-db.db").write_bytes(b"this is not an SQLite file" * 100)
    env = bot_env(tmp_path, SUPPORTBOT_DB=str(tmp_path / "not-a-db.db"))
    code, out, err = await run(tmp_path, env, "check")
    assert code == 1 and "database: FAILED — SUPPORTBOT_DB=" in out
    assert "some checks failed" in out
    code, out, err = await run(tmp_path, env, "run", stdin=b"hello\n")
    assert code == 1 and err.startswith("supportbot: SUPPORTBOT_DB=") and "Traceback" not in err


async def test_kb_commands_explain_themselves(tmp_path: Path) -> None:
    env = bot_env(tmp_path)
    code, out, err = await run(tmp_path, env, "kb", stdin=b"a question\n")
    assert code == 2 and "usage: supportbot kb" in err and "chatting" not in err + out
    code, _, err = await run(tmp_path, env, "kb", "index", str(tmp_path / "missing"))
    assert code == 2 and f"{tmp_path / 'missing'} does not exist" in err
    code, _, err = await run(tmp_path, env, "kb", "add", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    code, _, err = await run(tmp_path, env, "stats", "--days", "-1")
    assert code == 2 and "must be a positive number of days" in err


async def test_check_names_the_prompts_folder_and_prints_paths_as_paths(tmp_path: Path) -> None:
    prompts = tmp_path / "our-prompts"
    prompts.mkdir()
    (prompts / "system.md").write_text("You are the ACME helper.")
    env = bot_env(tmp_path, SUPPORTBOT_PROMPTS=str(prompts))
    code, out, err = await run(tmp_path, env, "check")
    assert code == 0, out + err
    assert f"prompts: {prompts} (SUPPORTBOT_PROMPTS)" in out
    assert f"db_path                  {tmp_path / 'bot.db'}\n" in out and "PosixPath" not in out


async def test_a_prompts_folder_without_system_md_fails_at_start(tmp_path: Path) -> None:
    env = bot_env(tmp_path, SUPPORTBOT_PROMPTS=str(tmp_path))
    code, _, err = await run(tmp_path, env, "chat")
    assert code != 0 and "SUPPORTBOT_PROMPTS" in err and "has no system.md" in err


async def test_slack_http_junk_is_refused_with_one_line_and_signed_events_still_work(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Still here."))
    async with FakeSlack() as slack:
        bot, url = await http_mode_bot(tmp_path, slack, anthropic)
        try:
            async with aiohttp.ClientSession() as http:
                unsigned = await http.post(url, data=b"caf\xe9=\xff\xfe")
                stamp = str(int(time.time()))
                junk = b"\xff\xfe not utf-8"
                headers = {"X-Slack-Request-Timestamp": stamp,
                           "X-Slack-Signature": ev.signature(junk, SECRET, int(stamp))}
                signed_junk = await http.post(url, data=junk, headers=headers)
                bad_stamp = await http.post(url, data=b"{}", headers={
                    "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"})
                not_ascii = await http.post(url, data=b"{}", headers={
                    "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=\u00e9"})
            mention = ev.app_mention("<@UBOT> still there?", channel="C1")
            await ev.send_signed_event(url, ev.event_callback(mention), SECRET)
            await slack.wait_for(lambda: any(
                m.text == "Still here." for m in slack.messages("C1", mention["ts"])), 20)
        finally:
            code = await bot.stop()
    log = "".join(bot.log)
    assert code == 0, log
    statuses = (unsigned.status, signed_junk.status, bad_stamp.status, not_ascii.status)
    assert statuses == (401, 400, 401, 401)
    assert "Traceback" not in log
    refusals = [line for line in bot.log if "refused a request to /slack/events" in line]
    assert len(refusals) == 4 and all(len(line) < 200 for line in refusals)


@pytest.mark.parametrize("command", ["run", "check"])
async def test_an_unreachable_discord_api_is_named(tmp_path: Path, command: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # bound once, then released: nobody listens
    env = bot_env(tmp_path, DISCORD_BOT_TOKEN="not-a-real-token",
                  DISCORD_API_URL=f"{closed}/api/v10", DISCORD_GATEWAY_URL=f"ws{closed[4:]}/gw")
    code, out, err = await run(tmp_path, env, command)
    assert code == 1
    assert f"cannot reach DISCORD_API_URL={closed}/api/v10" in out + err
    assert "Traceback" not in err and "Unclosed" not in err


async def test_slack_http_refuses_huge_and_non_json_bodies_and_answers_a_replay_once(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Answered once."))
    async with FakeSlack() as slack:
        bot, url = await http_mode_bot(tmp_path, slack, anthropic)
        try:
            stamp = int(time.time())
            huge = b'{"type": "event_callback", "pad": "' + b"x" * 3_000_000 + b'"}'
            not_json = b"hello=world"
            async with aiohttp.ClientSession() as http:
                statuses = []
                for body in (huge, not_json):
                    headers = {"X-Slack-Request-Timestamp": str(stamp),
                               "X-Slack-Signature": ev.signature(body, SECRET, stamp)}
                    async with http.post(url, data=io.BytesIO(body),
                                         headers=headers) as response:
                        statuses.append(response.status)
            # A captured request sent again within Slack's five minutes: its signature is
            # valid, and the same event id is answered once.
            mention = ev.app_mention("<@UBOT> once?", channel="C1")
            event = ev.event_callback(mention, event_id="Ev0REPLAY")
            first = await ev.send_signed_event(url, event, SECRET, timestamp=stamp)
            again = await ev.send_signed_event(url, event, SECRET, timestamp=stamp)
            await slack.wait_for(lambda: any(
                m.text == "Answered once." for m in slack.messages("C1", mention["ts"])), 20)
            await asyncio.sleep(0.5)  # room for a second answer, if one were coming
            replies = [m for m in slack.messages("C1", mention["ts"]) if m.user == "UBOT"]
        finally:
            code = await bot.stop()
    log = "".join(bot.log)
    assert code == 0, log
    assert statuses[0] == 413 and 400 <= statuses[1] < 500
    assert (first.status, again.status) == (200, 200) and len(replies) == 1
    assert len(anthropic.requests) == 1
    assert "Traceback" not in log and "body over 1048576 bytes" in log


async def test_an_unknown_discord_command_or_missing_option_gets_a_short_reply(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as fake, FakeAnthropic() as model, \
            discord_bot(tmp_path, fake, model):
        # A command the bot no longer has (Discord's list is stale), and /ask without its
        # required option (a hand-edited command): each must be answered, not left to
        # Discord's "The application did not respond".
        unknown = await fake.dispatch_slash("faq", {"topic": "billing"})
        missing = await fake.dispatch_slash("ask", {})
        await fake.wait_for(lambda: all(fake.interaction_callback(i.id) is not None
                                        for i in (unknown, missing)), 5)
        answered = await fake.dispatch_slash("ask", {"question": "still there?"})
        await fake.wait_for(lambda: done(fake.interaction_original(answered.id)), 15)
    for interaction in (unknown, missing):
        callback = fake.interaction_callback(interaction.id)
        assert callback is not None and callback[0] == 4 and callback[1] < 3.0
        reply = fake.interaction_original(interaction.id)
        assert reply is not None and reply.flags & EPHEMERAL and "/ask" in reply.content
    log = (tmp_path / "bot.log").read_text()
    assert "/faq is not a command this bot has" in log and "ERROR" not in log
    assert len(model.requests) == 1


async def test_a_database_locked_by_another_process_gets_an_honest_reply_and_no_half_write(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Back to normal."))
    async with FakeSlack() as slack, bot_for(tmp_path, slack, anthropic):
        # Another process (a backup, a person with the sqlite3 shell) holds the write lock
        # past the bot's 10 s busy timeout.
        other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            locked = ev.app_mention("<@UBOT> are you there?", channel="C1", user="U1")
            await slack.push_event(locked)
            await slack.wait_for(lambda: any(
                "couldn't take your question" in m.text
                for m in slack.messages("C1", locked["ts"])), 20)
        finally:
            other.execute("ROLLBACK")
            other.close()
        later = ev.app_mention("<@UBOT> and now?", channel="C1", user="U2")
        await slack.push_event(later)
        assert await answered(slack, "C1", later["ts"]) == "Back to normal."
    assert len(anthropic.requests) == 1  # the question it could not record never reached it
    rows = sqlite3.connect(tmp_path / "bot.db").execute(
        "SELECT text FROM messages WHERE role = 'user'").fetchall()
    assert [r[0] for r in rows] == ["and now?"]  # nothing half-written for the first one


async def test_an_attachment_is_judged_by_its_bytes_not_its_name(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    async with FakeSlack() as slack:
        liar = slack.add_file("error.png", "image/png", b"Traceback: this is a text file")
        mislabelled = slack.add_file("photo.png", "image/png", jpeg)
        async with bot_for(tmp_path, slack, anthropic):
            event = ev.message("what do these show?", channel="D1", subtype="file_share",
                               files=[liar, mislabelled])
            await slack.push_event(event)
            await answered(slack, "D1", event["ts"])
    # One request, accepted: the text file never reached the API as an image (the real API
    # refuses the whole request for one bad image), the JPEG went as what it is.
    [request] = anthropic.requests
    content = request.body["messages"][-1]["content"]
    images = [block["source"] for block in content if block["type"] == "image"]
    assert [i["media_type"] for i in images] == ["image/jpeg"]
    assert "error.png was attached but is not a PNG, JPEG, GIF or WebP image" in \
        request.question()
