"""CPU in proportion to MemorySize, as Lambda gives it, for the local runtime's workers (optional).

Lambda allocates CPU in proportion to a function's memory: 1,769 MB is one vCPU, less is a fraction of
one, more is up to 6 vCPUs at 10,240 MB. A laptop's worker gets a whole core whatever its MemorySize,
so a memory sweep on it would find every size equally fast. With the limit on, a worker is held to
``memory_mb / 1769`` of a core:

- by cgroup v2 where the process may create one (root on Linux with a writable unified hierarchy): a
  cgroup per worker with ``cpu.max`` set to its share, which the kernel enforces exactly, for the worker
  and every process it starts;
- else by a duty-cycle limiter, an approximation: a thread of the parent reads the worker's CPU time (and
  its children's) from ``/proc/<pid>/stat`` every ``PERIOD`` seconds and, when the worker used more than
  its share of that window, stops it (``SIGSTOP``) for as long as the excess takes at its share, then
  continues it (``SIGCONT``). Over a window of 100 ms this gives the share's throughput, not its
  smoothness: the worker runs in bursts at full speed, and I/O waits are not charged against it.

A share of a core or more is not limited: a Python worker runs one thread of CPU at a time, so the
vCPUs above one that Lambda gives from 1,769 MB do not make it faster (the machine's own cores are the
bound there). Off by default (the tests stay fast); ``DOCPIPE_CPU_SHARE=1`` in the environment of the
process that starts the stack turns it on (``bench/memory.py`` does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

ONE_VCPU_MB = 1769
MAX_VCPUS = 6
PERIOD = 0.1  # seconds: the duty-cycle limiter's window
CGROUP_ROOT = Path("/sys/fs/cgroup")


def enabled() -> bool:
    """Whether the runtime limits its workers' CPU (``DOCPIPE_CPU_SHARE`` set to 1, true or on)."""
    return os.environ.get("DOCPIPE_CPU_SHARE", "").strip().lower() in ("1", "true", "on", "yes")


MAX_MB = 10_240


def share(memory_mb: int) -> float:
    """The vCPUs Lambda gives a function of ``memory_mb``: ``memory_mb / 1769`` up to one, then in
    proportion from one at 1,769 MB to six at 10,240 MB."""
    if memory_mb <= ONE_VCPU_MB:
        return memory_mb / ONE_VCPU_MB
    return min(MAX_VCPUS, 1 + (MAX_VCPUS - 1) * (memory_mb - ONE_VCPU_MB) / (MAX_MB - ONE_VCPU_MB))


def cpu_seconds(pid: int) -> float | None:
    """CPU of a process (user + system) with that of the children it reaped, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _cgroup_v2_writable() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists() and os.access(CGROUP_ROOT, os.W_OK)


class Limit:
    """The CPU limit on one worker process and what it starts; :meth:`stop` lifts it."""

    def __init__(self, pid: int, memory_mb: int, descendants: object = None) -> None:
        self.pid, self.share = pid, share(memory_mb)
        self.mode = "none"
        self._stop = threading.Event()
        self._cgroup: Path | None = None
        self._descendants = descendants  # callable pid -> list of pids (the runtime's), for the limiter
        if self.share >= 1:
            return
        if _cgroup_v2_writable() and self._start_cgroup():
            self.mode = "cgroup"
            return
        self.mode = "duty-cycle"
        threading.Thread(target=self._limit, name=f"cpu-share-{pid}", daemon=True).start()

    def _start_cgroup(self) -> bool:
        path = CGROUP_ROOT / f"docpipe-worker-{self.pid}"
        try:
            path.mkdir(exist_ok=True)
            period = 100_000
            (path / "cpu.max").write_text(f"{max(1000, int(self.share * period))} {period}")
            (path / "cgroup.procs").write_text(str(self.pid))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return False
        self._cgroup = path
        return True

    def _pids(self) -> list[int]:
        children = self._descendants(self.pid) if callable(self._descendants) else []
        return [self.pid, *children]

    def _cpu(self, pids: list[int]) -> float | None:
        own = cpu_seconds(self.pid)
        if own is None:
            return None
        return own + sum(cpu_seconds(p) or 0.0 for p in pids[1:])

    def _signal(self, pids: list[int], sig: int) -> None:
        for p in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)

    def _limit(self) -> None:
        pids = self._pids()
        before, since = self._cpu(pids), time.monotonic()
        while not self._stop.wait(PERIOD) and before is not None:
            pids = self._pids()
            now_cpu, now = self._cpu(pids), time.monotonic()
            if now_cpu is None:
                return
            # children that exited in the window moved their CPU into the worker's reaped-children fields
            used = max(0.0, now_cpu - before)
            owed = used / self.share - (now - since)
            if owed > 0:
                self._signal(pids, signal.SIGSTOP)
                try:
                    self._stop.wait(min(owed, 10 * PERIOD / self.share))
                finally:
                    self._signal(pids, signal.SIGCONT)
            before, since = self._cpu(pids), time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                self._cgroup.rmdir()  # only once its processes are gone; a leftover empty cgroup is harmless
