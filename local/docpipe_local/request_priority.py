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

- a lowered answer holds moto's interpreter lock, and every other request of that server (reading it off
  its socket, then answering it) waits until the lowered thread runs again, which beside busy cores can be
  tens of milliseconds: a priority inversion the server cannot undo itself, since noticing the better
  request takes the lock too. So the server publishes which threads answer lowered, and at what priority
  it runs (:class:`Board`, a small file beside its log), and every worker whose own answers are not
  lowered raises them to the emulator's before it sends its request (:func:`lend_priority`, given by
  :data:`BOARDS_ENV`): the lowered answer finishes at the emulator's priority and hands the lock over, as
  priority inheritance would, and for :data:`LENT_SECONDS` the server lowers no other. The stack's own
  process does not lend: its pollers call all the time, and lowering would then stop altogether.

The tag is an extra HTTP header, outside the SigV4 signature; any other endpoint ignores it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HEADER = "X-Docpipe-Nice"
# The emulator servers' boards a worker lends its priority to (Board): "port=path" pairs, comma-separated.
BOARDS_ENV = "DOCPIPE_EMULATOR_BOARDS"
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
# After a client raised a lowered answer (Board.lend), the server lowers no answer for this long: the
# client's request is on its way, and would find the next lowered answer holding the lock.
LENT_SECONDS = 0.02


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

    def lowered(self, thread: int, level: int) -> bool:
        """Whether ``thread`` still runs at the ``level`` it was lowered to (a client may have raised it)."""
        try:
            return os.getpriority(os.PRIO_PROCESS, thread) == level
        except OSError:
            return True

    def set(self, thread: int, nice: int | None) -> None:
        with contextlib.suppress(OSError):  # the thread ended, or the process may no longer raise it
            os.setpriority(os.PRIO_PROCESS, thread, self.emulator if nice is None else nice)


class PriorityGate:
    """At most ``slots`` holders at once; a free slot goes to the waiter with the smallest
    ``arrival + nice * seconds_per_level`` (earliest arrival among equals). With ``yielding``, a holder far
    behind runs at its own priority while no better request waits (:class:`Yielding`)."""

    def __init__(
        self,
        slots: int = SLOTS,
        seconds_per_level: float = SECONDS_PER_LEVEL,
        yielding: Yielding | None = None,
        board: Board | None = None,
    ) -> None:
        """``board``: where the threads answering at a lowered priority are published (:class:`Board`)."""
        self.slots, self.seconds_per_level, self.yielding, self.board = slots, seconds_per_level, yielding, board
        self._lock = threading.Lock()
        self._busy = 0
        self._waiting: list[tuple[float, int, threading.Event, int, int]] = []  # key, order, turn, nice, thread
        self._order = itertools.count()
        self._lowered: dict[int, int] = {}  # holders' threads running at a worker's priority: their nice
        self._lent_until = 0.0  # no answer is lowered before this (LENT_SECONDS after a client raised one)

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
        if level is None or any(w[3] < nice for w in self._waiting) or time.monotonic() < self._lent_until:
            return
        self._lowered[thread] = level
        self.yielding.set(thread, level)  # type: ignore[union-attr]
        if self.board is not None:
            self.board.publish(self._lowered)

    def _raise(self, thread: int) -> None:
        if not self.yielding.lowered(thread, self._lowered.pop(thread)):  # type: ignore[union-attr]
            self._lent_until = time.monotonic() + LENT_SECONDS  # a client raised it: its request comes
        self.yielding.set(thread, None)  # type: ignore[union-attr]
        if self.board is not None:
            self.board.publish(self._lowered)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)


