"""A Surface that records what a platform would show, for responder tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot.surface import Ahead, Snapshot


@dataclass
class RecordingSurface:
    limit: int = 2000
    min_interval: float = 0.0
    events: list[tuple[str, float, Snapshot | None]] = field(default_factory=list)
    fail_updates: bool = False
    start_delay: float = 0.0
    skip_updates: int = 0  # how many partial updates to refuse, as a surface out of budget does
    attempts: int = 0
    write_delay: float = 0.0  # how long a platform write takes to come back
    sent: list[str] = field(default_factory=list)  # each write's kind as it leaves
    lost: int = 0  # writes cut off after leaving: the platform may apply them unseen

    in_flight: int = 0
    most_in_flight: int = 0  # writes of this one message under way at the same time

    async def _round_trip(self, kind: str) -> None:
        self.sent.append(kind)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.write_delay)
        except asyncio.CancelledError:
            self.lost += 1
            raise
        finally:
            self.in_flight -= 1

    def interval(self) -> float:
        return self.min_interval

    def render(self, markdown: str) -> str:
        return markdown

    def size(self, text: str) -> int:
        return len(text)

    async def start(self) -> None:
        await asyncio.sleep(self.start_delay)
        self.events.append(("start", time.monotonic(), None))

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool:
        self.attempts += 1
        if self.fail_updates:
            raise ConnectionError("platform down")
        if self.skip_updates > 0:
            self.skip_updates -= 1
            self.events.append(("skipped", time.monotonic(), snapshot))
            return False
        if ahead is not None and not await ahead():
            return True
        await self._round_trip("update")
        self.events.append(("update", time.monotonic(), snapshot))
        return True

    async def finish(self, snapshot: Snapshot) -> None:
        await self._round_trip("finish")
        self.events.append(("finish", time.monotonic(), snapshot))

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]

    @property
    def final(self) -> Snapshot:
        finals = [s for kind, _, s in self.events if kind == "finish" and s is not None]
        assert len(finals) == 1, f"expected one finish, got {self.kinds}"
        return finals[0]

    @property
    def updates(self) -> list[Snapshot]:
        return [s for kind, _, s in self.events if kind == "update" and s is not None]
