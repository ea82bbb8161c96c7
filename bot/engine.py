"""The seam under the store: one way to run SQL on either engine, the embedded SQLite file
(the default) or a PostgreSQL server (several instances sharing one database).

Row code writes each statement once, in the dialect both engines accept: `?` placeholders,
`ON CONFLICT … DO NOTHING / DO UPDATE`, `coalesce(sum(…), 0)`, `CASE WHEN` for conditional
counts. The PostgreSQL engine numbers the placeholders (`$1`, `$2`, …) and asks for the new
row's id with `RETURNING id` where SQLite reports `lastrowid`. Statements that must land
together are a transaction body, `async def body(tx) -> T`, run by `await engine.run(body)`.

A body awaits only its statements. On SQLite that lets the whole body run on the database
thread in one step, between BEGIN and COMMIT (its awaits never suspend), so a transaction
costs one trip to the thread, as a single statement does; on PostgreSQL the body runs on one
pooled connection inside a server transaction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bot.database import SQLiteThread

Row = tuple[Any, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """What a statement gave back: its rows (for a SELECT) and how many rows it changed."""

    rows: list[Row]
    rowcount: int

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None


class Tx(Protocol):
    """Statements inside one transaction (or, from the engine itself, one statement each)."""

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Result: ...

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run an INSERT into a table with an `id` key; the new row's id."""
        ...

    async def lock(self, name: str) -> None:
        """Hold `name` until the transaction ends: another transaction that locks the same
        name waits (a check-then-write, such as a cap, stays true across instances)."""
        ...


class Engine(Protocol):
    kind: str  # "sqlite" or "postgresql"

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Result: ...

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int: ...

    async def run(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `body` as one transaction: all its statements land, or none does."""
        ...

    async def close(self) -> None: ...


class SQLiteEngine:
    """The store's SQLite file, on its one database thread."""

    kind = "sqlite"

    def __init__(self, sqlite: SQLiteThread) -> None:
        self.sqlite = sqlite

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Result:
        return await self.sqlite.call(self._execute, sql, params)

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        return await self.sqlite.call(self._insert, sql, params)

    async def run(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        return await self.sqlite.call(self._transaction, body)

    def _execute(self, sql: str, params: Sequence[object]) -> Result:
        # sqlite-utils commits a write made outside a transaction, as each call here expects.
        cursor = self.sqlite.db.execute(sql, list(params))
        rows = cursor.fetchall() if cursor.description else []
        return Result(rows, cursor.rowcount)

    def _insert(self, sql: str, params: Sequence[object]) -> int:
        return int(self.sqlite.db.execute(sql, list(params)).lastrowid or 0)

    def _transaction(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """On the database thread: BEGIN, the whole body, COMMIT (ROLLBACK if anything,
        the COMMIT included, fails)."""
        conn = self.sqlite.db.conn
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: writers take turns
        try:
            result = _run_to_end(body(_SQLiteTx(self)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def close(self) -> None:
        await self.sqlite.close()


def _run_to_end(work: Awaitable[T]) -> T:
    """Run a coroutine whose awaits never suspend (a SQLite transaction body) to its end."""
    if not isinstance(work, Coroutine):
        raise TypeError("a transaction body must be an async function")
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise RuntimeError("a transaction body may await only its own statements")


class _SQLiteTx:
    """Statements of a body running on the database thread: plain calls, nothing waits."""

    def __init__(self, engine: SQLiteEngine) -> None:
        self._engine = engine

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Result:
        return self._engine._execute(sql, params)

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._engine._insert(sql, params)

    async def lock(self, name: str) -> None:
        """Nothing to take: BEGIN IMMEDIATE holds the file's write lock for the whole
        transaction, so writers already take turns."""


_PLACEHOLDER = re.compile(r"'[^']*'|\?")


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1`, `$2`, … (text inside quotes is left alone)."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


def rowcount(status: str) -> int:
    """Rows changed, from a command tag such as "UPDATE 3" or "INSERT 0 1"."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
