"""Job control: cancel and retry. Work is per content, so both act on a job and on the tasks of its bytes
only as far as no other job depends on them.

- **Cancel** moves an open job to ``cancelled`` at once. Each task of its plan loses the job from its
  ``{task}Waiting`` set; a task still ``queued`` with nobody else waiting becomes ``cancelled`` and the
  workers skip its message. A task already running finishes (its result serves any later upload of the
  same bytes), but the job stays ``cancelled``. A job cancelled before its upload arrived is left alone
  by ingest; the raw upload is removed by the uploads bucket's lifecycle rule.
- **Retry** moves a ``failed`` or ``cancelled`` job back to ``queued`` and queues again, on the job's
  lane, every task of its plan that is not done and not on its way: failed, skipped (cancelled),
  never queued, or dead-lettered (a final attempt that was killed). The dead-letter queue keeps its
  copy of a message for operators (the DLQ alarm says so); redriving it later is harmless, since a
  task that is done only settles its jobs.
"""

from __future__ import annotations

from typing import Any

from docpipe import jobs
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.sqs import TaskQueues
from docpipe.errors import Conflict
from docpipe.jobs import JobState
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.settlement import settle_jobs

OPEN = (JobState.UPLOADING, JobState.QUEUED, JobState.PROCESSING)
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
# Bookkeeping of a task's partial work, forgotten when the task runs again from the start.
PARTIAL_STATE = {
    "extract": ("extractRanges", "extractRangesDone", "extractOcrChunks", "extractOcrDone", "extractPageCount"),
}


def cancel(job: dict[str, Any], jobs_repo: JobsRepository, files_repo: FilesRepository, ttl_at: int) -> dict[str, Any]:
    """Cancel an open job; the job afterwards. :class:`Conflict` when it has ended already."""
    moved = jobs_repo.transition(
        job["jobId"], OPEN, {"state": JobState.CANCELLED, "updatedAt": jobs.now_iso(), "expiresAt": ttl_at}
    )
    if moved is None:
        current = jobs_repo.get(job["jobId"]) or job
        raise Conflict(f"The job is already {current['state']}.", code="job.finished")
    skipped = []
    if job.get("hash"):
        for task in job.get("plan") or []:
            files_repo.remove_member(job["hash"], f"{task}Waiting", job["jobId"])
            if files_repo.cancel_task(job["hash"], task):
                skipped.append(task)
    metrics.add_metric(name="JobsCancelled", unit=MetricUnit.Count, value=1)
    logger.info("job cancelled", extra={"job_id": job["jobId"], "skipped_tasks": skipped})
    return moved


def retry(
    job: dict[str, Any], jobs_repo: JobsRepository, files_repo: FilesRepository, queues: TaskQueues, ttl_at: int
) -> tuple[dict[str, Any], list[str]]:
    """Run a failed or cancelled job's unfinished tasks again; the job afterwards and the tasks queued."""
    if job["state"] not in RETRYABLE:
        raise Conflict(
            f"Only a failed or cancelled job can be retried; this one is {job['state']}.", code="job.not_retryable"
        )
    if not job.get("hash"):
        refused = (job.get("error") or {}).get("code", "job.cancelled")
        raise Conflict(
            f"The upload itself was not stored ({refused}); upload the file again.", code="job.not_retryable"
        )
    moved = jobs_repo.transition(
        job["jobId"],
        RETRYABLE,
        {"state": JobState.QUEUED, "error": None, "expiresAt": None, "updatedAt": jobs.now_iso()},
    )
    if moved is None:
        current = jobs_repo.get(job["jobId"]) or job
        raise Conflict(f"The job is {current['state']} now; nothing to retry.", code="job.not_retryable")
    digest, lane = job["hash"], job.get("lane") or "normal"
    file = files_repo.get(digest) or {}
    queued = []
    for task in job.get("plan") or []:
        files_repo.add_member(digest, f"{task}Waiting", job["jobId"])
        seen = file.get(f"{task}State")
        state, _ = jobs.task_state(file, task)
        if state == "done" or state in jobs.OPEN_TASK_STATES:
            continue  # finished, or on its way: a message is queued or a run is alive
        if files_repo.requeue_task(digest, task, seen, PARTIAL_STATE.get(task, ())):
            queues.send(task, lane, {"hash": digest})
            queued.append(task)
    settle_jobs(jobs_repo, files_repo, digest, ttl_at, [job["jobId"]])
    metrics.add_metric(name="JobsRetried", unit=MetricUnit.Count, value=1)
    logger.info("job retried", extra={"job_id": job["jobId"], "queued_tasks": queued})
    return jobs_repo.get(job["jobId"]) or moved, queued
