"""Completing a multipart upload: the checks, and the work, shared by the API and ``CompleteFunction``.

S3's ``CompleteMultipartUpload`` joins the parts into the object. Its time grows with the object (S3 says
it can take minutes; moto took longer than the API function's 10 s for 1 GiB), while API Gateway stops
waiting after 30 s. So the API checks the parts (listed from S3, never taken from the client) and then:

- completes at once, inside the request, when they hold at most ``MultipartCompleteInlineBytes``;
- otherwise records the job's ``completing`` step (``step``, and a ``completing`` entry in its history)
  with the fingerprint of the parts it checked, queues ``{jobId}`` on ``CompleteQueue`` and answers 202.
  ``CompleteFunction`` lists the parts again, completes the upload if they are still the ones the API
  checked, and the object's S3 event hands the job to ingest as for any upload.

Either way, a failure that waiting cannot mend ends the job ``failed`` with a stable code and drops the
parts: ``file.too_large`` (more bytes than declared), ``upload.parts_invalid`` (S3 refused the parts, or
they changed after the request), ``upload.not_found`` (the upload is gone), and ``upload.incomplete``
when S3 kept failing until the completion's last attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Any

from docpipe import jobs, quotas
from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.multipart import CompletionQueue, MultipartUploads, Part, PartsInvalid, UploadNotFound
from docpipe.adapters.usage import UsageRepository
from docpipe.config import Settings
from docpipe.errors import DocpipeError, FileTooLarge
from docpipe.jobs import JobState
from docpipe.observability import MetricUnit, logger, metrics

MIB = 1024 * 1024
MIN_PART_BYTES = 8 * MIB  # the smallest part docpipe's own routes hand out (S3's own minimum is 5 MiB)
S3_MIN_PART_BYTES = 5 * MIB  # what a client that picks its own part size (Uppy) may send
COMPLETING = "completing"  # the job's step (and history entry) while CompleteFunction joins its parts


class UploadIncomplete(DocpipeError):
    code = "upload.incomplete"
    message = "S3 could not join the uploaded parts into the file; its retries are spent. Upload the file again."


def chosen_parts(held: list[Part], claimed: list[tuple[int, str]] | None) -> list[Part]:
    """The parts to complete with: the ones S3 holds, checked against the client's ``(number, etag)`` list."""
    if not held:
        raise PartsInvalid("No part has been uploaded.")
    if claimed is None:
        return held
    by_number = {p.number: p for p in held}
    chosen = []
    for number, etag in claimed:
        part = by_number.get(number)
        if part is None or part.etag.strip('"') != etag.strip('"'):
            raise PartsInvalid(f"Part {number} is not the part S3 holds (list the parts and upload it again).")
        chosen.append(part)
    if [p.number for p in chosen] != sorted({p.number for p in chosen}):
        raise PartsInvalid("The parts must be listed once each, in ascending order.")
    return chosen


def check_sizes(job: dict[str, Any], parts: list[Part]) -> None:
    """Every part the job needs, each but the last at least the minimum part size."""
    count = job.get("partCount")
    if count and [p.number for p in parts] != list(range(1, int(count) + 1)):
        missing = sorted(set(range(1, int(count) + 1)) - {p.number for p in parts})
        raise PartsInvalid(f"{len(missing)} of the {count} parts are missing (first: {missing[:1]}).")
    smallest = MIN_PART_BYTES if job.get("partSize") else S3_MIN_PART_BYTES
    if any(p.size < smallest for p in parts[:-1]):
        raise PartsInvalid(f"Every part but the last must have at least {smallest} bytes.")


def size_limit(job: dict[str, Any], max_upload_bytes: int) -> int:
    """The most bytes the upload may hold: its declared size, else (Companion's routes) ``MaxUploadBytes``."""
    return int(job["declaredSize"]) if job.get("sizeDeclared") else max_upload_bytes


