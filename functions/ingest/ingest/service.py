"""Ingest one raw upload: hash it, check it, store it once per content, and settle its job.

Every object that arrives under the key ``POST /uploads`` issued to a job
(``uploads/{lane}/{owner}/{jobId}/{name}``) ends that job as ``queued`` (then ``ready``) or ``failed``
with a stable code. Only the API creates jobs: an object under a key no job was issued (its job expired,
or it was put directly), or from another bucket than the uploads bucket, is logged and left to the
bucket's lifecycle rule. The lane in the key is the one the API
chose for the job; its size is checked against that lane (and the declared size) before any hashing,
so a client that declared a small file and sent a big one never reaches a high-lane worker. The raw upload is
deleted only after its bytes are stored (or matched); a failed upload is kept for inspection and
left to the bucket's lifecycle rule, so nothing a user sent is lost to a bug in this code.

Races are settled by conditional writes: the job moves out of ``uploading`` once (a duplicated or
redelivered event finds it moved and stops), and the first writer of a hash claims it in FilesTable
with a lease before copying, so concurrent uploads of the same bytes store them once. Every job that
gets the bytes adds a reference to the file while it is ``stored`` (one conditional update); bytes
that a purge is deleting are waited for and stored again (see :class:`FilesRepository`).

The owner's usage is settled once the job has left ``uploading``: the reservation of its declared
size becomes the stored size (or nothing, when the owner already had those bytes); a refused upload
gives it back (:mod:`docpipe.quotas`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from docpipe import jobs, lanes, quotas, references, scanning
from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.adapters.s3 import ObjectInfo, ObjectNotFound, ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import Settings
from docpipe.errors import DocpipeError, FileInfected, FileTooLarge, Transient, UploadMissing
from docpipe.filetypes import FileType
from docpipe.jobs import JobState
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.settlement import settle_jobs
from docpipe.storage import content_key, original_key, parse_upload_key
from ingest import content

# How long a writer may hold a claim on a hash while it copies, before another may take over.
STORE_LEASE_SECONDS = 300
# How long a second writer of the same bytes waits for the first to finish its copy (seconds, not
# the queue's visibility timeout of minutes) before it hands the message back to SQS.
STORE_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class Outcome:
    """What ingest did with one object: ``stored``, ``deduplicated``, ``failed``, or ``skipped`` (and why)."""

    result: str
    job_id: str | None = None
    hash: str | None = None
    reason: str | None = None


class IngestService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        jobs_repo: JobsRepository,
        files_repo: FilesRepository,
        clock: Callable[[], float] = time.time,
        *,
        tasks: TaskQueues | None = None,
        store_wait_seconds: float = STORE_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store_wait_seconds = store_wait_seconds
        self.sleep = sleep
        self.settings = settings
        self.store = store
        self.jobs = jobs_repo
        self.files = files_repo
        self.clock = clock
        self.tasks = tasks or TaskQueues(settings.task_queues)

    def ingest(self, bucket: str, key: str) -> Outcome:
        """Ingest the object ``key`` (decoded once from the event) of ``bucket``."""
        if bucket != self.settings.uploads_bucket:
            logger.warning("event names another bucket than the uploads bucket; ignored", extra={"bucket": bucket})
            return Outcome("skipped", reason="not the uploads bucket")
        parsed = parse_upload_key(key)
        if parsed is None:
            logger.warning("object outside the upload layout; left to the lifecycle rule", extra={"key": key})
            return Outcome("skipped", reason="not an upload key")
        _, owner, job_id = parsed
        logger.thread_safe_append_keys(job_id=job_id)
        job = self.jobs.get(job_id)
        if job is None:  # only POST /uploads creates jobs: a key nobody was issued is left to the lifecycle rule
            logger.warning("upload without a job; left to the lifecycle rule", extra={"key": key})
            return Outcome("skipped", job_id, reason="no such job")
        if job["owner"] != owner or job.get("uploadKey") != key:
            logger.warning("upload key is not the one issued for its job", extra={"key": key})
            return Outcome("skipped", job_id, reason="key mismatch")
        if job["state"] != JobState.UPLOADING:
            return Outcome("skipped", job_id, reason=f"job already {job['state']}")
        try:
            return self._ingest(bucket, key, job)
        except ObjectNotFound:  # gone before it was stored: failed, unless another delivery ingested it
            return self._moved_on(job) or self._fail(job, UploadMissing())
        except DocpipeError as exc:
            if exc.retryable:  # handed back to SQS, unless there is nothing left to retry
                moved = self._moved_on(job)
                if moved is None:
                    raise
                return moved
            if isinstance(exc, FileTooLarge) and self._multipart(bucket, key):
                # Bytes completed in parts past the declared size are not kept (up to 5 GiB a user never
                # meant to store); a single POST's upload is kept for inspection, like every failed one.
                self.store.delete(bucket, key)
            return self._fail(job, exc)

    def _multipart(self, bucket: str, key: str) -> bool:
        """Whether the object was completed from parts (its ETag is ``"<md5 of the parts' md5s>-<parts>"``)."""
        try:
            return "-" in self.store.head(bucket, key).etag
        except ObjectNotFound:
            return False

    def _ingest(self, bucket: str, key: str, job: dict[str, Any]) -> Outcome:
        info = self.store.head(bucket, key)
        lane = job.get("lane") or "normal"
        content.check_size(info.size, self.settings.max_upload_bytes, job.get("declaredSize"), lanes.ceiling(lane))
        detected: list[FileType] = []

        def on_head(head: bytes) -> None:
            detected.append(content.classify(head, job["name"], lambda: self.store.open_range(bucket, key, info)))

        chunks = self.store.iter_chunks(bucket, key, info.etag, self.settings.hash_chunk_bytes)
        scanned = content.scan(chunks, min(self.settings.max_upload_bytes, info.size), on_head)
        if scanned.size != info.size:
            raise Transient(f"read {scanned.size} of {info.size} bytes; the stream ended early")
        file_type = detected[0]
        facts: dict[str, Any] = {"size": scanned.size, "contentType": file_type.mime, "type": file_type.name}
        if file_type.family == "image" and file_type.name != "heic":
            facts["width"], facts["height"] = content.image_size(self.store.open_range(bucket, key, info))
        # Work and bytes are shared under the content key (DedupeScope); the job keeps its own facts,
        # name and plan, and shows the SHA-256 itself.
        # a text file is read as its name says (CSV, JSON, Markdown); plain text is the bytes' own reading
        reading = file_type.name if file_type.family == "text" and file_type.name != "text" else None
        digest = content_key(scanned.sha256, job["owner"], self.settings.dedupe_scope, reading)
        logger.thread_safe_append_keys(hash=digest)
        self._refuse_known_malware(bucket, key, scanned.sha256)

        plan = jobs.plan_for(file_type.mime, file_type.family, ocr=bool(job.get("ocr")))
        stored = self._store_once(bucket, key, info, digest, facts, plan)
        deduplicated = stored is None
        gated, file = self._dispatch(digest, plan, lane, job, stored)
        state, error = jobs.settle(plan, file)
        joined = {**job, "plan": plan, "attemptsFrom": jobs.attempts_base(file, plan)}
        done = self.jobs.transition(
            job["jobId"],
            (JobState.UPLOADING,),
            {
                **facts,
                "hash": digest,
                "sha256": scanned.sha256,
                "ownerHash": owner_hash(job["owner"], scanned.sha256),
                "plan": plan,
                "attemptsFrom": joined["attemptsFrom"],
                "state": state,
                "error": error,
                "updatedAt": jobs.now_iso(),
                **(
                    {"expiresAt": self._job_ttl(), "attempts": jobs.freeze_attempts(joined, file)}
                    if state in jobs.TERMINAL
                    else {"openHash": digest}  # in byOpenHash while open: the workers' settles find it
                ),
            },
            jobs.history_steps(JobState.UPLOADING, state, planned=bool(plan)),
        )
        if done is None:  # cancelled while it was being ingested: the reference this job took goes again
            references.release(self.files, self.store, self.settings.store_bucket, digest, self.clock)
            return Outcome("skipped", job["jobId"], digest, reason="job moved on concurrently")
        if self.jobs.usage is not None:
            quotas.settle_upload(self.jobs.usage, job["owner"], digest, int(job.get("declaredSize") or 0), scanned.size)
        if state not in jobs.TERMINAL:  # a task may have ended between dispatch and this transition
            current = self.files.get(digest) or {}
            if gated and scanning.is_clean(current):
                # the scan ended clean between dispatch and this transition, before this job was open (the
                # tasks it queues settle as they would unqueued: queued)
                scanning.send_tasks(self.files, self.tasks, digest, plan[1:], lane, job["owner"])
            settle_jobs(
                self.jobs, self.files, digest, self._job_ttl(), [job["jobId"]], file=current, read={job["jobId"]: done}
            )
        if self.settings.scan_engine != "guardduty":  # GuardDuty scans the raw upload: its verdict deletes it
            self.store.delete(bucket, key)
        metrics.add_metric(name="UploadsIngested", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="BytesIngested", unit=MetricUnit.Bytes, value=scanned.size)
        if deduplicated:
            metrics.add_metric(name="UploadsDeduplicated", unit=MetricUnit.Count, value=1)
        logger.info(
            "upload ingested", extra={"size": scanned.size, "type": file_type.name, "deduplicated": deduplicated}
        )
        return Outcome("deduplicated" if deduplicated else "stored", job["jobId"], digest)

    def _dispatch(
        self, digest: str, plan: list[str], lane: str, job: dict[str, Any], stored: dict[str, Any] | None
    ) -> tuple[bool, dict[str, Any]]:
        """Queue each task of the plan on its lane, once per content: a task that has a state already
        (queued, running, done or failed for the same bytes) is not queued again.

        The task's count of waiting jobs (``{task}Waiters``, in the same item) is first raised, so a
        cancel of another job of these bytes never marks work this job needs as ``cancelled``; a task
        that was cancelled is queued again. A count, not a set of job ids: the item stays the same size
        however many jobs of the same bytes are open at once (all of the plan's tasks in one update, which
        answers the record as it leaves it). Returns whether the rest of the plan waits for the scan
        (gated), and the record as read before any task was queued: a task this call queues settles a job
        as it would unqueued (``queued``).

        ``stored``: the record as this upload's store left it, new bytes (:meth:`_copy`), whose waiters that
        write counted and whose scan it marked ``queued``: the scan's message is all there is left to send
        (a job's state reads the same from the record either side of that mark)."""
        if stored is not None:
            first = scanning.tasks_to_queue(plan, stored)
            scanning.send_tasks(self.files, self.tasks, digest, first, lane, job["owner"], marked=first)
            return True, stored
        file = self.files.add_waiters(digest, plan)
        if scanning.stale(file, self.clock(), self.settings.rescan_after_days):  # the verdict is redone first
            self.files.requeue_task(digest, jobs.SCAN, "done")
            file = self.files.get(digest) or {}
        # nothing but the scan before a clean verdict: the scan worker queues the rest once it has one
        scanning.send_tasks(self.files, self.tasks, digest, scanning.tasks_to_queue(plan, file), lane, job["owner"])
        return not scanning.is_clean(file), file  # gated: the rest waits for the scan

    def _refuse_known_malware(self, bucket: str, key: str, sha256: str) -> None:
        """Bytes found infected before, by anyone, are refused at once; the raw upload goes (a copy is
        in quarantine already)."""
        known = self.files.get(scanning.infected_key(sha256))
        if known is None:
            return
        self.store.delete(bucket, key)
        signature = known.get("signature") or "a known signature"
        raise FileInfected(f"The file contains malware ({signature}); it was found in these bytes before.")

    def _store_once(
        self, bucket: str, key: str, info: ObjectInfo, digest: str, facts: dict[str, Any], plan: list[str]
    ) -> dict[str, Any] | None:
        """Store the bytes under ``files/{hash}/original`` unless they are there already, and take a
        reference to them. ``None`` when they were there (a dedupe hit), else the record as the store left
        it (:meth:`_copy`).

        Another writer's copy in progress, or a purge deleting the same bytes, is waited for (seconds,
        not the queue's visibility timeout of minutes); a writer or deleter whose lease ran out is taken
        over; past :attr:`store_wait_seconds` the message is handed back to SQS to try again.
        """
        waited, pause = 0.0, 0.1
        while True:
            lease = int(self.clock()) + STORE_LEASE_SECONDS
            claim = {"hash": digest, "status": "storing", "leaseUntil": lease, "firstSeenAt": jobs.now_iso(), **facts}
            # claimed without a read first (most uploads are of new bytes); a failed claim answers the record
            existing = self.files.claim_else_current(claim)
            if existing is None:
                return self._copy(bucket, key, info, digest, facts, plan)
            # {}: the record went between the claim and its answer (a purge finished): wait, and claim again
            if existing.get("status") == "stored":
                if self.files.add_ref(digest):
                    return None
            elif (
                existing
                and existing.get("leaseUntil", 0) < self.clock()
                and self.files.take_over(digest, existing["status"], existing["leaseUntil"], claim)
            ):  # its writer or deleter died
                return self._copy(bucket, key, info, digest, facts, plan)
            if waited >= self.store_wait_seconds:
                raise Transient("Another upload (or a purge) of the same bytes is in progress; retrying.")
            self.sleep(pause)
            waited += pause
            pause = min(pause * 2, 1.0)

    def _copy(
        self, bucket: str, key: str, info: ObjectInfo, digest: str, facts: dict[str, Any], plan: list[str]
    ) -> dict[str, Any]:
        """Copy the bytes of a record this upload claimed new, and mark them stored in one update that also
        counts this job as waiting on its plan and marks its first task, the scan, ``queued``; the record."""
        self.store.copy_pinned(bucket, key, info.etag, self.settings.store_bucket, original_key(digest))
        first = [task for task in plan[:1] if task == jobs.SCAN]
        return self.files.mark_stored(digest, {**facts, "storedAt": jobs.now_iso()}, waiting=plan, queued=first)

    def _moved_on(self, job: dict[str, Any]) -> Outcome | None:
        """``skipped`` if the job has left ``uploading`` since it was read, else ``None``: S3 delivers at
        least once and a batch's records run at once, so another delivery of the same upload may have
        ingested it meanwhile (and deleted the raw upload this one was reading), or the job was cancelled."""
        current = self.jobs.get(job["jobId"]) or job
        if current["state"] != JobState.UPLOADING:
            return Outcome("skipped", job["jobId"], reason=f"job already {current['state']}")
        return None

    def _fail(self, job: dict[str, Any], error: DocpipeError) -> Outcome:
        moved = self.jobs.transition(
            job["jobId"],
            (JobState.UPLOADING,),
            {
                "state": JobState.FAILED,
                "error": error.to_dict(),
                "updatedAt": jobs.now_iso(),
                "expiresAt": self._job_ttl(),
            },
        )
        if moved is None:
            return Outcome("skipped", job["jobId"], reason="job moved on concurrently")
        if self.jobs.usage is not None:
            quotas.release_upload(self.jobs.usage, job["owner"], int(job.get("declaredSize") or 0))
        metrics.add_metric(name="IngestFailures", unit=MetricUnit.Count, value=1)
        logger.info("upload refused", extra={"code": error.code, "error_message": error.message})
        return Outcome("failed", job["jobId"], reason=error.code)

    def _job_ttl(self) -> int:
        return int(self.clock()) + self.settings.job_ttl_days * 86400
