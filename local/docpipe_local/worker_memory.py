"""A worker's memory as Lambda counts it, read from ``/proc``: its peak, its resident set, and what the
processes it started hold of their own (:mod:`docpipe_local.runtime`)."""

from __future__ import annotations

import contextlib
import os


def reset_peak() -> None:
    """Reset this process's peak resident set (VmHWM) to its current one, where the kernel lets it."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_mb() -> float:
    """This process's peak resident set since :func:`reset_peak` (since its start where it could not reset)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, IndexError, ValueError):
        return 0.0


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux: ``/proc/<pid>/task/<tid>/children``)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    children = [int(child) for child in fh.read().split()]
            except (OSError, ValueError):
                continue
            found += children
            queue += children
    return found


def private_mb(pid: int) -> float:
    """Memory only this process holds (``Private_*`` of ``/proc/<pid>/smaps_rollup``), not the pages it
    still shares with the process it was forked from."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            return sum(int(line.split()[1]) for line in fh if line.startswith("Private_")) / 1024
    except (OSError, IndexError, ValueError):
        return rss_mb(pid)


def memory_mb(pid: int) -> float:
    """The memory of a worker's environment, as Lambda counts it for the whole sandbox: the worker's
    resident set, plus what each process it started (a PDF reader forked by docpipe.sandbox) holds of
    its own; pages a child still shares with the worker after ``fork`` count once."""
    return rss_mb(pid) + sum(private_mb(child) for child in descendants(pid))
