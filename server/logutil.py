"""Rate limiting of repeated log messages.

A flood of bad connections must not flood the log: :class:`LogLimiter`
lets through the first few messages of each kind per period and then
counts the rest, reporting the count once the period is over.
"""

from __future__ import annotations

import logging
import time

DEFAULT_LIMIT = 10
DEFAULT_PERIOD_SECONDS = 60.0


class LogLimiter:
    """Per-key message budget; not thread-safe, use from one thread."""

    def __init__(
        self,
        logger: logging.Logger,
        limit: int = DEFAULT_LIMIT,
        period: float = DEFAULT_PERIOD_SECONDS,
    ) -> None:
        self._logger = logger
        self._limit = limit
        self._period = period
        # key -> [period start, messages let through, messages suppressed]
        self._windows: dict[str, list[float]] = {}

    def allow(self, key: str) -> bool:
        """Return True if a message of kind ``key`` may be logged now."""
        now = time.monotonic()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._period:
            if window is not None:
                self._report_window(key, window)
            self._windows[key] = [now, 1, 0]
            return True
        if window[1] < self._limit:
            window[1] += 1
            return True
        window[2] += 1
        return False

    def report(self) -> None:
        """Log the counts of suppressed messages whose period has ended."""
        now = time.monotonic()
        for key, window in list(self._windows.items()):
            if now - window[0] >= self._period:
                self._report_window(key, window)
                del self._windows[key]

    def _report_window(self, key: str, window: list[float]) -> None:
        if window[2]:
            self._logger.warning(
                "suppressed %d more '%s' messages in %.0f s",
                int(window[2]),
                key,
                self._period,
            )
