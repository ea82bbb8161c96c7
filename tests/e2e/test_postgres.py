"""PostgreSQL as the store, end to end: several instances start at once on one fresh
database without a migration race, and every way of getting the URL wrong is told naming
SUPPORTBOT_DB, without the password."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.databases import POSTGRES_URL, postgres_schema, with_schema
from tests.e2e.processes import bot_env


async def supportbot(tmp: Path, *args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp, env=bot_env(tmp, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode()


async def test_four_processes_starting_at_once_on_a_new_database_all_start(
    tmp_path: Path, db_target: str
) -> None:
    # One machine, one folder, nothing created yet: the database (or PostgreSQL schema) and,
    # beside PostgreSQL, the local docs index are opened and migrated by four at once.
    results = await asyncio.gather(*[
        supportbot(tmp_path, "stats", "--json", SUPPORTBOT_DB=db_target) for _ in range(4)])
    assert [code for code, _ in results] == [0] * 4, results
    if "://" not in db_target:
        return
    import asyncpg

    conn = await asyncpg.connect(db_target)
    try:
        names = [row[0] for row in await conn.fetch("SELECT name FROM _migrations")]
        tables = {row[0] for row in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    finally:
        await conn.close()
    assert len(names) == len(set(names)) and "m001_conversations" in names
    assert {"conversations", "messages", "events", "replies", "reply_journal", "handoffs",
            "feedback", "kv", "docs_gaps", "kb_drafts"} <= tables


async def test_check_names_supportbot_db_for_each_way_the_url_can_be_wrong(
    tmp_path: Path,
) -> None:
    async with postgres_schema() as good:
        code, out = await supportbot(tmp_path, "check", SUPPORTBOT_DB=good)
        assert "database: " in out and "(PostgreSQL, reached and migrated)" in out, out
    wrong = {
        "refused": "postgresql://supportbot:s3cret-pw@127.0.0.1:1/test",
        "no such role": with_schema(
            POSTGRES_URL.replace("postgresql://", "postgresql://nobody_here:s3cret-pw@", 1)
            if "@" not in POSTGRES_URL else POSTGRES_URL, "public"),
        "no such database": POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_db_here",
        "not a URL": "postgresql://host:port-is-words/db",
        "password as a parameter": "postgresql://127.0.0.1:1/test?password=s3cret-pw",
        "SQLAlchemy's form": "postgresql+asyncpg://u:s3cret-pw@127.0.0.1:5432/test",
        "no such schema": with_schema(POSTGRES_URL, "no_such_schema_here"),
        "an @ not encoded": "postgresql://bot:p@ss:s3cret-pw@127.0.0.1:5432/test",
        "an & not encoded": "postgresql://127.0.0.1:1/test?password=ab&s3cret-pw",
        "JDBC's form": "jdbc:postgresql://127.0.0.1:5432/test?password=s3cret-pw",
        "libpq keywords": "host=127.0.0.1 dbname=test password=s3cret-pw",
    }
    for what, url in wrong.items():
        code, out = await supportbot(tmp_path, "check", SUPPORTBOT_DB=url)
        assert code != 0, (what, out)
        assert "SUPPORTBOT_DB" in out, (what, out)
        assert "s3cret-pw" not in out, (what, out)
        assert "Traceback" not in out, (what, out)
    # The docs index beside PostgreSQL is named by its own variable when it is unusable.
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    async with postgres_schema() as good:
        code, out = await supportbot(tmp_path, "check", SUPPORTBOT_DB=good,
                                     SUPPORTBOT_KB_INDEX=str(tmp_path / "garbage.db"))
    assert code != 0 and "SUPPORTBOT_KB_INDEX=" in out and "Traceback" not in out, out
