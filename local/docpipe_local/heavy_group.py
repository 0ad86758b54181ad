"""A CPU group for heavy tenants' workers: their invocations take only the CPU nobody else wants.

On AWS a heavy tenant's invocation runs on compute of its own, so once the fair queue has delivered a
quiet tenant's message, nothing of the heavy tenant's slows it. The local stack stood in for that with
``nice`` alone (:data:`docpipe_local.stack.HEAVY_NICE`), but the kernel weighs every runnable process
on its own: a nice-10 worker weighs a ninth of a nice-0 one, and a heavy tenant's burst keeps a dozen
or more of them runnable (its high lane's presets and scans, its OCR and extraction), which together
outweigh a quiet tenant's one worker. Twelve processes computing at ``nice`` 10 made a quiet process's
100 ms of work take 1.4 times as long as beside nothing.

Here the heavy tenant's workers share one control group whose CPU is idle-class (``cpu.idle``, or the
smallest weight where the kernel lacks it): the group as a whole gets the CPU that the stack's other
processes leave, and inside it the workers still share by their ``nice``, so the heavy tenant's own
lanes keep their order (its chat photos ahead of its scans). The same twelve processes in the group
left the quiet process's time as it was alone.

Made where this process may create a cgroup with the CPU controller: root on Linux, with cgroup v1's
``cpu`` hierarchy, or cgroup v2's when this process sits in its root cgroup (a child of a cgroup that
holds processes cannot take the CPU controller in v2). Elsewhere :func:`create` answers ``None`` and
heavy tenants' work runs at the lower ``nice`` only, as before.

The stack makes the group only with ``DOCPIPE_HEAVY_GROUP=1``: in five tenants runs with it a quiet
tenant's p95 was no better than without, and the heavy tenant's backlog ran away in two (README).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "docpipe-heavy-"
_made = itertools.count(1)  # groups this process made: each stack its own


def _cpu_hierarchy() -> tuple[Path, str] | None:
    """This process's cgroup with the CPU controller, and the controller's version (``v1``/``v2``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                folder = CGROUP_ROOT / mount / path.lstrip("/")
                if (folder / "cpu.shares").is_file():
                    return folder, "v1"
    for line in lines:
        if line.startswith("0::"):
            path = line[3:].strip()
            for root in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
                controllers = root / "cgroup.controllers"
                if path == "/" and controllers.is_file() and "cpu" in controllers.read_text().split():
                    return root, "v2"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HeavyGroup:
    """One cgroup, made for this stack, that heavy tenants' workers join (:attr:`procs`)."""

    def __init__(self, folder: Path, version: str) -> None:
        self.folder, self.version = folder, version

    @property
    def procs(self) -> str:
        """The file a worker writes its process id to, to join the group."""
        return str(self.folder / "cgroup.procs")

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in (self.folder / "cgroup.procs").read_text().split()]
        return []

    def close(self) -> None:
        """Hand any process still in the group back to the parent cgroup, and remove the group."""
        parent = self.folder.parent / "cgroup.procs"
        for pid in self.pids():
            with contextlib.suppress(OSError):
                parent.write_text(str(pid))
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def create() -> HeavyGroup | None:
    """A new idle-class CPU group for this process's heavy tenants' workers, or ``None`` where the process
    may not make one. Groups left by stacks whose process has ended (a kill) are removed if empty."""
    found = _cpu_hierarchy()
    if found is None:
        return None
    parent, version = found
    with contextlib.suppress(OSError):
        for stale in parent.glob(PREFIX + "*"):
            owner = stale.name[len(PREFIX) :].split("-")[0]
            if owner.isdigit() and not _alive(int(owner)):
                with contextlib.suppress(OSError):
                    stale.rmdir()
    folder = parent / f"{PREFIX}{os.getpid()}-{next(_made)}"
    try:
        folder.mkdir()
    except OSError:
        return None
    try:
        if (folder / "cpu.idle").is_file():
            (folder / "cpu.idle").write_text("1")
        elif version == "v1":
            (folder / "cpu.shares").write_text("2")
        else:
            (folder / "cpu.weight").write_text("1")
    except OSError:
        with contextlib.suppress(OSError):
            folder.rmdir()
        return None
    return HeavyGroup(folder, version)


def join(procs: str | None) -> None:
    """Move the calling process into the group whose ``cgroup.procs`` is ``procs`` (no-op for ``None``;
    a group gone or refused leaves the process where it is)."""
    if procs:
        with contextlib.suppress(OSError):
            Path(procs).write_text(str(os.getpid()))
