"""Scan one stored original for malware (and macros, and PDF active content), record the verdict, and
either queue the rest of the plan (clean) or fail its jobs and quarantine the bytes.

The verdict is per content: ``scanState`` and ``scanVerdict`` on the file record, and the jobs waiting on
the bytes settle from it (``scanning`` until then). Infected bytes move from ``files/{hash}/original`` to
``quarantine/{hash}/original`` (no route serves that prefix; anything made from them before a rescan
found them goes), and their SHA-256 is recorded so a later upload of the same bytes, by anyone, is
refused at ingest. An engine that cannot answer raises :class:`ScanUnavailable`, which the task worker
retries with backoff and, on the final attempt, records as the job's ``scan.unavailable``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import IO, Any

from docpipe import scanning
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectNotFound, ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import Settings
from docpipe.errors import (
    DocpipeError,
    FileInfected,
    FileMacro,
    PdfActiveContent,
    ScanUnavailable,
    ScanUnsupported,
    Transient,
)
from docpipe.jobs import SCAN, TERMINAL
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.settlement import read_jobs, settle_jobs
from docpipe.storage import original_key, parse_upload_key, stored_prefixes
from docpipe.worker import claimed_record
from scan import checks, guardduty
from scan.engines import Result, ScanEngine, engine_for

# How long a GuardDuty verdict waits for ingest to record the upload's bytes (it is usually long done:
# GuardDuty takes seconds) before the event is handed back to the queue.
INGEST_WAIT_SECONDS = 10.0


class ScanService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        jobs_repo: JobsRepository,
        files_repo: FilesRepository,
        tasks: TaskQueues,
        engine: ScanEngine | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings, self.store, self.jobs, self.files, self.tasks = settings, store, jobs_repo, files_repo, tasks
        self.clock, self.sleep = clock, sleep
        self._engine = engine

    @classmethod
    def for_settings(cls, settings: Settings) -> ScanService:
        return cls(
            settings,
            ObjectStore(),
            JobsRepository.for_settings(settings),
            FilesRepository(settings.files_table),
            TaskQueues(settings.task_queues),
        )

    @property
    def engine(self) -> ScanEngine:
        if self._engine is None:
            s = self.settings
            self._engine = engine_for(s.scan_engine, s.clamd_address, s.clamav_database)
        return self._engine

    # ------------------------------------------------------------------ the scan task
    def run(self, digest: str) -> str:
        """Scan the bytes of ``digest`` (a ``scan`` task message). Returns the task's state."""
        logger.append_keys(hash=digest, task=SCAN)
        file = claimed_record(digest) or self.files.get(digest)  # the claim answered it, mostly
        if file is None or file.get("status") != "stored":
            logger.warning("no stored original for this hash; message dropped")
            return "missing"
        if file.get(f"{SCAN}State") in ("done", "failed"):  # a redelivery: make sure its jobs know
            self._settle(digest)
            return str(file[f"{SCAN}State"])
        # its jobs show scanning already: ingest settled each from the record that queued this scan
        if self.settings.scan_engine == guardduty.ENGINE:
            self._upload_again_for_guardduty(digest)
            logger.info("waiting for GuardDuty's verdict on the raw upload")
            return "running"
        started = time.perf_counter()
        with self.store.download(self.settings.store_bucket, original_key(digest)) as original:
            sha256 = _sha256(original)
            try:
                result = self.engine.scan(original)
            except ScanUnavailable:
                metrics.add_metric(name="ScanFailures", unit=MetricUnit.Count, value=1)
                raise
            except ScanUnsupported as exc:
                metrics.add_metric(name="ScanFailures", unit=MetricUnit.Count, value=1)
                return self._refuse(digest, exc, None, [])
            finally:
                metrics.add_metric(
                    name="ScanDuration", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
                )
            return self.apply(digest, sha256, result, original, file)

    def apply(self, digest: str, sha256: str, result: Result, original: IO[bytes], file: dict[str, Any]) -> str:
        """Record ``result`` for the bytes, with the macro and PDF checks; the task's state afterwards."""
        metrics.add_metric(name="FilesScanned", unit=MetricUnit.Count, value=1)
        if result.infected:
            return self._infected(digest, sha256, result)
        verdict = scanning.verdict(scanning.CLEAN, result.engine, result.version)
        flags: list[str] = []
        if file.get("type") in checks.OFFICE_TYPES:
            parts = checks.macro_parts(original)
            if parts and not self.settings.allow_macros:
                return self._refuse(digest, FileMacro(f"The file contains VBA macros ({', '.join(parts)})."), verdict)
            flags += ["office.macros"] if parts else []
        if file.get("type") == "pdf":
            flags += checks.pdf_active_content(original)
            if flags and self.settings.refuse_pdf_active_content:
                return self._refuse(digest, PdfActiveContent(), verdict, flags)
        done = self.files.update(
            digest, {f"{SCAN}State": "done", f"{SCAN}Error": None, "scanVerdict": verdict, "scanFlags": flags or None}
        )
        logger.info("scan clean", extra={"engine": result.engine, "flags": flags})
        self._queue_rest(digest, done)
        return "done"

    def _infected(self, digest: str, sha256: str, result: Result) -> str:
        signature = result.signature or "unnamed"
        verdict = scanning.verdict(scanning.INFECTED, result.engine, result.version, signature)
        self._quarantine(digest)
        self.files.put_once({"hash": scanning.infected_key(sha256), **verdict})
        error = FileInfected(f"The file contains malware: {signature}.")
        self.files.update(digest, {f"{SCAN}State": "failed", f"{SCAN}Error": error.to_dict(), "scanVerdict": verdict})
        metrics.add_metric(name="FilesInfected", unit=MetricUnit.Count, value=1)
        logger.warning("malware found; the bytes are quarantined", extra={"signature": signature})
        self._settle(digest)
        return "failed"

    def _refuse(
        self, digest: str, error: DocpipeError, verdict: dict[str, Any] | None, flags: list[str] | None = None
    ) -> str:
        self.files.update(
            digest,
            {
                f"{SCAN}State": "failed",
                f"{SCAN}Error": error.to_dict(),
                "scanVerdict": verdict,
                "scanFlags": flags or None,
            },
        )
        logger.info("refused at scan time", extra={"code": error.code})
        self._settle(digest)
        return "failed"

    def _quarantine(self, digest: str) -> None:
        """Move the original under ``quarantine/`` and delete anything made from it (a rescan's find)."""
        bucket, key = self.settings.store_bucket, original_key(digest)
        try:
            info = self.store.head(bucket, key)
            self.store.copy_pinned(bucket, key, info.etag, bucket, scanning.quarantine_key(digest))
        except ObjectNotFound:
            logger.info("the original is gone already (a redelivery); nothing to move")
        for prefix in stored_prefixes(digest):
            self.store.delete_prefix(bucket, prefix)

    def _queue_rest(self, digest: str, file: dict[str, Any]) -> None:
        """Queue the rest of each open job's plan, on that job's lane and in its owner's group, then settle
        those jobs from ``file`` (the record as the clean verdict left it; a task queued here settles a job
        as it would unqueued). The open jobs are read once, after the verdict was written: a job that opens
        later finds the verdict itself (ingest queues its rest)."""
        ids = self.jobs.open_ids_for_hash(digest)
        read = read_jobs(self.jobs, ids)
        for job_id in ids:
            job = read.get(job_id)
            if job is None or job.get("state") in TERMINAL:
                continue
            rest = [task for task in job.get("plan") or [] if task != SCAN]
            scanning.send_tasks(self.files, self.tasks, digest, rest, job.get("lane") or "normal", job["owner"])
        settle_jobs(self.jobs, self.files, digest, self._ttl_at(), ids, file=file, read=read)

    def _settle(self, digest: str, file: dict[str, Any] | None = None) -> None:
        settle_jobs(self.jobs, self.files, digest, self._ttl_at(), file=file)

    def _ttl_at(self) -> int:
        return int(self.clock()) + self.settings.job_ttl_days * 86400

    # ------------------------------------------------------------------ GuardDuty's verdicts
    def apply_guardduty(self, event: dict[str, Any]) -> str:
        """Apply a GuardDuty scan-result event to the upload's bytes and jobs; what was done."""
        result = guardduty.parse(event)
        if self.settings.scan_engine != guardduty.ENGINE:
            logger.warning("a GuardDuty verdict reached a stack that scans with another engine; ignored")
            return "ignored"
        parsed = parse_upload_key(result.key) if result.bucket == self.settings.uploads_bucket else None
        if parsed is None:
            logger.warning("a GuardDuty verdict on an object that is not an upload; ignored", extra={"key": result.key})
            return "ignored"
        job = self._ingested(parsed.job_id)
        if job is None or not job.get("hash"):
            return "ignored"  # the upload was refused before it was stored: nothing to scan
        digest = str(job["hash"])
        logger.append_keys(hash=digest, task=SCAN, job_id=parsed.job_id)
        file = self.files.get(digest) or {}
        state = self._apply_status(result, digest, str(job.get("sha256") or digest), file)
        self.store.delete(result.bucket, result.key)  # the raw upload waited for its verdict
        return state

    def _apply_status(self, result: guardduty.ScanResult, digest: str, sha256: str, file: dict[str, Any]) -> str:
        finished = file.get(f"{SCAN}State") in ("done", "failed")
        if result.status == "THREATS_FOUND":  # a find always wins, even over an earlier clean verdict
            name = ", ".join(result.threats) or None
            return self._infected(digest, sha256, Result(True, name, guardduty.ENGINE, result.plan))
        if finished:
            return str(file[f"{SCAN}State"])  # another upload of the same bytes had its verdict already
        if result.status == "NO_THREATS_FOUND":
            with self.store.download(self.settings.store_bucket, original_key(digest)) as original:
                return self.apply(digest, sha256, Result(False, None, guardduty.ENGINE, result.plan), original, file)
        metrics.add_metric(name="ScanFailures", unit=MetricUnit.Count, value=1)
        if result.status == "UNSUPPORTED":
            error: DocpipeError = ScanUnsupported(
                "GuardDuty skipped the file (a password-protected or too deep archive, or over its size quota)."
            )
        elif result.status == "ACCESS_DENIED":
            error = ScanUnavailable("GuardDuty could not read the upload (its role's permissions); retry the job.")
        else:
            error = ScanUnavailable("GuardDuty failed to scan the upload (an internal error); retry the job.")
        return self._refuse(digest, error, None)

    def _upload_again_for_guardduty(self, digest: str) -> None:
        """GuardDuty scans an object when it is written: a scan run again (a retry after ``ACCESS_DENIED`` or
        ``FAILED``, whose verdict deleted the raw upload) writes the original back under an open job's upload
        key, which GuardDuty then scans (ingest finds that job past ``uploading`` and leaves the object)."""
        for job_id in self.jobs.open_ids_for_hash(digest):
            key = (self.jobs.get(job_id) or {}).get("uploadKey")
            if not key:
                continue
            if self.store.exists(self.settings.uploads_bucket, key):
                return  # the first scan: GuardDuty has the raw upload already
            source = original_key(digest)
            info = self.store.head(self.settings.store_bucket, source)
            self.store.copy_pinned(self.settings.store_bucket, source, info.etag, self.settings.uploads_bucket, key)
            logger.info("the original is written back for GuardDuty to scan again", extra={"key": key})
            return

    def _ingested(self, job_id: str) -> dict[str, Any] | None:
        """The upload's job once ingest has recorded its bytes (waited for briefly), else ``None``."""
        waited = 0.0
        while True:
            job = self.jobs.get(job_id)
            if job is None or job.get("hash") or job.get("state") != "uploading":
                return job
            if waited >= INGEST_WAIT_SECONDS:
                raise Transient("The upload is not ingested yet; its GuardDuty verdict is tried again.")
            self.sleep(0.2)
            waited += 0.2


def _sha256(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()
