"""A job as its owner sees it: the one place that builds it, for ``GET /jobs/{id}``, ``GET /jobs`` and the
pushed updates (the notifier), so a pushed job is exactly what the API answers.

A job's visible state comes from three places: the job record (state, history, error), its file's record
(each task's state, attempts and variants: work is per content) and its owner's open jobs (its place in
its lane, :mod:`docpipe.positions`). :class:`JobViews` reads the three and hands them to
:func:`docpipe.jobs.public_view`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from docpipe import jobs as job_states
from docpipe import positions
from docpipe.adapters.cloudwatch import QueueThroughput
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.jobs import TERMINAL, public_view
from docpipe.settlement import settle_jobs

# How long one container keeps a lane's throughput: CloudWatch has a datapoint a minute, and GetMetricData
# is paid per metric read, while a page may poll a queued job every second.
THROUGHPUT_TTL_SECONDS = 60


class LaneThroughput:
    """Messages a second the queues' consumers deleted over the last 5 minutes, cached per container."""

    def __init__(self, reader: Callable[[list[str]], float | None] | None = None) -> None:
        self.cache: dict[tuple[str, ...], tuple[float, float | None]] = {}
        self._reader = reader

    def __call__(self, queue_names: tuple[str, ...]) -> float | None:
        now = time.monotonic()
        cached = self.cache.get(queue_names)
        if cached is None or cached[0] < now:
            reader = self._reader or QueueThroughput().per_second
            cached = (now + THROUGHPUT_TTL_SECONDS, reader(list(queue_names)))
            self.cache[queue_names] = cached
        return cached[1]


class JobViews:
    """Builds jobs' public views. ``ttl_at`` (when a job that ends now expires) lets a read settle a job whose
    tasks have all ended (a final attempt that was killed has no worker left to say so); without it the
    views are read-only, as the notifier's are: it shows what was written and never writes."""

    def __init__(
        self,
        jobs_repo: JobsRepository,
        files_repo: FilesRepository,
        task_queues: dict[str, dict[str, str]],
        throughput: Callable[[tuple[str, ...]], float | None],
        ttl_at: Callable[[], int] | None = None,
    ) -> None:
        self.jobs_repo, self.files_repo = jobs_repo, files_repo
        self.task_queues, self.throughput, self.ttl_at = task_queues, throughput, ttl_at

    def settled(self, job: dict[str, Any], file: dict[str, Any] | None) -> dict[str, Any]:
        """The job as its file's task states leave it (settled on read when ``ttl_at`` was given)."""
        if self.ttl_at is None or file is None or job["state"] in TERMINAL or not job.get("plan"):
            return job
        state, _ = job_states.settle(list(job["plan"]), file)
        if state in TERMINAL and settle_jobs(
            self.jobs_repo, self.files_repo, job["hash"], self.ttl_at(), [job["jobId"]]
        ):
            return self.jobs_repo.get(job["jobId"]) or job
        return job

    def view(
        self,
        job: dict[str, Any],
        open_jobs: list[dict[str, Any]] | None = None,
        files: Mapping[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One job as ``GET /jobs/{id}`` shows it, with its place in its lane while it is queued
        (``open_jobs``: its owner's, as :meth:`positions` takes them; ``files``: file records the caller
        has just read, by hash: the job's is read here unless it is among them)."""
        digest = job.get("hash") if job.get("plan") else None
        file = None
        if digest:
            file = files[digest] if files is not None and digest in files else self.files_repo.get(digest)
        view = public_view(self.settled(job, file), file)
        if place := self.positions(str(job["owner"]), [view], open_jobs).get(view["jobId"]):
            view["queue"] = place
        return view

    def views(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Jobs with their tasks' states, without places: the file records of all of them are read in one
        ``BatchGetItem`` (each hash once), so a listing shows what ``GET /jobs/{id}`` shows for each job."""
        files = self.files_repo.get_many(job["hash"] for job in items if job.get("hash") and job.get("plan"))
        out = []
        for job in items:
            file = files.get(job["hash"]) if job.get("hash") else None
            out.append(public_view(self.settled(job, file), file))
        return out

    def positions(
        self, owner: str, items: Iterable[dict[str, Any]], open_jobs: list[dict[str, Any]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """The place in its lane of each of ``owner``'s queued jobs among ``items``, by job id (see
        :mod:`docpipe.positions`): one query of the owner's open jobs (unless the caller has read them:
        ``open_jobs``, :meth:`JobsRepository.open_for_owner`'s answer), and each lane's throughput."""
        queued = [job for job in items if job.get("state") == job_states.JobState.QUEUED]
        if not queued:
            return {}
        open_jobs = open_jobs if open_jobs is not None else self.jobs_repo.open_for_owner(owner)
        out = {}
        for job in queued:
            lane = str(job.get("lane"))
            urls = [self.task_queues.get(task, {}).get(lane) for task in job.get("plan") or []]
            names = tuple(sorted(url.rsplit("/", 1)[1] for url in urls if url))
            view = positions.queue_view(job, open_jobs, self.throughput(names) if names else None)
            if view is not None:
                out[job["jobId"]] = view
        return out
