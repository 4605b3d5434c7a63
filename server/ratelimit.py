"""Token buckets per client address, for requests that cost the server a lot.

Each address has a bucket of ``burst`` tokens that refills at ``rate``
tokens per second. A request takes one token, or is rejected with the
number of seconds until the next token. An address whose bucket is full
again needs no state, so those entries are dropped once the table grows
past :data:`MAX_TRACKED_ADDRESSES`; memory therefore stays bounded by the
addresses active within one refill period.

Safe to call from several worker threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

MAX_TRACKED_ADDRESSES = 10_000


class AddressBuckets:
    """A token bucket per client address, created on first use."""

    def __init__(
        self,
        burst: int,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be at least 1 and rate greater than 0")
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        # address -> (tokens, time of that count)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, address: str) -> int:
        """Take a token for ``address``; return 0, or the seconds to wait if none.

        A rejected request takes no token.
        """
        with self._lock:
            now = self._clock()
            tokens = self._tokens(address, now)
            if tokens >= 1.0:
                self._buckets[address] = (tokens - 1.0, now)
                self._prune(now)
                return 0
            self._buckets[address] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _tokens(self, address: str, now: float) -> float:
        stored = self._buckets.get(address)
        if stored is None:
            return float(self.burst)
        tokens, since = stored
        return min(float(self.burst), tokens + (now - since) * self.rate)

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= MAX_TRACKED_ADDRESSES:
            return
        full = [
            address
            for address in self._buckets
            if self._tokens(address, now) >= self.burst
        ]
        for address in full:
            del self._buckets[address]
