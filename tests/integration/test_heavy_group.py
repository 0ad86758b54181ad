"""The heavy tenants' CPU group (docpipe_local.heavy_group): made idle-class, joined, handed back, removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docpipe_local import heavy_group


@pytest.fixture
def group():
    made = heavy_group.create()
    if made is None:
        pytest.skip("this process may not make a CPU cgroup (root on Linux with the cpu controller)")
    yield made
    made.close()


def test_the_group_takes_only_idle_cpu(group) -> None:
    idle = group.folder / "cpu.idle"
    if idle.is_file():
        assert idle.read_text().strip() == "1"
    elif group.version == "v1":
        assert (group.folder / "cpu.shares").read_text().strip() == "2"
    else:
        assert (group.folder / "cpu.weight").read_text().strip() == "1"


def test_a_process_that_joins_is_in_the_group_and_closing_hands_it_back(group) -> None:
    # given a process that joins the group, as a heavy tenant's worker does once ready
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from docpipe_local import heavy_group; heavy_group.join({group.procs!r}); import time; time.sleep(30)",
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.time() + 20
        while child.pid not in group.pids() and time.time() < deadline:
            time.sleep(0.05)
        assert child.pid in group.pids()
        # when the group is closed while it still runs
        group.close()
        # then the process is back in the parent's group, still running, and the group is gone
        assert not group.folder.exists()
        assert child.poll() is None
        parent = (group.folder.parent / "cgroup.procs").read_text().split()
        assert str(child.pid) in parent
    finally:
        child.kill()
        child.wait()


def test_each_stack_gets_a_group_of_its_own_and_a_dead_stacks_empty_group_is_removed(group) -> None:
    # given an empty group left by a stack whose process has ended (a process id no process has now)
    gone = 4_000_000
    while os.path.exists(f"/proc/{gone}"):
        gone += 1
    stale = group.folder.parent / f"{heavy_group.PREFIX}{gone}-1"
    stale.mkdir()
    # when another group is made
    second = heavy_group.create()
    try:
        # then it is a new one, beside this process's first, and the dead stack's is gone
        assert second is not None and second.folder != group.folder
        assert group.folder.exists() and not stale.exists()
    finally:
        if second:
            second.close()
        if stale.exists():
            stale.rmdir()


def test_joining_nothing_or_a_group_that_is_gone_leaves_the_process_where_it_is(tmp_path) -> None:
    before = Path("/proc/self/cgroup").read_text()
    heavy_group.join(None)
    heavy_group.join(str(tmp_path / "gone" / "cgroup.procs"))
    assert Path("/proc/self/cgroup").read_text() == before
