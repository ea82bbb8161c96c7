"""`supportbot chat` as a subprocess against the local fake Anthropic server."""

import asyncio
import signal
import time
from pathlib import Path

from tests.e2e.processes import BotProcess, bot_env
from tests.e2e.processes import chat_once as ask_once
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply, message_text


def env_for(fake: FakeAnthropic, workdir: Path, **extra: str) -> dict[str, str]:
    return bot_env(workdir, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=fake.base_url,
                   **extra)


async def chat_once(fake: FakeAnthropic, workdir: Path, question: str,
                    **extra: str) -> tuple[str, str]:
    return await ask_once(workdir, env_for(fake, workdir, **extra), question)


async def test_answer_streams_into_the_terminal(tmp_path: Path) -> None:
    async with FakeAnthropic(delta_interval=0.03, default_words=60) as fake:
        bot = await BotProcess(tmp_path, env_for(fake, tmp_path)).start()
        try:
            await bot.send("How do I rotate my API key?")
            partial = await bot.read_until('Answer to "How do I rotate')
            seen_partial_at = time.monotonic()
            code, full, err = await bot.finish()  # EOF is read once the answer is done
            done_at = time.monotonic()
            assert code == 0, err
            # The first words were on screen well before the answer was complete.
            assert fake.last_text_sent() not in partial
            assert done_at - seen_partial_at > 0.3
            assert f"bot> {fake.last_text_sent()}\n\n" in full  # the answer has paragraphs
        finally:
            await bot.stop()


async def test_history_survives_a_restart(
    tmp_path: Path, anthropic: FakeAnthropic, db_target: str
) -> None:
    anthropic.script(Reply(text="Your plan is Pro."), Reply(text="It renews monthly."))
    await chat_once(anthropic, tmp_path, "What plan am I on?", SUPPORTBOT_DB=db_target)
    out, _ = await chat_once(anthropic, tmp_path, "When does it renew?",
                             SUPPORTBOT_DB=db_target)
    assert "It renews monthly." in out
    messages = anthropic.requests[-1].body["messages"]
    assert [message_text(m) for m in messages] == [
        "What plan am I on?", "Your plan is Pro.", "When does it renew?"
    ]


async def test_429_is_retried_then_answered(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    anthropic.script(Fail(429, retry_after=0.2), Reply(text="Here you go."))
    out, _ = await chat_once(anthropic, tmp_path, "hello")
    assert "Here you go." in out
    assert len(anthropic.requests) == 2


async def test_rejected_key_gives_a_clear_message(tmp_path: Path) -> None:
    async with FakeAnthropic(api_key="the-right-key") as fake:
        out, err = await chat_once(fake, tmp_path, "hello")
        assert "rejected my credentials" in out and "supportbot check" in out
        assert "test-key" not in err  # the key itself never reaches the log


async def test_mid_stream_error_leaves_a_clear_final_text(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=80, error_after_deltas=8))
    out, _ = await chat_once(anthropic, tmp_path, "hello")
    assert 'Answer to "hello"' in out
    assert "interrupted by an error at the AI service" in out


async def test_without_a_key_it_starts_and_says_what_to_set(tmp_path: Path) -> None:
    bot = await BotProcess(tmp_path, bot_env(tmp_path)).start()
    try:
        await bot.send("hello")
        code, out, err = await bot.finish()
        assert code == 0
        assert "no ANTHROPIC_API_KEY is set" in err
        assert "no ANTHROPIC_API_KEY is set" in out  # and the answer says so too
    finally:
        await bot.stop()


async def test_bad_setting_fails_at_start_naming_the_variable(tmp_path: Path) -> None:
    env = bot_env(tmp_path, SUPPORTBOT_MAX_TOKENS="lots")
    bot = await BotProcess(tmp_path, env).start()
    try:
        code, _, err = await bot.finish()
        assert code != 0
        assert 'SUPPORTBOT_MAX_TOKENS must be a positive integer, got "lots"' in err
    finally:
        await bot.stop()


async def test_sigterm_during_a_reply_exits_cleanly(tmp_path: Path) -> None:
    async with FakeAnthropic(delta_interval=0.05, default_words=400) as fake:
        bot = await BotProcess(tmp_path, env_for(fake, tmp_path)).start()
        try:
            await bot.send("long answer please")
            await bot.read_until("Answer to")
            assert bot.proc is not None
            stopped = time.monotonic()
            bot.proc.terminate()
            code, out, _ = await bot.finish()
            assert code == 0
            # The reply ends at once with a note, not after the remaining ~20 s of answer.
            assert time.monotonic() - stopped < 5
            assert "Interrupted: the bot is restarting" in out
            assert len(out) < 1500  # the full answer would be ~2,500 characters
        finally:
            await bot.stop()


async def test_check_masks_secrets_and_reaches_the_model(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    env = env_for(anthropic, tmp_path)
    env["LOG_LEVEL"] = "DEBUG"
    bot = await BotProcess(tmp_path, env, "check").start()
    try:
        code, out, err = await bot.finish()
        assert code == 0, out + err
        assert "model: reached" in out and "claude-haiku-5-5" in out
        assert "test-key" not in out + err
        assert "all checks passed" in out
    finally:
        await bot.stop()


async def test_check_fails_clearly_on_a_wrong_key(tmp_path: Path) -> None:
    async with FakeAnthropic(api_key="the-right-key") as fake:
        bot = await BotProcess(tmp_path, env_for(fake, tmp_path), "check").start()
        try:
            code, out, err = await bot.finish()
            assert code == 1
            assert "model: FAILED" in out and "HTTP 401" in out
        finally:
            await bot.stop()


async def test_kb_commands_index_and_search(tmp_path: Path, db_target: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "sso.md").write_text("# Single sign-on\n\nSSO is configured under Admin > Security.")
    env = bot_env(tmp_path, SUPPORTBOT_DB=db_target)
    for args, expected in (
        (("kb", "index", str(docs)), "1 new"),
        (("kb", "search", "configure SSO"), "Admin > Security"),
        (("kb", "list", "--documents"), "sso.md"),
        (("stats",), "docs gaps: none recorded"),
    ):
        bot = await BotProcess(tmp_path, env, *args).start()
        try:
            code, out, err = await bot.finish()
            assert code == 0, err
            assert expected in out
        finally:
            await bot.stop()


async def test_a_stop_while_the_chat_waits_for_input_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM or Ctrl-C while stdin is still open (a terminal, a pipe): the pending read of
    stdin must not abort the interpreter on its way out (exit 134, "Fatal Python error")."""
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        async with FakeAnthropic() as fake:
            bot = await BotProcess(tmp_path, env_for(fake, tmp_path), "run").start()
            try:
                await bot.send("hello")
                await bot.read_until("Answer to")
                proc = bot.proc
                assert proc is not None and proc.stderr is not None
                proc.send_signal(signal_number)
                code = await asyncio.wait_for(proc.wait(), 20)  # stdin stays open
                err = (await proc.stderr.read()).decode()
                assert code == 0, err
                assert "Fatal Python error" not in err
            finally:
                await bot.stop()
