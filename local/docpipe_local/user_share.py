"""The local gateway's HTTP API workers, shared fairly among users (:class:`UserShare`): the API tier's
counterpart of :mod:`docpipe_local.fairness`, which orders the queues' messages by tenant."""

from __future__ import annotations

import threading
from collections import Counter, deque


class UserShare:
    """A few workers shared fairly among users: the local gateway's HTTP API workers.

    On AWS every API request runs on compute of its own (up to the function's concurrency), so one
    user's burst of requests makes no other user's request wait. The local stack has ``slots`` workers
    on a few cores: when one frees, it goes to the user with the fewest requests running now (then the
    one whose oldest waiting request came first), and each user's requests run in the order they came.
    A user's burst so takes only the workers nobody else asks for, and a user with one request at a time
    waits for at most the next worker to free, whatever the others send. Nothing is refused or dropped.

    A quarter of the workers (``reserve``, none of fewer than four) are kept for users with no request
    running: a user already running one takes a worker only while more than ``reserve`` are free. A
    burst's requests can each take seconds on a loaded laptop, and without the reserve another user's
    request waited for one of them to end.
    """

    def __init__(self, slots: int) -> None:
        self.free = max(1, slots)
        self.reserve = self.free // 4
        self.running: Counter[str | None] = Counter()
        self.waiting: dict[str | None, deque[int]] = {}
        self._turns = 0
        self._changed = threading.Condition()

    def acquire(self, user: str | None) -> None:
        with self._changed:
            self._turns += 1
            turn = self._turns
            self.waiting.setdefault(user, deque()).append(turn)
            while not (self.free > (self.reserve if self.running[user] else 0) and self._next() == turn):
                self._changed.wait()
            queue = self.waiting[user]
            queue.popleft()
            if not queue:
                del self.waiting[user]
            self.running[user] += 1
            self.free -= 1
            if self.free > 0 and self.waiting:
                self._changed.notify_all()  # the next in line may go too

    def release(self, user: str | None) -> None:
        with self._changed:
            self.running[user] -= 1
            if not self.running[user]:
                del self.running[user]
            self.free += 1
            self._changed.notify_all()

    def _next(self) -> int:
        """The turn that takes the next free worker."""
        user = min(self.waiting, key=lambda u: (self.running[u], self.waiting[u][0]))
        return self.waiting[user][0]