def fingerprint(parts: list[Part]) -> str:
    """What identifies the checked parts: their numbers, sizes and ETags (a part sent again changes it)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(f"{part.number}:{part.size}:{part.etag.strip(chr(34))}\n".encode())
    return digest.hexdigest()


def progress(job: dict[str, Any], parts: list[Part], total: int | None = None) -> dict[str, Any]:
    return {"done": len(parts), "total": total or job.get("partCount"), "bytes": sum(p.size for p in parts)}


class Completion:
    """Joins a job's parts: checks them, completes inline or hands over to ``CompleteFunction``, fails the job."""

    def __init__(
        self,
        settings: Settings,
        uploads: MultipartUploads,
        jobs_repo: JobsRepository,
        usage: UsageRepository | None,
        queue: CompletionQueue | None = None,
        inline_bytes: int | None = None,
    ) -> None:
        self.settings, self.uploads, self.jobs, self.usage, self.queue = settings, uploads, jobs_repo, usage, queue
        self.inline_bytes = settings.multipart_complete_inline_bytes if inline_bytes is None else inline_bytes

    # ------------------------------------------------------------ the API's side
    def request(self, job: dict[str, Any], claimed: list[tuple[int, str]] | None) -> tuple[dict[str, Any], bool]:
        """Check the parts and complete them (inline) or queue their completion; the job and whether it was
        queued. More bytes than declared fail the job with ``file.too_large`` (raised)."""
        bucket = self.settings.uploads_bucket
        held = self.uploads.list_parts(bucket, job["uploadKey"], job["uploadId"])
        parts = chosen_parts(held, claimed)
        check_sizes(job, parts)
        total, limit = sum(p.size for p in parts), size_limit(job, self.settings.max_upload_bytes)
        if total > limit:
            self.fail(
                job, FileTooLarge(f"The parts hold {total} bytes, more than the {limit} bytes declared for the file.")
            )
        if not job.get("sizeDeclared"):  # the reservation of MaxUploadBytes becomes the upload's real size
            if self.usage is not None:
                quotas.resize_upload(
                    self.usage, job["owner"], int(job["declaredSize"]), total, float(job["admittedAt"])
                )
            self.jobs.record_parts(job["jobId"], {"declaredSize": total, "sizeDeclared": True})
            job = {**job, "declaredSize": total, "sizeDeclared": True}
        if total <= self.inline_bytes or self.queue is None:
            self.finish(job, parts)
            return self.jobs.get(job["jobId"]) or job, False
        if [p.number for p in parts] != [p.number for p in held]:
            raise PartsInvalid("List every part S3 holds: a large upload is completed with all of them.")
        shown = progress(job, parts, len(parts))
        marked = self.jobs.mark_completing(job["jobId"], fingerprint(parts), shown, jobs.now_iso())
        if marked is not None:  # else a completion was queued already (a retried request): nothing more to do
            self.queue.send({"jobId": job["jobId"]}, tenant=job["owner"])
            metrics.add_metric(name="MultipartCompletionsQueued", unit=MetricUnit.Count, value=1)
            logger.info(
                "multipart completion queued", extra={"job_id": job["jobId"], "parts": len(parts), "size": total}
            )
        return self.jobs.get(job["jobId"]) or job, True

    def finish(self, job: dict[str, Any], parts: list[Part]) -> None:
        """Join the parts into the object (its S3 event hands the job to ingest)."""
        started = time.perf_counter()
        self.uploads.complete(self.settings.uploads_bucket, job["uploadKey"], job["uploadId"], parts)
        shown = progress(job, parts, len(parts))
        self.jobs.record_parts(job["jobId"], {"parts": shown, "partsAt": int(time.time())}, shown)
        metrics.add_metric(name="MultipartUploadsCompleted", unit=MetricUnit.Count, value=1)
        logger.info(
            "multipart upload completed",
            extra={
                "job_id": job["jobId"],
                "parts": len(parts),
                "size": shown["bytes"],
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def fail(self, job: dict[str, Any], error: DocpipeError) -> None:
        """Drop the parts and end the job ``failed`` with ``error`` (raised again for the caller)."""
        self.uploads.abort(self.settings.uploads_bucket, job["uploadKey"], job["uploadId"])
        moved = self.jobs.transition(
            job["jobId"],
            (JobState.UPLOADING,),
            {
                "state": JobState.FAILED,
                "error": error.to_dict(),
                "step": None,
                "updatedAt": jobs.now_iso(),
                "expiresAt": int(time.time()) + self.settings.job_ttl_days * 86400,
            },
        )
        if moved is not None and self.usage is not None:
            quotas.release_upload(self.usage, job["owner"], int(job.get("declaredSize") or 0))
        metrics.add_metric(name="IngestFailures", unit=MetricUnit.Count, value=1)
        logger.info("multipart upload failed", extra={"job_id": job["jobId"], "code": error.code})
        raise error

    # ------------------------------------------------------------ CompleteFunction's side
    def complete_queued(self, job_id: str, last_attempt: bool) -> str:
        """Complete a queued job's upload; what happened (``completed``, ``skipped``, ``failed``). A fault
        worth retrying is raised (the message comes back), except on the ``last_attempt``, which fails the
        job ``upload.incomplete`` rather than leave it waiting for the sweeper."""
        job = self.jobs.get(job_id)
        if job is None or job["state"] != JobState.UPLOADING or job.get("step") != COMPLETING:
            return "skipped"  # cancelled, completed and ingested, or failed meanwhile
        try:
            self._complete(job)
        except (PartsInvalid, UploadNotFound, FileTooLarge) as exc:
            return self._failed(job, exc)
        except DocpipeError as exc:
            if not last_attempt or not exc.retryable:
                raise
            return self._failed(job, UploadIncomplete())
        return "completed"

    def _complete(self, job: dict[str, Any]) -> None:
        bucket, key = self.settings.uploads_bucket, job["uploadKey"]
        try:
            parts = self.uploads.list_parts(bucket, key, job["uploadId"])
        except UploadNotFound:
            if self.uploads.exists(bucket, key):  # completed by an earlier attempt: its S3 event is on its way
                return
            raise
        if fingerprint(parts) != job.get("completeFingerprint"):
            raise PartsInvalid("The parts changed after the completion was requested.")
        total, limit = sum(p.size for p in parts), size_limit(job, self.settings.max_upload_bytes)
        if total > limit:
            raise FileTooLarge(f"The parts hold {total} bytes, more than the {limit} bytes declared for the file.")
        self.finish(job, parts)

    def _failed(self, job: dict[str, Any], error: DocpipeError) -> str:
        with contextlib.suppress(DocpipeError):  # fail() raises it for the API's sake; here the job records it
            self.fail(job, error)
        return "failed"
