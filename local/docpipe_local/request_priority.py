"""The embedded emulator serves the workers' AWS calls in the order of their CPU priority.

On AWS, DynamoDB, S3 and SQS have capacity of their own: a busy tenant's calls do not delay a quiet
tenant's. The embedded emulator is one Python process per service group, and under moto's global
interpreter lock every request it is answering slows every other: with forty workers calling at once, a
GetItem that costs 2 ms of CPU took 35 ms, in turn with a busy tenant's backlog (the tenants bench). The
local stack already runs each invocation at a CPU priority (its lane, and a heavy tenant's further
behind, see ``docpipe_local.stack``); the emulator now honours the same priority:

- a worker tags each AWS request with its CPU priority (:data:`HEADER`, its nice; :func:`tag_requests`,
  applied in each worker process before its handler is imported);
- the emulator's server lets :data:`SLOTS` tagged request (one) run at once (:class:`PriorityGate`); the
  others wait, and the one whose ``arrival + nice x SECONDS_PER_LEVEL`` is smallest goes next. A
  request at a worse priority is handicapped, never starved: each level counts as
  :data:`SECONDS_PER_LEVEL` of waiting, so a heavy tenant's request (10 levels behind) yields to
  requests up to a tenth of a second younger, and goes once it has waited that long. (At half a
  second, a tenant whose work ran at the lower priority waited that long for nearly every one of its
  calls while others kept the emulator busy: its scans took 5 s instead of 0.5 s, so it could not
  catch up with its own backlog.)
- requests without the tag (the stack's event source pollers, the gateway, a test's or a bench's
  clients, which stand for calls AWS serves at once) are not gated;
- where the emulator runs ahead of the stack, the answer to a worker :data:`BEHIND` levels or more
  behind the stack (a heavy tenant's, the low lane's) is computed at that worker's own priority (at most
  :data:`LOWEST` levels behind the stack), and at the emulator's again as soon as a better request waits
  for the slot (:class:`Yielding`): a heavy tenant's calls no longer take the cores ahead of every other
  tenant's work.

The tag is an extra HTTP header, outside the SigV4 signature; any other endpoint ignores it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

HEADER = "X-Docpipe-Nice"
# Tagged requests answered at once. waitress has read a request whole before the application sees it,
# and a response's body is sent after the gate lets go, so a request holds its slot only while moto
# computes, under the interpreter lock that any second slot would share: with two slots, a quiet
# tenant's request waited for one of two busy tenant's requests that each ran at half speed
# (bench/emulator_priority.py).
SLOTS = 1
SECONDS_PER_LEVEL = 0.01  # the waiting that one level of CPU priority is worth
# A tagged request of a worker this many levels or more behind the stack (a heavy tenant's, or the low lane's)
# is answered at the worker's own CPU priority rather than the emulator's (Yielding).
BEHIND = 10
# A lowered answer runs at most this many levels behind the stack (Yielding.level): at 19, at its worker's
# own priority. Ten (ae349d0) cut a quiet worker's p95 beside a tenant at nice 19 on busy cores from 209 ms
# and 2 s to 35 ms (bench/emulator_priority.py --yielding), but in the tenants bench the low lane's answers
# then took the CPU level with a heavy tenant's high lane: in two of five runs its backlog ran away (A's small
# files 3.4x and 7.3x their time alone, B's p95 7.0 and 12.5 s), against none of eight at 19.
LOWEST = 19


class Yielding:
    """Which requests the emulator answers at their worker's own CPU priority, and the thread priorities
    that takes (Linux: a thread's nice is its own).

    The emulator runs ahead of the stack so that its answers never wait for the CPU: it stands for AWS's
    services, which have capacity of their own. But what it computes for a heavy tenant's worker then
    takes the laptop's cores ahead of every other tenant's worker, which on AWS would run on compute of its
    own. So the thread answering a request of a worker :data:`BEHIND` levels or more behind the stack runs at
    that worker's priority (at most :data:`LOWEST` levels behind the stack, see :meth:`level`), and goes
    back to the emulator's as soon as a request of a better priority waits for its slot
    (:class:`PriorityGate`): the better request then waits for an answer computed at the emulator's
    priority, as before."""

    def __init__(self, emulator: int, stack: int, behind: int = BEHIND, lowest: int = LOWEST) -> None:
        """``emulator``: the process's own nice; ``stack``: the nice of the stack the workers run below;
        ``lowest``: how many levels behind the stack an answer runs at most."""
        self.emulator, self.stack, self.behind, self.lowest = emulator, stack, behind, lowest

    def level(self, nice: int) -> int | None:
        """The nice to answer a request of a worker at ``nice`` with, or ``None``: the emulator's.

        At most :attr:`lowest` levels behind the stack (:data:`LOWEST`): the thread answering holds
        moto's interpreter lock, and every other answer of the emulator waits for it to run again, which
        at nice 19 beside busy cores can be long (``bench/emulator_priority.py --yielding``)."""
        return min(19, nice, self.stack + self.lowest) if nice - self.stack >= self.behind else None

    def set(self, thread: int, nice: int | None) -> None:
        with contextlib.suppress(OSError):  # the thread ended, or the process may no longer raise it
            os.setpriority(os.PRIO_PROCESS, thread, self.emulator if nice is None else nice)


class PriorityGate:
    """At most ``slots`` holders at once; a free slot goes to the waiter with the smallest
    ``arrival + nice * seconds_per_level`` (earliest arrival among equals). With ``yielding``, a holder far
    behind runs at its own priority while no better request waits (:class:`Yielding`)."""

    def __init__(
        self, slots: int = SLOTS, seconds_per_level: float = SECONDS_PER_LEVEL, yielding: Yielding | None = None
    ) -> None:
        self.slots, self.seconds_per_level, self.yielding = slots, seconds_per_level, yielding
        self._lock = threading.Lock()
        self._busy = 0
        self._waiting: list[tuple[float, int, threading.Event, int, int]] = []  # key, order, turn, nice, thread
        self._order = itertools.count()
        self._lowered: dict[int, int] = {}  # holders' threads running at a worker's priority: their nice

    def acquire(self, nice: int) -> None:
        thread = threading.get_native_id()
        with self._lock:
            if self._busy < self.slots and not self._waiting:
                self._busy += 1
                self._hold(thread, nice)
                return
            turn = threading.Event()
            key = time.monotonic() + nice * self.seconds_per_level
            heapq.heappush(self._waiting, (key, next(self._order), turn, nice, thread))
            for holder, lowered in list(self._lowered.items()):  # a better request waits: answer it sooner
                if nice < lowered:
                    self._raise(holder)
        turn.wait()  # release() hands the slot over: _busy already counts it, and its priority is set

    def release(self) -> None:
        thread = threading.get_native_id()
        with self._lock:
            if thread in self._lowered:
                self._raise(thread)
            if self._waiting:
                _, _, turn, nice, waiter = heapq.heappop(self._waiting)
                self._hold(waiter, nice)
                turn.set()
            else:
                self._busy -= 1

    def _hold(self, thread: int, nice: int) -> None:
        """``thread`` holds a slot: at its worker's priority if far behind and no better request waits."""
        level = self.yielding.level(nice) if self.yielding is not None else None
        if level is None or any(w[3] < nice for w in self._waiting):
            return
        self._lowered[thread] = level
        self.yielding.set(thread, level)  # type: ignore[union-attr]

    def _raise(self, thread: int) -> None:
        del self._lowered[thread]
        self.yielding.set(thread, None)  # type: ignore[union-attr]

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)


def gated(app: Callable[..., Iterable[bytes]], gate: PriorityGate) -> Callable[..., Iterable[bytes]]:
    """The WSGI application ``app``, its tagged requests let through ``gate`` by their priority."""
    key = "HTTP_" + HEADER.upper().replace("-", "_")

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        tag = environ.get(key)
        if tag is None:
            return app(environ, start_response)
        try:
            nice = max(-20, min(19, int(tag)))
        except ValueError:
            nice = 0
        gate.acquire(nice)
        try:
            return app(environ, start_response)
        finally:
            gate.release()

    return application


def tag_requests() -> None:
    """Add :data:`HEADER` with the calling thread's CPU priority to every request botocore sends from
    this process (idempotent)."""
    from botocore.endpoint import Endpoint

    send = Endpoint._send
    if getattr(send, "_docpipe_tagged", False):
        return

    def tagged(self: Any, request: Any) -> Any:
        request.headers[HEADER] = str(os.getpriority(os.PRIO_PROCESS, 0))
        return send(self, request)

    tagged._docpipe_tagged = True  # type: ignore[attr-defined]
    Endpoint._send = tagged  # type: ignore[method-assign]
