"""End abandoned uploads: a job still ``uploading`` past its upload deadline becomes ``failed``.

The deadline is the upload URL's expiry plus a grace period (``Settings.upload_grace_seconds``); the
API writes it on the job with ``awaiting = "upload"``, and a sparse index (``byUploadDeadline``) holds
exactly the jobs that still wait, so a sweep reads only those past their deadline. A job whose object
did arrive (its S3 event is still waiting in a busy ingest queue) is given another grace period
instead: nothing a user sent is failed unread. Ending a job releases what its owner's quotas counted
for it (the open job, and the reservation of its declared size).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from docpipe import jobs, quotas
from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.errors import UploadExpired
from docpipe.jobs import JobState
from docpipe.observability import MetricUnit, logger, metrics


class Sweeper:
    def __init__(
        self, settings: Settings, jobs_repo: JobsRepository, store: ObjectStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings, self.jobs, self.store, self.clock = settings, jobs_repo, store, clock

    def sweep(self, batch: int = 100, max_batches: int = 50) -> dict[str, int]:
        """End the abandoned uploads past their deadline now; how many were ended and given more time."""
        counts = {"expired": 0, "extended": 0}
        for _ in range(max_batches):
            now = int(self.clock())
            due = self.jobs.past_upload_deadline(now, batch)
            for job_id in due:
                counts[self._one(job_id, now)] += 1
            if len(due) < batch:
                break
        if counts["expired"]:
            metrics.add_metric(name="UploadsExpired", unit=MetricUnit.Count, value=counts["expired"])
        logger.info("sweep done", extra=counts)
        return counts

    def _one(self, job_id: str, now: int) -> str:
        job = self.jobs.get(job_id)
        if job is None or job["state"] != JobState.UPLOADING:
            return "extended"  # it moved on after the index was read
        key = job.get("uploadKey")
        if key and self.store.exists(self.settings.uploads_bucket, key):
            self.jobs.extend_upload_deadline(job_id, now + self.settings.upload_grace_seconds)
            return "extended"
        moved = self.jobs.transition(
            job_id,
            (JobState.UPLOADING,),
            {
                "state": JobState.FAILED,
                "error": UploadExpired().to_dict(),
                "updatedAt": jobs.now_iso(),
                "expiresAt": now + self.settings.job_ttl_days * 86400,
            },
        )
        if moved is None:
            return "extended"
        if self.jobs.usage is not None:
            quotas.release_upload(self.jobs.usage, job["owner"], int(job.get("declaredSize") or 0))
        logger.info("abandoned upload ended", extra={"job_id": job_id})
        return "expired"
