"""First come, first served slots: a function's concurrency in the local runtime."""

from __future__ import annotations

import threading
from collections import deque


class FairSemaphore:
    """A counting semaphore that hands out slots first come, first served.

    ``threading.Semaphore`` lets a thread that just released re-acquire ahead of older waiters, so
    busy pollers could starve a direct invocation (a replay, an API call) for as long as they poll.
    (The local gateway shares the HTTP API's slots among users before it asks for one:
    :class:`docpipe_local.user_share.UserShare`.)
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._lock = threading.Lock()
        self._waiters: deque[threading.Event] = deque()

    def acquire(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # handed over just as the wait timed out
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._free += 1
