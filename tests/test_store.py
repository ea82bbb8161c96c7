import asyncio
import logging
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from bot.conversation import Answer, Arrival, ConversationKey, Incoming, Platform, Usage
from bot.engine import Tx
from bot.store import Store

KEY = ConversationKey(Platform.DISCORD, "G1", "C1", "T1")


@pytest.fixture
def store(any_store: Store) -> Store:
    """Every test here that takes `store` runs on SQLite and on PostgreSQL."""
    return any_store


async def open_twice(target: str, tmp_path: Path) -> tuple[Store, Store]:
    """Two stores on one database, like two processes (or instances)."""
    db = target if "://" in target else Path(target)
    return (await Store.open(db, tmp_path / "kb1.db"), await Store.open(db, tmp_path / "kb2.db"))


def ask(text: str, event: str) -> Incoming:
    return Incoming(key=KEY, author_id="U1", text=text, event_id=event, arrival=Arrival.MENTION)


def answer(text: str) -> Answer:
    return Answer(text, "claude-haiku-5-5", "end_turn", Usage(10, 20), 0.0001)


async def test_migrates_an_empty_file_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = await Store.open(path)
    await store.close()
    store = await Store.open(path)  # second open: nothing pending, nothing broken
    await store.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("select name from sqlite_master")}
    assert {"conversations", "messages", "events", "replies", "kv", "kb_passages",
            "reply_journal", "kb_sources", "kb_vectors", "docs_gaps"} <= tables
    applied = sqlite3.connect(path).execute("select name from _sqlite_migrations").fetchall()
    assert [a[0] for a in applied] == [
        "m001_conversations", "m002_replies_and_values", "m003_knowledge", "m004_reply_journal",
        "m005_knowledge_sources", "m006_docs_gaps", "m007_caps_and_lifecycle",
        "m008_handoffs_and_feedback", "m009_handoff_links_and_drafts", "m010_first_sign",
        "m011_reply_lookups", "m012_release_notes", "m013_sections", "m014_instances",
    ]


async def test_wal_mode(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "wal.db")

    def journal_mode() -> str:
        return str(store.sqlite.db.execute("pragma journal_mode").fetchone()[0])

    assert await store.sqlite.call(journal_mode) == "wal"
    await store.close()


async def test_duplicate_event_is_refused_even_under_concurrency(
    db_target: str, tmp_path: Path
) -> None:
    first, second = await open_twice(db_target, tmp_path)
    results = await asyncio.gather(
        *[s.record_question(ask("q", "E-same"), 5) for s in (first, second) for _ in range(10)]
    )
    assert sum(r is not None for r in results) == 1
    await first.close()
    await second.close()


async def test_history_is_ordered_by_question_and_answer(store: Store) -> None:
    q1 = await store.record_question(ask("q1", "E1"), 5)
    q2 = await store.record_question(ask("q2", "E2"), 5)  # arrives before a1 is written
    assert q1 is not None and q2 is not None
    await store.record_answer(KEY, q1, answer("a1"), 5, 10.0)
    turns = await store.history(KEY, q2, 1000)
    assert [t.text for t in turns] == ["q1", "a1", "q2"]
    # A question's own history never includes later questions.
    assert [t.text for t in await store.history(KEY, q1, 1000)] == ["q1"]


async def test_history_stops_once_the_budget_is_covered(store: Store) -> None:
    last = None
    for i in range(300):
        last = await store.record_question(ask(f"q{i}", f"E{i}"), 10)
    assert last is not None
    turns = await store.history(KEY, last, 95)
    assert len(turns) == 10  # 10 x 10 tokens covers 95; nothing older is read
    assert turns[-1].text == "q299"


async def test_survives_a_restart(db_target: str, tmp_path: Path) -> None:
    store, other = await open_twice(db_target, tmp_path)
    await other.close()
    q = await store.record_question(ask("before restart", "E1"), 5)
    assert q is not None
    await store.record_answer(KEY, q, answer("kept"), 5, 1.0)
    await store.close()
    store, other = await open_twice(db_target, tmp_path)
    await other.close()
    assert await store.record_question(ask("before restart", "E1"), 5) is None
    q2 = await store.record_question(ask("after", "E2"), 5)
    assert q2 is not None
    history = [t.text for t in await store.history(KEY, q2, 1000)]
    assert history == ["before restart", "kept", "after"]
    assert await store.conversation_exists(KEY)
    await store.close()


async def test_usage_and_values(store: Store) -> None:
    q = await store.record_question(ask("q", "E1"), 5)
    assert q is not None
    await store.record_answer(KEY, q, answer("a"), 5, 1.0)
    totals = await store.usage_totals()
    assert (totals.replies, totals.input_tokens, totals.output_tokens) == (1, 10, 20)
    assert abs(totals.cost_usd - 0.0001) < 1e-12
    await store.set_value("k", "v1")
    await store.set_value("k", "v2")
    assert await store.get_value("k") == "v2"
    assert await store.get_value("missing") is None


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_database_and_its_side_files_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the common default, which would give 0644 files
    try:
        path = tmp_path / "private.db"
        store = await Store.open(path)
        await store.record_question(ask("hello", "E1"), 5)  # writes reach the WAL
        files = [path, tmp_path / "private.db-wal", tmp_path / "private.db-shm"]
        assert all(f.exists() for f in files)
        assert [mode_of(f) for f in files] == [0o600] * 3
        await store.close()
    finally:
        os.umask(old)


async def test_an_existing_readable_database_is_tightened_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        store = await Store.open(path)
        await store.close()
    assert mode_of(path) == 0o600
    assert f"made {path} readable by its owner only (it was 644)" in caplog.text


