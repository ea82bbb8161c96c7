"""The seam under the store: one way to run SQL on either engine, the embedded SQLite file
(the default) or a PostgreSQL server (several instances sharing one database).

Row code writes each statement once, in the dialect both engines accept: `?` placeholders,
`ON CONFLICT … DO NOTHING / DO UPDATE`, `coalesce(sum(…), 0)`, `CASE WHEN` for conditional
counts. The PostgreSQL engine numbers the placeholders (`$1`, `$2`, …) and asks for the new
row's id with `RETURNING id` where SQLite reports `lastrowid`. Several statements that must
land together run in `async with engine.transaction() as tx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.database import SQLiteThread

Row = tuple[Any, ...]


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

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...

    async def close(self) -> None: ...


class SQLiteEngine:
    """The store's SQLite file, on its one database thread. A transaction holds the thread's
    lock from BEGIN to COMMIT, so no other statement lands inside it."""

    kind = "sqlite"

    def __init__(self, sqlite: SQLiteThread) -> None:
        self.sqlite = sqlite

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Result:
        return await self.sqlite.call(self._execute, sql, params)

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        return await self.sqlite.call(self._insert, sql, params)

    def _execute(self, sql: str, params: Sequence[object]) -> Result:
        # sqlite-utils commits a write made outside a transaction, as each call here expects.
        cursor = self.sqlite.db.execute(sql, list(params))
        rows = cursor.fetchall() if cursor.description else []
        return Result(rows, cursor.rowcount)

    def _insert(self, sql: str, params: Sequence[object]) -> int:
        return int(self.sqlite.db.execute(sql, list(params)).lastrowid or 0)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.sqlite.held() as run:
            await run(self.sqlite.db.conn.execute, "BEGIN IMMEDIATE")
            tx = _SQLiteTx(self, run)
            try:
                yield tx
                await asyncio.shield(run(self.sqlite.db.conn.execute, "COMMIT"))
            except BaseException:  # the body failed, or the COMMIT did (a full disk)
                await asyncio.shield(run(self._rollback))
                raise

    def _rollback(self) -> None:
        if self.sqlite.db.conn.in_transaction:
            self.sqlite.db.conn.execute("ROLLBACK")

    async def close(self) -> None:
        await self.sqlite.close()


class _SQLiteTx:
    def __init__(self, engine: SQLiteEngine, run: Any) -> None:
        self._engine = engine
        self._run = run

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Result:
        result: Result = await self._run(self._engine._execute, sql, params)
        return result

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        new_id: int = await self._run(self._engine._insert, sql, params)
        return new_id

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
