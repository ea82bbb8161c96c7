"""Databases for the tests that run on both engines: a SQLite file, or a PostgreSQL schema of
its own on the server at SUPPORTBOT_TEST_POSTGRES_URL (dropped afterwards).

Without a server the PostgreSQL cases are skipped with the reason shown; under CI=true a
missing server fails them instead, so CI cannot pass by skipping."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL = os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL",
                              "postgresql://127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgresql"]


def with_schema(url: str, schema: str) -> str:
    """The URL with its connections' search_path set to `schema` (asyncpg passes unknown
    query parameters to the server as settings)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"search_path={schema}") if q)
    return urlunsplit(parts._replace(query=query))


async def _admin() -> object:
    import asyncpg

    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        reason = f"no PostgreSQL at {POSTGRES_URL} ({error.__class__.__name__}: {error})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run these tests, not skip them")
        pytest.skip(reason)


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A URL whose tables live in a new schema, dropped with everything in it at the end."""
    admin = await _admin()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[attr-defined]
    try:
        yield with_schema(POSTGRES_URL, schema)
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
        await admin.close()  # type: ignore[attr-defined]


async def sql_on(target: str, sql: str) -> list[tuple[object, ...]]:
    """Run one statement on a test database from outside the bot (as an operator would), on
    either engine; its rows."""
    if "://" not in target:
        import sqlite3

        with contextlib.closing(sqlite3.connect(target)) as conn, conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    import asyncpg

    conn = await asyncpg.connect(target)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


REDIS_URL = os.environ.get("SUPPORTBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_prefix_or_skip() -> str:
    """A key prefix of its own on the test Redis; skipped (failed under CI=true) without one."""
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        reason = f"no Redis at {REDIS_URL} ({error.__class__.__name__}: {error})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run these tests, not skip them")
        pytest.skip(reason)
    finally:
        await client.aclose()
    return f"t{uuid.uuid4().hex[:12]}:"


async def drop_redis_keys(prefix: str) -> None:
    """Delete every key under `prefix` (bounded: a test writes a few hundred at most)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, min(len(keys), 1_000_000), 1000):
            await client.delete(*keys[start:start + 1000])
    finally:
        await client.aclose()
