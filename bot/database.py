"""The SQLite connection the store and the knowledge base share: one owner-only file, opened
and migrated on one worker thread, so the event loop never blocks on disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from bot.migrations import migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
OWNER_ONLY = 0o600  # the file holds customers' conversations
_SIDE_FILES = ("-wal", "-shm", "-journal")


class StoreError(Exception):
    """The database cannot be opened or used; the message names the variable (SUPPORTBOT_DB,
    or SUPPORTBOT_KB_INDEX for the docs index beside PostgreSQL) and the cause."""


class StorageUnavailable(StoreError):
    """One read or write failed for a reason outside the bot (another process holds the lock
    past the busy timeout, the disk is full or failing): that request fails, the bot goes on."""


# SQLite's primary result codes that mean "not now" rather than a fault in the bot.
_OUTSIDE = {5: "the database is locked by another process", 6: "a table is locked",
            8: "the database is read-only", 10: "a disk I/O error", 13: "the disk is full"}


def owner_only(path: Path, setting: str = "SUPPORTBOT_DB") -> None:
    """Create the database file readable by its owner only, and tighten an existing one.

    SQLite creates the -wal and -shm files with the database file's mode, so they follow.
    An existing file is never opened here: closing a descriptor of a file drops every POSIX
    lock the process holds on it, SQLite's own included (another connection of this process
    may have it open).
    """
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, OWNER_ONLY))
    except FileExistsError:
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"{setting}={path}: cannot open the database file (no permission "
                             "to read and write it)") from None
    except OSError as error:
        raise StoreError(
            f"{setting}={path}: cannot open the database file ({error.strerror})"
        ) from None
    for file in [path, *(path.with_name(path.name + suffix) for suffix in _SIDE_FILES)]:
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            file.chmod(OWNER_ONLY)
            log.warning("made %s readable by its owner only (it was %o)", file, mode)


OPEN_WAIT = 30.0  # seconds another process may take to open and migrate the same file


@contextlib.contextmanager
def opening_turn(path: Path, setting: str) -> Iterator[None]:
    """Take turns with other processes opening the same database (switching to WAL and
    migrating are not safe to do twice at once): an flock on a file of its own beside the
    database (`<name>-open`), never on the database, so it cannot meet SQLite's locks."""
    if fcntl is None:  # not on this platform: processes started together may collide
        yield
        return
    fd = os.open(path.with_name(path.name + "-open"), os.O_RDWR | os.O_CREAT, OWNER_ONLY)
    try:
        deadline, mine = time.monotonic() + OPEN_WAIT, False
        for _ in range(int(OPEN_WAIT / 0.05) + 1):  # bounded: the deadline ends it first
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                mine = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        if not mine:
            raise StoreError(f"{setting}={path}: another process has been opening this file "
                             f"for over {OPEN_WAIT:g} s")
        yield
    finally:
        os.close(fd)  # and with it the flock


class SQLiteThread:
    """One SQLite connection owned by one worker thread; `call` runs a function on it.

    Calls run one at a time, in the order they were made. The thread takes every call
    waiting when it wakes and hands all their results back to the event loop at once: under
    load (hundreds of replies writing) that is one wake-up of the loop for many calls, where
    a thread pool wakes it once per call.
    """

    def __init__(self, path: Path, setting: str = "SUPPORTBOT_DB") -> None:
        self.path = path
        self.setting = setting  # the variable that names the file, for messages
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._db: Database | None = None

    async def open(self) -> None:
        try:
            await self.call(self._open)
        except (sqlite3.Error, OSError, StoreError) as error:
            self._stop()
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{self.setting}={self.path}: cannot use the database ({error})"
                             ) from None

    def _open(self) -> None:
        owner_only(self.path, self.setting)
        with opening_turn(self.path, self.setting):
            conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
            try:
                db = Database(conn)
                db.enable_wal()
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                migrations.apply(db)
            except BaseException:
                conn.close()
                raise
        self._db = db

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("database is not open")
        return self._db

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread (calls run one at a time, in order)."""
        if self._closed:
            raise RuntimeError("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="supportbot-db",
                                            daemon=True)
            self._thread.start()
        self._calls.put(_Call(fn, args, future, loop))
        try:
            return await future
        except sqlite3.OperationalError as error:
            why = _OUTSIDE.get(getattr(error, "sqlite_errorcode", 0) & 0xFF)
            if why is None:
                raise
            raise StorageUnavailable(f"{self.setting}={self.path}: {why}") from error

    def _serve(self) -> None:
        """The thread: run the calls as they come, a batch per wake-up, until told to stop."""
        while True:  # ends at the None that _stop puts after the last call
            batch = [self._calls.get()]
            for _ in range(_BATCH - 1):
                try:
                    batch.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            done: dict[asyncio.AbstractEventLoop, list[tuple[_Call, bool, Any]]] = {}
            for call in batch:
                if call is None:
                    _hand_back(done)
                    return
                if call.future.cancelled():  # its caller gave up before it started
                    continue
                try:
                    outcome: tuple[_Call, bool, Any] = (call, True, call.fn(*call.args))
                except StopIteration as stop:  # a future cannot hold one (asyncio's rule)
                    failed = RuntimeError("a database call raised StopIteration")
                    failed.__cause__ = stop
                    outcome = (call, False, failed)
                except BaseException as error:  # handed to the caller, which raises it
                    outcome = (call, False, error)
                done.setdefault(call.loop, []).append(outcome)
            _hand_back(done)

    def _stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(None)
            thread.join(timeout=_JOIN_WAIT)

    async def close(self) -> None:
        if self._db is not None:
            await self.call(self._db.conn.close)
            self._db = None
        self._closed = True
        self._stop()


_BATCH = 256  # calls taken per wake-up at most (a few hundred writes are milliseconds)
_JOIN_WAIT = 10.0  # seconds close waits for the thread (it has nothing left to run)


@dataclass(frozen=True)
class _Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _hand_back(done: dict[asyncio.AbstractEventLoop, list[tuple[_Call, bool, Any]]]) -> None:
    """From the thread: one wake-up of each loop settles all of its calls just run."""
    for loop, outcomes in done.items():
        try:
            loop.call_soon_threadsafe(_settle, outcomes)
        except RuntimeError:  # that loop has closed: nobody waits for these any more
            pass


def _settle(outcomes: list[tuple[_Call, bool, Any]]) -> None:
    """On the loop: give each waiting caller its result or its error."""
    for call, ok, value in outcomes:
        if call.future.done():  # cancelled while it ran
            continue
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)
