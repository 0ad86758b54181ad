"""Settle jobs from their file's task states: used by ingest (a job whose tasks already ran) and by
every task worker when a task ends (the open jobs, of every owner, of those bytes: the sparse
``byOpenHash`` index, so the cost follows the jobs still waiting, not every upload ever made of a
popular file)."""

from __future__ import annotations

from typing import Any

from docpipe import jobs
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.jobs import TERMINAL, JobState

OPEN = (JobState.SCANNING, JobState.QUEUED, JobState.PROCESSING)


def settle_jobs(
    jobs_repo: JobsRepository,
    files_repo: FilesRepository,
    digest: str,
    ttl_at: int,
    job_ids: list[str] | None = None,
    *,
    file: dict[str, Any] | None = None,
    read: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Move each open job of ``digest`` to the state its file's tasks imply. Returns how many moved.

    ``file``: the file's record as the caller has just read it (else it is read here); ``read``: jobs the
    caller has just read or written, by id (the others are read here)."""
    file = file if file is not None else files_repo.get(digest) or {}
    ids = job_ids if job_ids is not None else jobs_repo.open_ids_for_hash(digest)
    known = read or {}
    read = {**read_jobs(jobs_repo, [job_id for job_id in ids if job_id not in known]), **known}
    moved = 0
    for job_id in ids:
        moved += _settle_one(jobs_repo, job_id, file, ttl_at, read.get(job_id))
    return moved


def read_jobs(jobs_repo: JobsRepository, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs of ``ids`` that exist, by id: many in a read per hundred (``BatchGetItem``), one by itself."""
    if len(ids) > 1:
        return jobs_repo.get_many(ids)
    return {job_id: job for job_id in ids if (job := jobs_repo.get(job_id)) is not None}


def _settle_one(
    jobs_repo: JobsRepository, job_id: str, file: dict[str, Any], ttl_at: int, read: dict[str, Any] | None = None
) -> int:
    """Move one job to the state its file implies. The move is conditional on the state it was read in
    (its history records the states between); when another settler moved it first, read it again.
    ``read``: the job as just read (consistently) with others, else it is read here."""
    for attempt in range(3):
        job = read if attempt == 0 and read is not None else jobs_repo.get(job_id)
        if job is None or job["state"] not in OPEN:
            return 0
        state, error = jobs.settle(list(job.get("plan") or []), file)
        if state == job["state"]:
            return 0
        fields: dict[str, object] = {"state": state, "updatedAt": jobs.now_iso()}
        if error:
            fields["error"] = error
        if state in TERMINAL:
            fields["expiresAt"] = ttl_at
            fields["attempts"] = jobs.freeze_attempts(job, file)
        if jobs_repo.transition(job_id, (job["state"],), fields, jobs.history_steps(job["state"], state)) is not None:
            return 1
    return 0
