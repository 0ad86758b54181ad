"""Quota-aware admission to a paid API with a per-account rate quota (Amazon Textract).

Every OCR invocation shares one token bucket, paced: each second is cut into ``rate`` windows of one
token, and a worker takes the token of the current window (an atomic conditional ``ADD`` in DynamoDB,
:class:`docpipe.adapters.tokens.TokenStore`) before each call. A worker that finds the window's token
taken waits for the next window, up to ``wait_seconds``; past that, :meth:`Admission.acquire` says no
and the caller hands its message back to the queue with a delay (the task's retryable ``ocr.busy``)
instead of calling and being throttled. Calls are spread evenly over the second, never ``rate`` at
once, so the quota's own bucket (refilled continuously at the same rate) always has the token: a
bucket of one-second windows let the end of one window and the start of the next burst together, and
was throttled (14 % of calls in ``bench/textract_admission.py``).

The rate is AIMD (additive increase, multiplicative decrease), shared through the same store: a
throttle that still happens (another client on the account, a quota lower than ``TextractTps``)
halves the rate (:meth:`Admission.throttled`), and it climbs back by ``increase_per_second`` tokens a
second up to ``TextractTps``, computed from the time of the last cut, so recovering costs no writes.
The rate is read at most once a second per worker (one ``GetItem``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class TokenStore(Protocol):
    def take(self, window: int, capacity: int) -> bool:
        """Take one token of ``window`` (an integer second) if fewer than ``capacity`` were taken."""
        ...

    def rate(self) -> tuple[float, float] | None:
        """The last cut of the rate: (rate, when), or ``None`` when it was never cut."""
        ...

    def cut_rate(self, rate: float, at: float) -> None:
        """Record a cut of the rate to ``rate`` at ``at``."""
        ...


@dataclass
class Admission:
    store: TokenStore
    tps: float
    wait_seconds: float = 5.0
    increase_per_second: float = 0.5
    decrease: float = 0.5
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    _rate_read: tuple[float, float] | None = None  # (when read, effective rate then)

    def rate(self) -> float:
        """The rate the workers admit now: ``tps`` cut by the last throttle and grown back since."""
        now = self.clock()
        if self._rate_read is not None and now - self._rate_read[0] < 1.0:
            return self._rate_read[1]
        cut = self.store.rate()
        rate = self.tps if cut is None else min(self.tps, cut[0] + max(0.0, now - cut[1]) * self.increase_per_second)
        self._rate_read = (now, rate)
        return rate

    def windows_per_second(self) -> int:
        return max(1, math.floor(self.rate()))

    def take(self) -> bool:
        """The token of the current window, or False when another worker took it."""
        slots = self.windows_per_second()
        return self.store.take(slots * 10**12 + math.floor(self.clock() * slots), 1)

    def acquire(self) -> bool:
        """A token, waiting for the next windows up to ``wait_seconds``; False when none came in time."""
        deadline = self.clock() + self.wait_seconds
        while True:
            if self.take():
                return True
            now = self.clock()
            slots = self.windows_per_second()
            start_of_next = (math.floor(now * slots) + 1 + 0.05 * self.jitter()) / slots
            if start_of_next > deadline:
                return False
            self.sleep(start_of_next - now)

    def throttled(self) -> None:
        """The API throttled a call all the same: cut the shared rate (multiplicative decrease)."""
        now = self.clock()
        cut = max(1.0, self.rate() * self.decrease)
        self.store.cut_rate(cut, now)
        self._rate_read = (now, cut)


def retry_after(admission: Admission) -> int:
    """Seconds a message refused admission should wait before it is received again."""
    return max(1, math.ceil(admission.wait_seconds))
