"""Job control: cancel and retry. Work is per content, so both act on a job and on the tasks of its bytes
only as far as no other job depends on them.

- **Cancel** moves an open job to ``cancelled`` at once. Each task of its plan counts one waiting job
  fewer (``{task}Waiters``); a task still ``queued`` with nobody else waiting becomes ``cancelled`` and the
  workers skip its message. A task already running finishes (its result serves any later upload of the
  same bytes), but the job stays ``cancelled``. A job cancelled before its upload arrived is left alone
  by ingest; the raw upload is removed by the uploads bucket's lifecycle rule.
- **Retry** moves a ``failed`` or ``cancelled`` job back to ``queued`` and queues again, on the job's
  lane, every task of its plan that is not done and not on its way: failed, skipped (cancelled),
  never queued, or dead-lettered (a final attempt that was killed). The dead-letter queue keeps its
  copy of a message for operators (the DLQ alarm says so); redriving it later is harmless, since a
  task that is done only settles its jobs. A job is retried by its owner at most ``RetriesPerJob``
  times (an operator's retries are not counted), and a retried job counts as open again against
  ``OpenJobsPerUser``.
- **Purge** removes a job for good (cancelling it first if it is open): ``GET /jobs/{id}`` answers 404
  afterwards. Its reference to the stored bytes goes; the original, presets and text are deleted with
  the last reference (:mod:`docpipe.references`), and they leave the owner's stored bytes with the
  owner's last job of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from docpipe import jobs, quotas, references
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.errors import Conflict, NotFound, QuotaExceeded
from docpipe.jobs import JobState
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.settlement import settle_jobs

OPEN = (JobState.UPLOADING, JobState.SCANNING, JobState.QUEUED, JobState.PROCESSING)
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
# Bookkeeping of a task's partial work, forgotten when the task runs again from the start.
PARTIAL_STATE = {
    "extract": ("extractRanges", "extractRangesDone", "extractOcrChunks", "extractOcrDone", "extractPageCount"),
}


def cancel(job: dict[str, Any], jobs_repo: JobsRepository, files_repo: FilesRepository, ttl_at: int) -> dict[str, Any]:
    """Cancel an open job; the job afterwards. :class:`Conflict` when it has ended already."""
    fields: dict[str, Any] = {"state": JobState.CANCELLED, "updatedAt": jobs.now_iso(), "expiresAt": ttl_at}
    if job.get("hash") and job.get("plan"):  # the attempts it counted stay its own (jobs.job_attempts)
        fields["attempts"] = jobs.freeze_attempts(job, files_repo.get(job["hash"]) or {})
    moved = jobs_repo.transition(job["jobId"], OPEN, fields)
    if moved is None:
        current = jobs_repo.get(job["jobId"]) or job
        raise Conflict(f"The job is already {current['state']}.", code="job.finished")
    if not moved.get("hash") and jobs_repo.usage is not None:  # cancelled before it was stored
        quotas.release_upload(jobs_repo.usage, moved["owner"], int(moved.get("declaredSize") or 0))
    skipped = []
    if job.get("hash"):
        for task in job.get("plan") or []:
            files_repo.drop_waiter(job["hash"], task)
            if files_repo.cancel_task(job["hash"], task):
                skipped.append(task)
    metrics.add_metric(name="JobsCancelled", unit=MetricUnit.Count, value=1)
    logger.info("job cancelled", extra={"job_id": job["jobId"], "skipped_tasks": skipped})
    return moved


def retry(
    job: dict[str, Any],
    jobs_repo: JobsRepository,
    files_repo: FilesRepository,
    queues: TaskQueues,
    ttl_at: int,
    limits: Mapping[str, int] | None = None,
    by_operator: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Run a failed or cancelled job's unfinished tasks again; the job afterwards and the tasks queued.

    ``by_operator``: an operator's retry (``POST /admin/jobs/retry``) is neither held to the owner's
    ``RetriesPerJob`` nor counted against it (that limit stops a user from retrying the same bytes
    without end; an operator retries once the cause is fixed). ``OpenJobsPerUser`` still holds: the
    retried job is open again, one of the owner's places, whoever retried it.
    """
    if job["state"] not in RETRYABLE:
        raise Conflict(
            f"Only a failed or cancelled job can be retried; this one is {job['state']}.", code="job.not_retryable"
        )
    if not job.get("hash"):
        refused = (job.get("error") or {}).get("code", "job.cancelled")
        raise Conflict(
            f"The upload itself was not stored ({refused}); upload the file again.", code="job.not_retryable"
        )
    limits = limits or {}
    usage = jobs_repo.usage
    counted = not by_operator
    if counted and not jobs_repo.count_retry(job["jobId"], int(limits.get("RetriesPerJob", 0))):
        raise QuotaExceeded(f"The limit RetriesPerJob ({limits.get('RetriesPerJob')} retries) is reached for this job.")
    if usage is not None and not usage.take(job["owner"], quotas.OPEN, 1, int(limits.get("OpenJobsPerUser", 0))):
        if counted:
            jobs_repo.count_retry(job["jobId"], 0, -1)
        raise QuotaExceeded(
            f"The limit OpenJobsPerUser ({limits.get('OpenJobsPerUser')} jobs) is reached.",
            retry_after=quotas.OPEN_JOBS_RETRY_AFTER,
        )
    plan = list(job.get("plan") or [])
    rejoined = jobs.attempts_base(files_repo.get(job["hash"]) or {}, plan, job.get("attempts"))
    moved = jobs_repo.transition(
        job["jobId"],
        RETRYABLE,
        {
            "state": JobState.QUEUED,
            "error": None,
            "expiresAt": None,
            "updatedAt": jobs.now_iso(),
            "openOwner": job["owner"],  # open again: back in byOwnerOpen
            "openHash": job["hash"],  # and in byOpenHash, where the workers' settles find it
            "attemptsFrom": rejoined,  # its own attempts go on from the count it ended with
            "attempts": None,
        },
    )
    if moved is None:
        if counted:
            jobs_repo.count_retry(job["jobId"], 0, -1)
        if usage is not None:
            usage.add(job["owner"], quotas.OPEN, -1)
        current = jobs_repo.get(job["jobId"]) or job
        raise Conflict(f"The job is {current['state']} now; nothing to retry.", code="job.not_retryable")
    digest, lane = job["hash"], job.get("lane") or "normal"
    file = files_repo.get(digest) or {}
    files_repo.add_waiters(digest, job.get("plan") or [])
    queued = []
    for task in job.get("plan") or []:
        seen = file.get(f"{task}State")
        state, _ = jobs.task_state(file, task)
        if state == "done" or state in jobs.OPEN_TASK_STATES:
            continue  # finished, or on its way: a message is queued or a run is alive
        if task != jobs.SCAN and jobs.SCAN in plan and file.get(f"{jobs.SCAN}State") != "done":
            continue  # nothing runs before a clean scan: the scan queues the rest (docpipe.scanning)
        if files_repo.requeue_task(digest, task, seen, PARTIAL_STATE.get(task, ())):
            queues.send(task, lane, {"hash": digest}, tenant=job["owner"])
            queued.append(task)
    settle_jobs(jobs_repo, files_repo, digest, ttl_at, [job["jobId"]])
    metrics.add_metric(name="JobsRetried", unit=MetricUnit.Count, value=1)
    logger.info("job retried", extra={"job_id": job["jobId"], "queued_tasks": queued, "by_operator": by_operator})
    return jobs_repo.get(job["jobId"]) or moved, queued


def purge(
    job: dict[str, Any],
    jobs_repo: JobsRepository,
    files_repo: FilesRepository,
    store: ObjectStore,
    store_bucket: str,
    ttl_at: int,
) -> bool:
    """Remove a job for good; True when its bytes went with it (no other job referenced them)."""
    if job["state"] in OPEN:
        with contextlib.suppress(Conflict):  # it ended meanwhile: purge it as it is
            cancel(job, jobs_repo, files_repo, ttl_at)
    gone = jobs_repo.delete(job["jobId"])
    if gone is None:
        raise NotFound("No such job.", code="job.not_found")
    deleted = False
    digest = gone.get("hash")
    if digest:
        deleted = references.release(files_repo, store, store_bucket, digest)
        if jobs_repo.usage is not None:
            quotas.release_reference(jobs_repo.usage, gone["owner"], digest, int(gone.get("size") or 0))
    metrics.add_metric(name="JobsPurged", unit=MetricUnit.Count, value=1)
    logger.info("job purged", extra={"job_id": gone["jobId"], "bytes_deleted": deleted})
    return deleted
