"""``docpipe watch [JOB…]``: follow jobs live, by push (polling only while the socket is down).

Without JOB it follows the caller's open jobs. Each change prints one line: the job, its state and
progress, each task's state and, while queued, its place in its lane. It exits when every job has ended:
0 when all are ready, 1 otherwise, 124 past ``--timeout``. ``--json`` prints each change as a JSON line.
Registered by :func:`docpipe_local.cli.parser`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from contextlib import ExitStack
from typing import Any

from docpipe_local.cli import _target, err, out
from docpipe_local.client import TERMINAL, DocpipeClient
from docpipe_local.live import JobFeed

OPEN_JOBS_READ = 100  # the open jobs followed when none are named (OpenJobsPerUser bounds them far lower)


def describe(job: dict[str, Any]) -> str:
    tasks = " ".join(f"{name}:{task.get('state')}" for name, task in (job.get("tasks") or {}).items())
    place = job.get("queue")
    queued = f"  ~{place['ahead']} ahead in {place['lane']}" if place else ""
    if place and place.get("startsInSeconds"):
        queued += f", starts in ~{place['startsInSeconds']} s"
    error = f"  {job['error']['code']}" if job.get("error") else ""
    return f"{job['jobId'][:8]} {job.get('name', '')}: {job['state']} {job.get('progress', 0)}%  {tasks}{queued}{error}"


def open_jobs(client: DocpipeClient) -> list[str]:
    found: list[str] = []
    cursor = None
    while len(found) < OPEN_JOBS_READ:
        page = client.jobs(limit=100, cursor=cursor)
        found += [job["jobId"] for job in page["jobs"] if job["state"] not in TERMINAL]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    return found[:OPEN_JOBS_READ]


def cmd_watch(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        job_ids = list(args.jobs) or open_jobs(client)
        if not job_ids:
            err.print("no open jobs to watch")
            return 0
        feed = stack.enter_context(JobFeed.open(client))
        if not feed.up.is_set():
            err.print(f"[dim]no live updates ({feed.refused or 'no push channel'}): polling[/dim]")
        lock = threading.Lock()

        def show(job: dict[str, Any]) -> None:
            with lock:
                if args.json:
                    print(json.dumps(job), flush=True)
                else:
                    out.print(describe(job), soft_wrap=True, highlight=False)

        deadline = time.monotonic() + args.timeout
        results: dict[str, dict[str, Any]] = {}
        threads = [
            threading.Thread(
                target=lambda j=job_id: results.__setitem__(
                    j, feed.wait(j, timeout=max(deadline - time.monotonic(), 0), on_update=show)
                ),
                daemon=True,
            )
            for job_id in job_ids
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if any(job["state"] not in TERMINAL for job in results.values()):
        return 124
    return 0 if all(job["state"] == "ready" for job in results.values()) else 1


def add_parser(sub: Any, target: Any) -> None:
    watch = sub.add_parser("watch", help="follow jobs live (default: your open jobs) until they end")
    watch.add_argument("jobs", nargs="*", metavar="JOB_ID")
    watch.add_argument("--timeout", type=float, default=600, help="seconds to follow before giving up (exit 124)")
    watch.add_argument("--json", action="store_true", help="print each change as a JSON line")
    target(watch)
    watch.set_defaults(func=cmd_watch)
