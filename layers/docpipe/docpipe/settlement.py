"""Settle jobs from their file's task states: used by ingest (a job whose tasks already ran) and by
every task worker when a task ends (all the jobs, of every owner, waiting on those bytes)."""

from __future__ import annotations

from docpipe import jobs
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.jobs import TERMINAL, JobState

OPEN = (JobState.QUEUED, JobState.PROCESSING)


def settle_jobs(
    jobs_repo: JobsRepository, files_repo: FilesRepository, digest: str, ttl_at: int, job_ids: list[str] | None = None
) -> int:
    """Move each open job of ``digest`` to the state its file's tasks imply. Returns how many moved."""
    file = files_repo.get(digest) or {}
    moved = 0
    for job_id in job_ids if job_ids is not None else jobs_repo.ids_for_hash(digest):
        job = jobs_repo.get(job_id)
        if job is None or job["state"] not in OPEN:
            continue
        state, error = jobs.settle(list(job.get("plan") or []), file)
        if state == job["state"]:
            continue
        fields: dict[str, object] = {"state": state, "updatedAt": jobs.now_iso()}
        if error:
            fields["error"] = error
        if state in TERMINAL:
            fields["expiresAt"] = ttl_at
        if jobs_repo.transition(job_id, OPEN, fields) is not None:
            moved += 1
    return moved