class Board:
    """The threads of one emulator server that answer at a lowered priority, in a small file its clients
    map (shared memory, through the page cache), with the priority the server runs at and the priority
    from which it lowers answers.

    Layout: a sequence number (odd while the server writes), the server's nice, the nice from which it
    lowers, then :data:`SLOTS` thread ids (0: none). The server writes it under its gate's lock; a reader
    takes a copy whose sequence number was even and unchanged across it (a sequence lock), so it never
    acts on a half-written id."""

    HEAD = struct.Struct("<Iii")

    def __init__(
        self, path: Path, nice: int = 0, slots: int = SLOTS, create: bool = False, lowered_from: int = BEHIND
    ) -> None:
        """``create``: the server's side (writes ``nice``, ``lowered_from`` and no threads); else a client's,
        which only reads."""
        self.path, self.slots = path, slots
        self.threads = struct.Struct(f"<{slots}i")
        size = self.HEAD.size + self.threads.size
        if create:
            path.write_bytes(self.HEAD.pack(0, nice, lowered_from) + bytes(self.threads.size))
        with path.open("r+b" if create else "rb") as file:
            self._map = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_WRITE if create else mmap.ACCESS_READ)
        self._sequence = 0

    def publish(self, lowered: dict[int, int]) -> None:
        """The server's side: ``lowered`` maps the threads answering at a lowered priority to it."""
        threads = [*list(lowered)[: self.slots], *[0] * self.slots][: self.slots]
        self._sequence += 1
        struct.pack_into("<I", self._map, 0, self._sequence)  # odd: being written
        self.threads.pack_into(self._map, self.HEAD.size, *threads)
        self._sequence += 1
        struct.pack_into("<I", self._map, 0, self._sequence)

    def read(self) -> tuple[int, int, list[int]]:
        """The server's nice, the nice from which it lowers answers, and the threads answering lowered (none
        if the server kept writing)."""
        for _ in range(3):
            sequence, nice, lowered_from = self.HEAD.unpack_from(self._map, 0)
            threads = self.threads.unpack_from(self._map, self.HEAD.size)
            if not sequence & 1 and struct.unpack_from("<I", self._map, 0)[0] == sequence:
                return nice, lowered_from, [t for t in threads if t]
        return 0, 0, []

    def lend(self, nice: int) -> None:
        """From a thread at ``nice`` whose own answers the server does not lower: raise every thread
        answering lowered to the server's priority, since this thread's request is about to wait for them
        (see the module's note). A thread whose answers are lowered lends nothing: its request reaches the
        gate, which raises a worse holder then (:meth:`PriorityGate.acquire`)."""
        server, lowered_from, threads = self.read()
        if nice >= lowered_from:
            return
        for thread in threads:
            with contextlib.suppress(OSError):  # the thread ended, or this process may not raise it
                if os.getpriority(os.PRIO_PROCESS, thread) > server:
                    os.setpriority(os.PRIO_PROCESS, thread, server)

    def close(self) -> None:
        self._map.close()


# The boards of the emulator servers this process calls, by port (lend_priority).
_boards: dict[int, Board] = {}


def lend_priority(boards: dict[int, Path]) -> None:
    """Before each AWS request this process sends to one of these emulator servers (``boards``: their
    ports and :class:`Board` files), raise the threads that server answers at a priority worse than the
    sending thread's (:meth:`Board.lend`). A board that cannot be read is left out."""
    for port, path in boards.items():
        try:
            _boards[port] = Board(path)
        except (OSError, ValueError):
            continue
    _patch_send()


def forget_boards(ports: Iterable[int]) -> None:
    """Stop lending to these servers (they stopped)."""
    for port in ports:
        board = _boards.pop(port, None)
        if board is not None:
            board.close()


def boards_env(boards: dict[int, Path]) -> str:
    """``boards`` as :data:`BOARDS_ENV` holds them."""
    return ",".join(f"{port}={path}" for port, path in boards.items())


def _boards_from_env() -> dict[int, Path]:
    boards: dict[int, Path] = {}
    for pair in os.environ.get(BOARDS_ENV, "").split(","):
        port, _, path = pair.partition("=")
        if port.isdigit() and path:
            boards[int(port)] = Path(path)
    return boards


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
    this process, and lend that priority to the emulator servers of :data:`BOARDS_ENV` (idempotent)."""
    lend_priority(_boards_from_env())
    _patch_send().tagging = True


def _patch_send() -> Any:
    """botocore's every request from this process: tagged once :func:`tag_requests` was called, and its
    priority lent to its server's lowered answers if the server has a board (:func:`lend_priority`).
    Returns the patched send; whether it tags is its own (a test that puts botocore's back starts over)."""
    from botocore.endpoint import Endpoint

    send = Endpoint._send
    if getattr(send, "_docpipe_tagged", False):
        return send

    def tagged(self: Any, request: Any) -> Any:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        if tagged.tagging:  # type: ignore[attr-defined]
            request.headers[HEADER] = str(nice)
        if _boards:
            board = _boards.get(urlsplit(request.url).port or 0)
            if board is not None:
                board.lend(nice)
        return send(self, request)

    tagged._docpipe_tagged = True  # type: ignore[attr-defined]
    tagged.tagging = False  # type: ignore[attr-defined]
    Endpoint._send = tagged  # type: ignore[method-assign]
    return tagged
