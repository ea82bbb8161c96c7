"""Each running instance's heartbeat lease in the store, and who is dead.

An instance beats every third of its lease. One that stops (a crash, `kill -9`, a lost
machine) is dead once its lease has expired — or at once, to an instance on the same host that
sees its process gone — and its unfinished replies are taken over by a live instance
(runtime.take_over_replies, through Responder.resume), each by exactly one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bot.engine import Engine, Tx


@dataclass(frozen=True)
class Instance:
    """This process, as other instances see it."""

    id: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Instance:
        name = socket.gethostname()[:100] or "localhost"
        return cls(f"{name}:{os.getpid()}:{uuid.uuid4().hex[:8]}", _process_space(name),
                   os.getpid())


def _process_space(name: str) -> str:
    """Where this process's pid means something: the host name, its boot, and its pid
    namespace. Containers that share a host name (host networking, a fixed hostname) still
    differ here, so one never takes another's pid 1 for its own."""
    parts = [name]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:36])
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)[:200]


@dataclass(frozen=True)
class Peer:
    """Another instance's row: who, where, and until when its lease holds."""

    id: str
    host: str
    pid: int
    expires_at: float


class InstanceRows:
    """The `instances` table, on either engine."""

    def __init__(self, engine: Engine, me: Instance) -> None:
        self.engine = engine
        self.me = me

    async def beat(self, lease: float) -> None:
        """Renew this instance's lease (the first beat also says when it started)."""
        now = time.time()
        await self.engine.execute(
            "INSERT INTO instances (id, host, pid, started_at, beat_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " beat_at = excluded.beat_at, expires_at = excluded.expires_at",
            [self.me.id, self.me.host, self.me.pid, now, now, now + lease])

    async def peers(self) -> list[Peer]:
        rows = (await self.engine.execute(
            "SELECT id, host, pid, expires_at FROM instances WHERE id <> ?", [self.me.id])).rows
        return [Peer(str(i), str(h), int(str(p)), float(str(e))) for i, h, p, e in rows]

    async def live_peers(self) -> list[Peer]:
        """Other instances whose lease holds and whose process is not known to be gone."""
        now = time.time()
        return [p for p in await self.peers() if not self.is_dead(p, now)]

    def is_dead(self, peer: Peer, now: float) -> bool:
        if peer.expires_at < now:
            return True
        # On this host a process that is gone is dead now: no need to wait out its lease
        # (a restarted container is pid 1 again, so the same pid is another process).
        return peer.host == self.me.host and (peer.pid == self.me.pid or not _running(peer.pid))

    async def dead_check(self) -> DeadCheck:
        """A snapshot to judge replies' owners by: dead, unknown (no row) or legacy ('')."""
        return DeadCheck(frozenset(p.id for p in await self.live_peers()), self.me.id)

    async def leave(self) -> None:
        """A clean stop: this instance's row goes, so its leftovers are taken over at once."""
        await self.engine.execute("DELETE FROM instances WHERE id = ?", [self.me.id])

    async def forget_expired(self, older_than: float = 86_400.0) -> None:
        """Rows of instances gone for a day are of no more use."""
        async def body(tx: Tx) -> None:
            await tx.execute("DELETE FROM instances WHERE expires_at < ?",
                             [time.time() - older_than])

        await self.engine.run(body)


@dataclass(frozen=True)
class DeadCheck:
    """Which owners of unfinished replies are dead: every one but the live and this one."""

    live: frozenset[str]
    me: str

    def __call__(self, owner: str) -> bool:
        return owner != self.me and owner not in self.live


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True

