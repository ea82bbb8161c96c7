"""A token bucket (no I/O): `rate` tokens a second, at most `burst` kept. Slack's per-channel
post pace and Discord's global request pace both count with it."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def wait(self) -> float:
        """Seconds until a token is free (0: one is now)."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def take(self) -> None:
        """Spend a token (after `wait()` said one is free)."""
        self._tokens -= 1.0