async def test_the_hourly_cap_admits_rate_questions_and_says_when_the_next_is_due(
    store: Store,
) -> None:
    admitted = [await store.record_question(ask(f"q{i}", f"R{i}"), 5, rate=3) for i in range(3)]
    assert all(q is not None and q.wait_seconds == 0 for q in admitted)
    over = await store.record_question(ask("q4", "R4"), 5, rate=3)
    assert over is not None and 3590 < over.wait_seconds <= 3600
    # Questions past the cap do not count against it: make the oldest admitted one 59m old.
    await store.engine.execute(
        "UPDATE messages SET created_at = created_at - 3540 WHERE text = 'q0'")
    again = await store.record_question(ask("q5", "R5"), 5, rate=3)
    assert again is not None and 55 < again.wait_seconds <= 60
    # Another person, and the same person on another platform, have caps of their own.
    other = Incoming(key=KEY, author_id="U2", text="mine", event_id="R6", arrival=Arrival.MENTION)
    assert (await store.record_question(other, 5, rate=3)).wait_seconds == 0  # type: ignore[union-attr]
    slack = ConversationKey(Platform.SLACK, "T1", "C1", "1.0")
    elsewhere = Incoming(key=slack, author_id="U1", text="q", event_id="R7",
                         arrival=Arrival.MENTION)
    assert (await store.record_question(elsewhere, 5, rate=3)).wait_seconds == 0  # type: ignore[union-attr]


async def test_the_hourly_cap_holds_when_questions_race(db_target: str, tmp_path: Path) -> None:
    first, second = await open_twice(db_target, tmp_path)
    # One person asking in twenty channels at once: no conversation row to queue behind.
    asked = [Incoming(ConversationKey(Platform.DISCORD, "G1", f"C{n}", f"T{n}"), "U1", "q",
                      f"E{n}", Arrival.MENTION) for n in range(20)]
    await asyncio.gather(*[s.get_value("warm") for s in (first, second) for _ in range(10)])
    results = await asyncio.gather(
        *[(first if n % 2 else second).record_question(q, 5, rate=4)
          for n, q in enumerate(asked)]
    )
    assert sum(1 for r in results if r is not None and r.wait_seconds == 0) == 4
    await first.close()
    await second.close()


async def test_a_transaction_lands_whole_or_not_at_all(store: Store) -> None:
    async def half(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value) VALUES ('first', '1')")
        raise ValueError("the second step failed")

    with pytest.raises(ValueError):
        await store.engine.run(half)
    assert await store.get_value("first") is None

    async def whole(tx: Tx) -> int:
        await tx.execute("INSERT INTO kv (key, value) VALUES ('first', '1')")
        return (await tx.execute("UPDATE kv SET value = '2' WHERE key = 'first'")).rowcount

    assert await store.engine.run(whole) == 1 and await store.get_value("first") == "2"


async def test_a_sqlite_transaction_body_may_await_only_its_statements(tmp_path: Path) -> None:
    # The whole body runs on the database thread in one step: anything that would suspend
    # it there is refused, and nothing of it is written.
    store = await Store.open(tmp_path / "one-step.db")

    async def sleepy(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')")
        await asyncio.sleep(0)  # a suspension, however short

    with pytest.raises(RuntimeError, match="only its own statements"):
        await store.engine.run(sleepy)
    assert await store.get_value("k") is None
    await store.close()


def test_postgres_failures_are_named_for_what_they_are() -> None:
    import asyncpg

    from bot.postgres import _outside

    assert "waited over" in str(_outside(TimeoutError()))  # an OSError, yet not a lost link
    assert "lost" in str(_outside(ConnectionResetError()))
    assert _outside(PermissionError("a draft file")) is None  # the bot's own problem
    assert "collided" in str(_outside(asyncpg.exceptions.DeadlockDetectedError("")))


def test_a_database_password_is_hidden_wherever_the_url_puts_it() -> None:
    from bot.config import load_settings

    url = "postgresql://bot:s3cret%40one@db:5432/support?sslmode=require&password=s3cret-two"
    settings = load_settings({"SUPPORTBOT_DB": url}, dotenv_path=None)
    assert "s3cret" not in settings.db_shown and settings.db_shown.startswith("postgresql://")
    assert {"s3cret@one", "s3cret-two"} <= set(settings.secrets())  # for the log redactor


async def test_writes_stay_visible_to_other_processes_that_come_and_go(tmp_path: Path) -> None:
    # Another process opening and closing the file (a `supportbot stats`, a backup, the
    # sqlite3 shell) must still see the bot's later writes: the bot keeps its locks on the
    # file, so that process never takes itself for the last user and removes the WAL.
    path = tmp_path / "shared.db"
    store = await Store.open(path)
    count = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "print(c.execute('SELECT count(*) FROM messages').fetchone()[0]); c.close()")

    async def seen_elsewhere() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", count, str(path), stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return int(out)

    await store.record_question(ask("first", "E1"), 5)
    assert await seen_elsewhere() == 1
    await store.record_question(ask("second", "E2"), 5)
    assert await seen_elsewhere() == 2
    await store.close()


async def test_a_second_store_on_the_same_file_in_one_process_leaves_the_first_its_locks(
    tmp_path: Path,
) -> None:
    # Opening (and closing) the same file again in this process, as `kb eval` or a test may,
    # must not drop the first connection's locks: its writes stay visible to other processes.
    path = tmp_path / "twice.db"
    first = await Store.open(path)
    second = await Store.open(path)
    await second.close()
    for n in range(2):
        await first.record_question(ask(f"q{n}", f"E{n}"), 5)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(c.execute('SELECT count(*) FROM messages').fetchone()[0]); c.close()",
            str(path), stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert int(out) == n + 1
    await first.close()
