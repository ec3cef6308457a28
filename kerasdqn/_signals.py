"""Stop ``fit`` cleanly on Ctrl-C (SIGINT) or SIGTERM, at the next step boundary."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """While active, SIGINT and SIGTERM set ``requested`` instead of killing the process.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once, for a loop that does not return.
    Outside the main thread (where Python cannot install handlers) it does nothing, and
    ``KeyboardInterrupt`` still ends ``fit`` through its own handler.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(number).name
