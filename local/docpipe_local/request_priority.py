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
  clients, which stand for calls AWS serves at once) are not gated.

The tag is an extra HTTP header, outside the SigV4 signature; any other endpoint ignores it.
"""

from __future__ import annotations

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


class PriorityGate:
    """At most ``slots`` holders at once; a free slot goes to the waiter with the smallest
    ``arrival + nice * seconds_per_level`` (earliest arrival among equals)."""

    def __init__(self, slots: int = SLOTS, seconds_per_level: float = SECONDS_PER_LEVEL) -> None:
        self.slots, self.seconds_per_level = slots, seconds_per_level
        self._lock = threading.Lock()
        self._busy = 0
        self._waiting: list[tuple[float, int, threading.Event]] = []
        self._order = itertools.count()

    def acquire(self, nice: int) -> None:
        with self._lock:
            if self._busy < self.slots and not self._waiting:
                self._busy += 1
                return
            turn = threading.Event()
            heapq.heappush(self._waiting, (time.monotonic() + nice * self.seconds_per_level, next(self._order), turn))
        turn.wait()  # release() hands the slot over: _busy already counts it

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                heapq.heappop(self._waiting)[2].set()
            else:
                self._busy -= 1

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
