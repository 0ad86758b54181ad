"""Make the presets of one stored original, record them, and settle the jobs waiting on them.

Idempotent: the outputs of the same bytes are the same objects under the same keys, and job
transitions are conditional, so a redelivered message changes nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from docpipe import task_limits
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.errors import DocpipeError
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.settlement import settle_jobs
from docpipe.storage import derived_key, original_key
from docpipe.worker import claimed_record
from presets.render import BY_NAME, PRESETS, describe, render

TASK = "presets"
CACHE_CONTROL = "public, max-age=31536000, immutable"


class PresetsService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        jobs_repo: JobsRepository,
        files_repo: FilesRepository,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.store, self.jobs, self.files, self.clock = settings, store, jobs_repo, files_repo, clock

    @classmethod
    def for_settings(cls, settings: Settings) -> PresetsService:
        return cls(
            settings, ObjectStore(), JobsRepository.for_settings(settings), FilesRepository(settings.files_table)
        )

    def run(self, digest: str, only: list[str] | None = None) -> str:
        """Render all presets (or ``only`` those, to regenerate them). Returns the task's state."""
        logger.append_keys(hash=digest, task=TASK)
        file = claimed_record(digest) or self.files.get(digest)  # the claim answered it, mostly
        if file is None or file.get("status") != "stored":
            logger.warning("no stored original for this hash; message dropped")
            return "missing"
        if not only and file.get(f"{TASK}State") in ("done", "failed"):
            self._settle(digest)  # a redelivery: the work is done, make sure its jobs know
            return str(file[f"{TASK}State"])
        wanted = tuple(BY_NAME[name] for name in only if name in BY_NAME) if only else PRESETS
        if not only:
            self._settle(digest, file)  # queued → processing (the worker's claim marked the task running)
        started = time.perf_counter()
        try:
            too_big = task_limits.refusal(TASK, file, self.settings.max_image_pixels)
            if too_big is not None:  # from the file record: nothing is downloaded
                raise too_big
            with self.store.download(self.settings.store_bucket, original_key(digest)) as original:
                rendered = render(original, wanted, max_pixels=self.settings.max_image_pixels)
        except DocpipeError as exc:
            if exc.retryable:
                raise
            failed = self.files.update(digest, {f"{TASK}State": "failed", f"{TASK}Error": exc.to_dict()})
            logger.info("presets refused", extra={"code": exc.code})
            self._settle(digest, failed)
            return "failed"
        artifacts: dict[str, Any] = dict(file.get(f"{TASK}Artifacts") or {})
        for result in rendered:
            key = derived_key(digest, result.preset, result.ext)
            self.store.put(self.settings.store_bucket, key, result.data, result.content_type, CACHE_CONTROL)
            artifacts[result.preset] = {
                "key": key,
                "contentType": result.content_type,
                "animated": result.animated,
                **describe(result),
            }
        done = self.files.update(digest, {f"{TASK}State": "done", f"{TASK}Artifacts": artifacts, f"{TASK}Error": None})
        metrics.add_metric(name="PresetsRendered", unit=MetricUnit.Count, value=len(rendered))
        metrics.add_metric(
            name="PresetsMilliseconds", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
        self._settle(digest, done)
        return "done"

    def _settle(self, digest: str, file: dict[str, Any] | None = None) -> None:
        """Settle the open jobs of the bytes from ``file``, the record as this run just read or wrote it
        (else it is read)."""
        settle_jobs(self.jobs, self.files, digest, int(self.clock()) + self.settings.job_ttl_days * 86400, file=file)
