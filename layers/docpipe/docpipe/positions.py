"""Where a queued job stands in its lane, and when it may start: approximate, and labelled so. Pure: the
caller's own open jobs and a lane's throughput in, a view out.

``GET /jobs/{id}``, ``GET /jobs`` and the pushed updates (:mod:`docpipe.job_views`) add to each queued job::

    "queue": {"lane": "high", "ahead": 3, "approximate": true, "startsInSeconds": 30}

What it is made of, and why. The rule of ``GET /queues`` holds here too: other users' traffic, even its
volume, is not a user's to see.

- ``ahead`` is the number of the caller's own jobs queued in the same lane before this one (by creation),
  read from the sparse ``byOwnerOpen`` index, which holds only open jobs and at most ``OpenJobsPerUser``
  of them: one bounded query, whatever the lane's load. Task messages carry their owner as their
  message group, and SQS fair queues deliver a quiet tenant's messages before a noisy tenant's
  backlog, so what keeps a user's job waiting is mostly their own jobs ahead of it.
- The lane's depth (``ApproximateNumberOfMessages`` of the job's task queues) is not used, not even as
  an upper bound: it is an exact count of everyone's waiting messages, which would tell a user when
  someone else uploads and, by probing with uploads of their own up to a boundary, how much; and under
  fair queues it overstates a quiet user's wait.
- ``startsInSeconds`` is ``(ahead + 1)`` messages at the lane's recent throughput (``NumberOfMessagesDeleted``
  of the job's task queues in its lane over the last 5 minutes), rounded up to a coarse step
  (:data:`STEPS`), and left out when there is no throughput to go by (an idle lane, no datapoints).
  The throughput is an aggregate over every user and five minutes, and the rounding keeps little
  more than its order of magnitude: a user learns roughly how busy the lane has been, as they would by
  timing their own jobs, never who or what. It assumes the lane's throughput goes to the caller's
  jobs in turn; while many tenants are busy at once each gets a share, so it is optimistic then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# The values ``startsInSeconds`` takes: an estimate is rounded up to the next one (hours beyond the last).
STEPS = (5, 10, 15, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600)


def coarse(seconds: float) -> int:
    for step in STEPS:
        if seconds <= step:
            return step
    return math.ceil(seconds / 3600) * 3600


def ahead_of(job: dict[str, Any], open_jobs: Iterable[dict[str, Any]]) -> int:
    """The owner's jobs queued in ``job``'s lane and created before it (ties broken by job id)."""
    key = (str(job["createdAt"]), str(job["jobId"]))
    return sum(
        1
        for other in open_jobs
        if other.get("state") == "queued"
        and other.get("lane") == job.get("lane")
        and (str(other.get("createdAt")), str(other.get("jobId"))) < key
    )


def queue_view(
    job: dict[str, Any], open_jobs: Iterable[dict[str, Any]], per_second: float | None
) -> dict[str, Any] | None:
    """A queued job's place in its lane; ``None`` for a job that is not queued. ``open_jobs`` are its
    owner's open jobs (``jobId``, ``lane``, ``state``, ``createdAt``), ``per_second`` the lane's throughput."""
    if job.get("state") != "queued":
        return None
    ahead = ahead_of(job, open_jobs)
    view: dict[str, Any] = {"lane": job.get("lane"), "ahead": ahead, "approximate": True}
    if per_second:
        view["startsInSeconds"] = coarse((ahead + 1) / per_second)
    return view
