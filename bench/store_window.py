"""Store benchmark: append one message, and load the trimmed history window, for threads of
10, 1,000 and 100,000 messages, on SQLite and on PostgreSQL in the same run. Target: window
load ≤ 5 ms at 100,000 messages on both, independent of thread length.

PostgreSQL is the server at SUPPORTBOT_BENCH_POSTGRES_URL (default 127.0.0.1:5432, database
test), in a schema of its own that is dropped afterwards. The same run times the two async
drivers on the window query itself, asyncpg (the one the store uses) and psycopg 3 when it
is installed, as the reason for that choice.

Run: python -m bench.store_window
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import median, percentile, write_result
from bot.conversation import Arrival, ConversationKey, Incoming, Platform, RecordedQuestion, Turn
from bot.models import estimate_tokens, profile
from bot.store import Store
from bot.trimming import history_window

POSTGRES_URL = os.environ.get("SUPPORTBOT_BENCH_POSTGRES_URL",
                              "postgresql://127.0.0.1:5432/test")
SIZES = (10, 1_000, 100_000)
REPEATS = 300
BUDGET = 20_000
MODEL = profile("claude-haiku-5-5")
TEXT = "How do I change the billing email on my account? " * 3


def key_for(size: int) -> ConversationKey:
    return ConversationKey(Platform.SLACK, "T1", "C1", f"thread-{size}")


def rows_for(size: int) -> list[tuple[Any, ...]]:
    key, now = key_for(size), time.time()
    tokens = estimate_tokens(TEXT, MODEL)
    return [(key.id, i + 1, "user" if (size - i) % 2 == 1 else "assistant", TEXT, tokens, "U1",
             0, now) for i in range(size)]


async def seed(store: Store, size: int) -> None:
    """Bulk-write a thread of `size` alternating messages (setup, not measured)."""
    key, now = key_for(size), time.time()
    await store.engine.execute(
        "INSERT INTO conversations (id, platform, workspace, channel, thread, created_at,"
        " updated_at) VALUES (?, 'slack', 'T1', 'C1', ?, ?, ?)", [key.id, key.thread, now, now])
    columns = ["conversation_id", "position", "role", "text", "tokens", "author_id",
               "image_count", "created_at"]
    if store.engine.kind == "sqlite":
        def write() -> None:
            with store.sqlite.db.atomic():
                store.sqlite.db.conn.executemany(
                    f"INSERT INTO messages ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows_for(size))
        await store.sqlite.call(write)
        return
    import asyncpg

    conn = await asyncpg.connect(store.engine.url)  # type: ignore[attr-defined]
    try:
        await conn.copy_records_to_table("messages", records=rows_for(size), columns=columns)
        await conn.execute("ANALYZE messages")
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_URL)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


WINDOW_SQL = ("SELECT position, role, text, tokens FROM messages WHERE conversation_id = {0}"
              " AND position <= {1} ORDER BY position DESC LIMIT 64")


async def drivers(url: str, size: int) -> dict[str, float]:
    """The window query alone, p50 ms per driver, on one connection each, in turns."""
    import asyncpg

    key = key_for(size)
    timings: dict[str, list[float]] = {"asyncpg": [], "psycopg": []}
    apg = await asyncpg.connect(url)
    pcon: Any = None
    try:
        import psycopg

        pcon = await psycopg.AsyncConnection.connect(
            url.replace("?search_path=", "?options=-csearch_path%3D"), autocommit=True,
            prepare_threshold=0)
    except ImportError:
        print("psycopg is not installed: only asyncpg is timed")
    try:
        for _ in range(REPEATS):
            started = time.perf_counter()
            await apg.fetch(WINDOW_SQL.format("$1", "$2"), key.id, size)
            timings["asyncpg"].append((time.perf_counter() - started) * 1000)
            if pcon is not None:
                started = time.perf_counter()
                cursor = await pcon.execute(WINDOW_SQL.format("%s", "%s"), (key.id, size))
                await cursor.fetchall()
                timings["psycopg"].append((time.perf_counter() - started) * 1000)
    finally:
        await apg.close()
        if pcon is not None:
            await pcon.close()
    return {name: round(median(values), 3) for name, values in timings.items() if values}


async def measure(store: Store, size: int) -> dict[str, float]:
    """Window loads on the seeded thread as it is, then appends to it."""
    key = key_for(size)
    newest = RecordedQuestion(message_id=0, position=size)
    loads: list[float] = []
    window: list[Turn] = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        turns = await store.history(key, newest, BUDGET)
        window = history_window(turns, BUDGET, MODEL)
        loads.append((time.perf_counter() - started) * 1000)
    # Whole messages up to the budget (a leading assistant turn is dropped).
    assert min(size, BUDGET // estimate_tokens(TEXT, MODEL)) - len(window) in (0, 1)
    appends: list[float] = []
    for i in range(REPEATS):
        incoming = Incoming(key, "U1", TEXT, f"bench-{size}-{i}", Arrival.FOLLOW_UP)
        started = time.perf_counter()
        question = await store.record_question(incoming, estimate_tokens(TEXT, MODEL))
        appends.append((time.perf_counter() - started) * 1000)
        assert question is not None
    return {
        "append_ms_p50": round(median(appends), 3),
        "append_ms_p95": round(percentile(appends, 95), 3),
        "window_ms_p50": round(median(loads), 3),
        "window_ms_p95": round(percentile(loads, 95), 3),
        "window_messages": len(window),
    }


async def engine_figures(store: Store) -> dict[str, dict[str, float]]:
    for size in SIZES:
        await seed(store, size)
    return {str(size): await measure(store, size) for size in SIZES}


def table(name: str, figures: dict[str, dict[str, float]]) -> None:
    print(f"{name}:\n{'messages':>9} {'append p50':>11} {'append p95':>11} {'window p50':>11} "
          f"{'window p95':>11} {'in window':>10}")
    for label, row in figures.items():
        print(f"{label:>9} {row['append_ms_p50']:>9.3f}ms {row['append_ms_p95']:>9.3f}ms "
              f"{row['window_ms_p50']:>9.3f}ms {row['window_ms_p95']:>9.3f}ms "
              f"{row['window_messages']:>10}")
    # 1,000 and 100,000 both fill the budget (same window); 10 is the whole, tiny thread.
    ratio = figures["100000"]["window_ms_p50"] / figures["1000"]["window_ms_p50"]
    print(f"  window load, 100,000 vs 1,000 messages (same window): {ratio:.2f}x (target: ~1)")


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "bench.db")
        sqlite = await engine_figures(store)
        await store.close()
        async with postgres_schema() as url:
            store = await Store.open(url, Path(folder) / "kb.db")
            postgresql = await engine_figures(store)
            await store.close()
            driver = await drivers(url, 100_000)
    table("SQLite", sqlite)
    table("PostgreSQL", postgresql)
    print("window query alone at 100,000 messages, p50: "
          + ", ".join(f"{name} {ms:.3f} ms" for name, ms in driver.items()))
    print(f"budget {BUDGET} tokens, {REPEATS} loads and appends each")
    path = write_result(
        "store_window",
        {"budget_tokens": BUDGET, "repeats": REPEATS, "sizes": sqlite,
         "postgresql": postgresql, "drivers_window_query_ms_p50": driver,
         "window_ratio_100000_vs_1000": round(
             sqlite["100000"]["window_ms_p50"] / sqlite["1000"]["window_ms_p50"], 2)},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
