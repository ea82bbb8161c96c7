"""Store benchmark: append one message, and load the trimmed history window, for threads of
10, 1,000 and 100,000 messages. Target: window load ≤ 5 ms, independent of thread length.

Run: python -m bench.store_window
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import median, percentile, write_result
from bot.conversation import Arrival, ConversationKey, Incoming, Platform, RecordedQuestion, Turn
from bot.models import estimate_tokens, profile
from bot.store import Store
from bot.trimming import history_window

SIZES = (10, 1_000, 100_000)
REPEATS = 300
BUDGET = 20_000
MODEL = profile("claude-haiku-5-5")
TEXT = "How do I change the billing email on my account? " * 3


def key_for(size: int) -> ConversationKey:
    return ConversationKey(Platform.SLACK, "T1", "C1", f"thread-{size}")


def seed(store: Store, size: int) -> None:
    """Bulk-write a thread of `size` alternating messages (setup, not measured)."""
    db = store.sqlite.db
    key = key_for(size)
    now = time.time()
    tokens = estimate_tokens(TEXT, MODEL)
    with db.atomic():
        db.execute(
            "INSERT INTO conversations VALUES (?, 'slack', 'T1', 'C1', ?, ?, ?)",
            [key.id, key.thread, now, now],
        )
        db.conn.executemany(
            "INSERT INTO messages (conversation_id, position, role, text, tokens, author_id,"
            " image_count, created_at) VALUES (?, ?, ?, ?, ?, 'U1', 0, ?)",
            [
                (key.id, i + 1, "user" if (size - i) % 2 == 1 else "assistant", TEXT, tokens, now)
                for i in range(size)
            ],
        )


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


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "bench.db")
        for size in SIZES:
            await store.sqlite.call(seed, store, size)
        figures = {str(size): await measure(store, size) for size in SIZES}
        await store.close()
    # 1,000 and 100,000 both fill the budget (same window); 10 is the whole, tiny thread.
    ratio = figures["100000"]["window_ms_p50"] / figures["1000"]["window_ms_p50"]
    print(f"{'messages':>9} {'append p50':>11} {'append p95':>11} {'window p50':>11} "
          f"{'window p95':>11} {'in window':>10}")
    for label, row in figures.items():
        print(f"{label:>9} {row['append_ms_p50']:>9.3f}ms {row['append_ms_p95']:>9.3f}ms "
              f"{row['window_ms_p50']:>9.3f}ms {row['window_ms_p95']:>9.3f}ms "
              f"{row['window_messages']:>10}")
    print(f"window load, 100,000 vs 1,000 messages (same window): {ratio:.2f}x (target: ~1); "
          f"budget {BUDGET} tokens, {REPEATS} loads each")
    path = write_result(
        "store_window",
        {"budget_tokens": BUDGET, "repeats": REPEATS, "sizes": figures,
         "window_ratio_100000_vs_1000": round(ratio, 2)},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
