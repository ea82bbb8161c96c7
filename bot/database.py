"""The SQLite connection the store and the knowledge base share: one owner-only file, opened
and migrated on one worker thread, so the event loop never blocks on disk."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def owner_only(path: Path, setting: str = "SUPPORTBOT_DB") -> int:
    """Create the database file readable by its owner only, and tighten an existing one; an
    open descriptor of it (for `opening_lock`), which the caller closes.

    SQLite creates the -wal and -shm files with the database file's mode, so they follow.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, OWNER_ONLY)
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
    return fd


OPEN_WAIT = 30.0  # seconds another process may take to open and migrate the same file


def opening_lock(fd: int, setting: str, path: Path) -> None:
    """Take turns with other processes opening the same file (switching to WAL and migrating
    are not safe to do twice at once). flock is apart from the byte-range locks SQLite uses,
    so it never gets in SQLite's way; `opening_done` lets the next one in."""
    if fcntl is None:  # not on this platform: processes started together may collide
        return
    deadline = time.monotonic() + OPEN_WAIT
    for _ in range(int(OPEN_WAIT / 0.05) + 1):  # bounded: the deadline ends it first
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise StoreError(f"{setting}={path}: another process has been opening this file for over "
                     f"{OPEN_WAIT:g} s")


def opening_done(fd: int) -> None:
    """Let the next process open the file (the descriptor itself stays open)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class SQLiteThread:
    """One SQLite connection owned by one worker thread; `call` runs a function on it."""

    def __init__(self, path: Path, setting: str = "SUPPORTBOT_DB") -> None:
        self.path = path
        self.setting = setting  # the variable that names the file, for messages
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supportbot-db")
        self._db: Database | None = None
        self._fd: int | None = None

    async def open(self) -> None:
        try:
            await self.call(self._open)
        except (sqlite3.Error, OSError, StoreError) as error:
            self._executor.shutdown(wait=False)
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{self.setting}={self.path}: cannot use the database ({error})"
                             ) from None

    def _open(self) -> None:
        fd = owner_only(self.path, self.setting)
        # The descriptor stays open as long as the connection: closing any descriptor of a
        # file drops every POSIX lock the process holds on it, SQLite's own included (then
        # another process could take the file for unused and remove its WAL under us).
        try:
            opening_lock(fd, self.setting, self.path)
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
            finally:
                opening_done(fd)
        except BaseException:
            os.close(fd)
            raise
        self._db, self._fd = db, fd

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("database is not open")
        return self._db

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread (calls run one at a time, in order)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as error:
            why = _OUTSIDE.get(getattr(error, "sqlite_errorcode", 0) & 0xFF)
            if why is None:
                raise
            raise StorageUnavailable(f"{self.setting}={self.path}: {why}") from error

    async def close(self) -> None:
        if self._db is not None:
            await self.call(self._db.conn.close)
            self._db = None
        if self._fd is not None:  # only once the connection is closed (see _open)
            os.close(self._fd)
            self._fd = None
        self._executor.shutdown(wait=True)
