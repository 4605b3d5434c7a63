"""Blocking client calls on a background thread, with results for Tk.

Every method of the client core blocks for up to its timeout, so the Tk
main thread never calls one. :class:`Worker` runs submitted calls one at
a time, in order, on its own thread and puts each outcome on a queue that
the Tk main thread drains with ``after()``. The callbacks then run on the
Tk main thread, where they may touch widgets.

:meth:`Worker.ask` is the other direction: a worker thread (or a client
core thread) hands a question to the Tk main thread and waits for the
answer, for example to confirm a new server certificate.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from enctalk.client.errors import ClientError

logger = logging.getLogger(__name__)

# How often a waiting ask() checks whether the app is closing, in seconds.
ASK_POLL_SECONDS = 0.1


@dataclass
class Outcome:
    """A finished call or a question for Tk, to run on the Tk main thread."""

    callback: Callable[..., None]
    args: tuple[Any, ...]


class Worker:
    """One background thread that runs blocking calls in submission order."""

    def __init__(self, results: queue.Queue[Outcome], name: str) -> None:
        self.results = results
        self._calls: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def submit(
        self,
        call: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``call()`` on the worker; pass its result or exception to Tk."""
        self._calls.put((call, on_done, on_error))

    def ask(self, question: Callable[[Callable[[Any], None]], None]) -> Any:
        """Run ``question(answer)`` on the Tk main thread; wait for ``answer(value)``.

        Blocks the calling thread, which must not be the Tk main thread.
        Returns None when the app closes before an answer.
        """
        answered = threading.Event()
        box: list[Any] = [None]

        def answer(value: Any) -> None:
            box[0] = value
            answered.set()

        self.results.put(Outcome(question, (answer,)))
        while not answered.wait(ASK_POLL_SECONDS):
            if self._stopping.is_set():
                return None
        return box[0]

    def stop(self) -> None:
        """Stop taking calls; the call in progress finishes in the background."""
        self._stopping.set()
        self._calls.put(None)

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None or self._stopping.is_set():
                return
            self._run_one(*item)
            # The callbacks may be the last references to a dialog, whose
            # Tk variables must be deleted on the Tk main thread.
            del item

    def _run_one(
        self,
        call: Callable[[], Any],
        on_done: Callable[[Any], None] | None,
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        try:
            value = call()
        except Exception as exc:
            logger.info("background call failed: %s", type(exc).__name__)
            if not isinstance(exc, ClientError):
                logger.debug("background call failed", exc_info=True)
            if on_error is not None:
                self.results.put(Outcome(on_error, (exc,)))
            return
        if on_done is not None:
            self.results.put(Outcome(on_done, (value,)))
