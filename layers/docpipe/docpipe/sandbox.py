"""Run hostile-input work (PDFium reading or rendering a PDF) in forked processes with a memory share
and a deadline, so the function itself survives.

A PDF's cost is not its size: a content stream of 1 MB can inflate to a gigabyte, 30 KB of drawing
operators parse into millions of page objects (about 20 s and 400 MB per million), a 1.5 MB soft mask
decodes to 1.6 GB when its page is rendered, and PDFium aborts the whole process on some damaged input.
A child that outgrows its share of the memory (:data:`READ_MEMORY_MB`, or on Lambda the function's
memory less what this process holds), outlives the deadline or dies is killed, and the work refused:
:class:`ArchiveUnsafe` for memory and time, :class:`FileCorrupt` for a crash. The message is thus not
retried into the dead-letter queue.

``os.fork`` with a ``multiprocessing.Pipe`` only: Lambda has no ``/dev/shm`` for ``Pool`` or ``Queue``,
and ``multiprocessing.Process`` refuses to start from a daemonic process (a worker of the local stack).
A child inherits its arguments; only its result crosses the pipe (pickled). On Linux a child is killed
by the kernel when the process that forked it dies (``PR_SET_PDEATHSIG``): a function killed for its
timeout or memory leaves no PDF reader running behind it (on Lambda the environment goes with it; on
the local stack, the worker alone would be killed).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from docpipe.errors import ArchiveUnsafe, DocpipeError, FileCorrupt, TooSlow

T = TypeVar("T")
MIB = 1024 * 1024
READ_MEMORY_MB = 1024  # the children's memory, in all, where the function's memory size is not known
LAMBDA_MEMORY_MARGIN_MB = 96  # left on Lambda for what this process allocates meanwhile
_WATCH_SECONDS = 0.02


def lambda_memory_mb() -> int:
    """The function's memory size on Lambda, 0 elsewhere."""
    return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), 0 where /proc cannot tell."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def memory_share(children: int) -> int:
    """How far (in bytes) each child may grow past what it shares with this process when forked."""
    memory_mb = lambda_memory_mb()
    left = memory_mb * MIB - rss_bytes() - LAMBDA_MEMORY_MARGIN_MB * MIB
    total = left if memory_mb else READ_MEMORY_MB * MIB
    return max(total // max(children, 1), 64 * MIB)


def run(
    target: Callable[..., T], calls: list[tuple[Any, ...]], deadline: float, what: str = "Reading the PDF"
) -> list[T]:
    """``target(*args)`` for each ``args`` of ``calls``, each in a forked process, all at once; results in order.

    Raises what a child raised (a :class:`DocpipeError`; any other exception as :class:`FileCorrupt`),
    :class:`ArchiveUnsafe` when a child outgrows its memory share, :class:`TooSlow` (an ArchiveUnsafe)
    when the deadline (``time.monotonic()``) passes, :class:`FileCorrupt` when a child dies. ``what``
    starts those messages ("Reading the PDF").
    Runs in this process where ``fork`` does not exist.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - not on Linux
        return [target(*args) for args in calls]
    share = memory_share(len(calls))
    base = rss_bytes()
    children: dict[Any, tuple[int, int]] = {}  # receiving end -> (index, pid)
    results: dict[int, T] = {}
    try:
        for index, args in enumerate(calls):
            pid, receive = _fork(target, args, what)
            children[receive] = (index, pid)
        while len(results) < len(calls):
            waiting = [conn for conn, (index, _) in children.items() if index not in results]
            for ready in mp_connection.wait(waiting, timeout=_WATCH_SECONDS):
                conn = cast(mp_connection.Connection, ready)
                try:
                    status, value = conn.recv()
                except EOFError:
                    raise FileCorrupt(f"{what} failed: its process died.") from None
                if status == "error":
                    raise cast(DocpipeError, value)
                results[children[conn][0]] = cast(T, value)
            for index, pid in children.values():
                if index not in results and base and rss_bytes(pid) - base > share:
                    raise ArchiveUnsafe(f"{what} needs more than {share // MIB} MB of memory.")
            if len(results) < len(calls) and time.monotonic() > deadline:
                raise TooSlow(f"{what} takes too long; it is stopped.")
    finally:
        for conn, (_, pid) in children.items():
            conn.close()
            _reap(pid)
    return [results[i] for i in range(len(calls))]


def _child_main(conn: Any, target: Callable[..., Any], args: tuple[Any, ...], what: str) -> None:
    try:
        conn.send(("ok", target(*args)))
    except BaseException as exc:  # reported to the parent, which raises it as its own
        error = exc if isinstance(exc, DocpipeError) else FileCorrupt(f"{what} failed ({exc}).")
        conn.send(("error", error))
    finally:
        conn.close()


def _fork(target: Callable[..., Any], args: tuple[Any, ...], what: str) -> tuple[int, Any]:
    """A child running ``target(*args)`` that sends its outcome over a pipe; ``(pid, receiving end)``."""
    receive, send = multiprocessing.Pipe(duplex=False)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, measured by its results
        status = 0
        try:
            _die_with(parent)
            receive.close()
            _child_main(send, target, args, what)
        except BaseException:
            status = 1
        finally:
            os._exit(status)  # no atexit handlers, no flushing of the parent's buffers
    send.close()
    return pid, receive


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` (its forker) dies; exit now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the parent's finally reaps it
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _reap(pid: int) -> None:
    """End a child (done, or still running) and collect its exit status."""
    try:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass
